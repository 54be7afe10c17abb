"""Reading recipient ids from a file: one id per line, or one column of a CSV file."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from ..errors import InvalidInputError

# A recipient file may be a spreadsheet export with long free-text columns.
csv.field_size_limit(16 * 1024 * 1024)


@contextmanager
def open_recipient_file(path: str) -> Iterator[BinaryIO]:
    """Open ``path`` (``-`` for standard input) for reading bytes.

    The readers below decode each line themselves, so that an encoding error names the
    exact line; a text wrapper decodes in blocks and loses track of it.
    """
    if path == "-":
        yield sys.stdin.buffer
        return
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError as exc:
        raise InvalidInputError(f"recipient file {path!r} not found; check the path") from exc
    except IsADirectoryError as exc:
        raise InvalidInputError(f"recipient file {path!r} is a directory, not a file") from exc
    except OSError as exc:
        raise InvalidInputError(
            f"cannot read recipient file {path!r}: {exc.strerror}; check its permissions"
        ) from exc
    with handle:
        yield handle


def decode_lines(handle: BinaryIO, source: str) -> Iterator[str]:
    """Yield each line of ``handle`` decoded as UTF-8, line break kept, a leading
    byte-order mark removed."""
    for line_number, raw in enumerate(handle, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInputError(
                f"recipient file {source!r} is not valid UTF-8 at line {line_number}: "
                f"{exc.reason} at byte {exc.start} of the line; save the file as UTF-8"
            ) from exc
        if line_number == 1:
            line = line.removeprefix("\ufeff")
        yield line


def read_lines(handle: BinaryIO, source: str) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, id)`` for each line, the line break removed and nothing else.

    Other whitespace stays, so that an id with a stray space is reported, not silently
    changed into another id.
    """
    for line_number, line in enumerate(decode_lines(handle, source), start=1):
        yield line_number, line.rstrip("\r\n")


def read_column(handle: BinaryIO, source: str, column: str) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, value)`` of ``column`` for each data row of a CSV file with a
    header row."""
    reader = csv.reader(decode_lines(handle, source))
    try:
        header = next(reader, None)
        if header is None:
            raise InvalidInputError(f"recipient file {source!r} is empty; expected a header row")
        if column not in header:
            found = ", ".join(repr(name) for name in header[:20])
            raise InvalidInputError(
                f"column {column!r} not found in the header of {source!r} (found: {found}); "
                "pass the header's name with --column"
            )
        position = header.index(column)

        for row in reader:
            if not row:
                continue
            value = row[position] if position < len(row) else ""
            # reader.line_num is the last physical line of the row, which is the row's line
            # unless a quoted field spans lines.
            yield reader.line_num, value
    except csv.Error as exc:
        raise InvalidInputError(
            f"recipient file {source!r} is not valid CSV at line {reader.line_num}: {exc}"
        ) from exc


def reject_csv_header(rows: Iterator[tuple[int, str]], source: str) -> Iterator[tuple[int, str]]:
    """Pass ``rows`` through, unless the first line looks like a CSV row.

    A CSV file read without ``--column`` would import whole rows as ids, the header among
    them, and miss every real id.
    """
    for line_number, value in rows:
        if line_number == 1 and "," in value:
            raise InvalidInputError(
                f"line 1 of {source!r} contains a comma ({value[:60]!r}): it looks like a CSV "
                "file; pass --column NAME to read the id column"
            )
        yield line_number, value
