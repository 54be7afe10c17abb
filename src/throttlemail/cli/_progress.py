"""Progress for long commands: a bar on a terminal, plain periodic lines elsewhere."""

from __future__ import annotations

import time
from typing import TextIO

_PLAIN_INTERVAL = 5.0
_BAR_INTERVAL = 0.1
_BAR_WIDTH = 30


class Progress:
    """Reports how far a task has come to ``stream``.

    On a terminal it redraws one line with a bar, at most ten times a second. Elsewhere (a
    log file, a CI job) it writes one line every five seconds so logs stay short.
    """

    def __init__(self, stream: TextIO, label: str, *, total: int | None = None) -> None:
        self._stream = stream
        self._label = label
        self._total = total
        self._interactive = stream.isatty()
        self._started = time.monotonic()
        self._last_report = 0.0
        self._last_done: int | None = None

    def update(self, done: int, detail: str = "") -> None:
        """Report ``done`` units so far, if enough time passed since the last report."""
        now = time.monotonic()
        interval = _BAR_INTERVAL if self._interactive else _PLAIN_INTERVAL
        if now - self._last_report < interval:
            return
        self._last_report = now
        self._write(done, detail)

    def finish(self, done: int, detail: str = "") -> None:
        """Report the final figure, unless it was the last one written, and end the bar's
        line."""
        if done != self._last_done:
            self._write(done, detail)
        if self._interactive:
            self._stream.write("\n")
            self._stream.flush()

    def _write(self, done: int, detail: str) -> None:
        self._last_done = done
        elapsed = max(time.monotonic() - self._started, 1e-9)
        rate = f"{done / elapsed:,.0f}/s"
        if self._total:
            share = min(done / self._total, 1.0)
            filled = int(share * _BAR_WIDTH)
            figure = f"{done:,}/{self._total:,} {share:4.0%}"
            bar = "#" * filled + "." * (_BAR_WIDTH - filled)
        else:
            figure = f"{done:,}"
            bar = ""
        if not self._interactive:
            bar = ""
        parts = [self._label, f"[{bar}]" if bar else "", figure, rate, detail]
        line = "  ".join(part for part in parts if part)

        if self._interactive:
            self._stream.write("\r\x1b[2K" + line)
        else:
            self._stream.write(line + "\n")
        self._stream.flush()
