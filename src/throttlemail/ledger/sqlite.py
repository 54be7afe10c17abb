"""The SQLite ledger: one file on one host, shared by any number of threads and processes."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .._states import CampaignState, Claim, Counts, DeliveryStart, RecipientState
from ..errors import CampaignNotFoundError, LedgerError
from .base import RecipientRecord, check_claim_limit, check_delivery_outcome

logger = logging.getLogger(__name__)

_INSERT_CHUNK = 10_000
_EXPORT_CHUNK = 10_000
_COUNT_COLUMNS = tuple(state.value for state in RecipientState)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS throttlemail_campaigns (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL DEFAULT 'running',
    pace_cursor REAL NOT NULL DEFAULT 0,
    last_claim_id INTEGER NOT NULL DEFAULT 0,
    {", ".join(f"{column} INTEGER NOT NULL DEFAULT 0" for column in _COUNT_COLUMNS)}
);
CREATE TABLE IF NOT EXISTS throttlemail_recipients (
    sequence INTEGER PRIMARY KEY,
    campaign_id INTEGER NOT NULL REFERENCES throttlemail_campaigns (id),
    recipient_id TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    claim_id INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL,
    error TEXT,
    UNIQUE (campaign_id, recipient_id)
);
CREATE INDEX IF NOT EXISTS throttlemail_recipients_by_state
    ON throttlemail_recipients (campaign_id, state, sequence);
"""


class SqliteLedger:
    """A :class:`~throttlemail.RecipientLedger` in one SQLite file.

    The file may hold many campaigns. It runs in WAL mode and every transition is one
    ``BEGIN IMMEDIATE`` transaction, so threads and processes on the same host can claim and
    deliver at once. Per-state counts live in the campaign's row and change in the same
    transaction as the recipients, so :meth:`counts` reads one row.

    ``synchronous=NORMAL`` is used: a committed transition survives a crash of the process,
    but the last transitions before a power loss of the host may be lost.
    Do not put the file on a network file system, where SQLite's locks are unreliable.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        campaign: str,
        *,
        timeout: float = 30.0,
        create: bool = True,
    ) -> None:
        self._path = os.fspath(path)
        self._campaign = campaign
        self._timeout = timeout
        # With create=False a missing file or campaign raises LedgerError on first use,
        # so that an operator's typo fails instead of pausing an empty new campaign.
        self._create = create
        self._local = threading.local()
        # Resolved on first use, so that building a ledger (say, in a module that a worker
        # imports only for its send function) touches no file.
        self._resolved_campaign_id: int | None = None

    def __repr__(self) -> str:
        return f"SqliteLedger({self._path!r}, campaign={self._campaign!r})"

    @property
    def campaign(self) -> str:
        return self._campaign

    @property
    def path(self) -> str:
        return self._path

    def close(self) -> None:
        """Close this thread's connection; the ledger reconnects if used again."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    # -- recipients ---------------------------------------------------------------------

    def add(self, recipient_ids: Sequence[str], *, now: float) -> int:
        added = 0
        for offset in range(0, len(recipient_ids), _INSERT_CHUNK):
            chunk = recipient_ids[offset : offset + _INSERT_CHUNK]
            with self._transaction() as connection:
                before = connection.total_changes
                connection.executemany(
                    "INSERT OR IGNORE INTO throttlemail_recipients"
                    " (campaign_id, recipient_id, updated_at) VALUES (?, ?, ?)",
                    [(self._campaign_id, recipient_id, now) for recipient_id in chunk],
                )
                chunk_added = connection.total_changes - before
                self._shift_count(connection, None, RecipientState.PENDING, chunk_added)
            added += chunk_added
        return added

    def claim(self, limit: int, *, now: float) -> list[Claim]:
        check_claim_limit(limit)
        with self._transaction() as connection:
            (claim_id,) = connection.execute(
                "UPDATE throttlemail_campaigns SET last_claim_id = last_claim_id + 1"
                " WHERE id = ? RETURNING last_claim_id",
                (self._campaign_id,),
            ).fetchone()
            rows = connection.execute(
                "UPDATE throttlemail_recipients"
                " SET state = 'scheduled', claim_id = ?, updated_at = ?"
                " WHERE sequence IN ("
                "   SELECT sequence FROM throttlemail_recipients"
                "   WHERE campaign_id = ? AND state = 'pending' ORDER BY sequence LIMIT ?"
                " ) RETURNING sequence, recipient_id",
                (claim_id, now, self._campaign_id, limit),
            ).fetchall()
            self._shift_count(
                connection, RecipientState.PENDING, RecipientState.SCHEDULED, len(rows)
            )
        # RETURNING gives no order guarantee, and claims must come oldest first.
        rows.sort()
        return [Claim(recipient_id, claim_id) for _, recipient_id in rows]

    def release(self, claims: Sequence[Claim], *, now: float) -> int:
        if not claims:
            return 0
        with self._transaction() as connection:
            before = connection.total_changes
            connection.executemany(
                "UPDATE throttlemail_recipients SET state = 'pending', updated_at = ?"
                " WHERE campaign_id = ? AND recipient_id = ? AND state = 'scheduled'"
                " AND claim_id = ?",
                [(now, self._campaign_id, c.recipient_id, c.claim_id) for c in claims],
            )
            released = connection.total_changes - before
            self._shift_count(
                connection, RecipientState.SCHEDULED, RecipientState.PENDING, released
            )
        return released

    def begin_delivery(
        self, recipient_id: str, claim_id: int | None, *, now: float
    ) -> DeliveryStart:
        with self._transaction() as connection:
            row = connection.execute(
                "SELECT state, claim_id FROM throttlemail_recipients"
                " WHERE campaign_id = ? AND recipient_id = ?",
                (self._campaign_id, recipient_id),
            ).fetchone()
            if row is None:
                return DeliveryStart.UNKNOWN
            state, current_claim_id = row
            if state != RecipientState.SCHEDULED.value:
                return DeliveryStart.STALE
            if claim_id is not None and claim_id != current_claim_id:
                return DeliveryStart.STALE

            if self._read_campaign_state(connection) is not CampaignState.RUNNING:
                self._set_state(connection, recipient_id, RecipientState.PENDING, now)
                self._shift_count(
                    connection, RecipientState.SCHEDULED, RecipientState.PENDING, 1
                )
                return DeliveryStart.HELD

            self._set_state(connection, recipient_id, RecipientState.SENDING, now)
            self._shift_count(connection, RecipientState.SCHEDULED, RecipientState.SENDING, 1)
            return DeliveryStart.STARTED

    def finish_delivery(
        self,
        recipient_id: str,
        claim_id: int | None,
        outcome: RecipientState,
        *,
        now: float,
        error: str | None = None,
    ) -> bool:
        check_delivery_outcome(outcome)
        stored_error = error if outcome is RecipientState.FAILED else None
        with self._transaction() as connection:
            cursor = connection.execute(
                "UPDATE throttlemail_recipients SET state = ?, updated_at = ?, error = ?"
                " WHERE campaign_id = ? AND recipient_id = ? AND state = 'sending'"
                " AND (? IS NULL OR claim_id = ?)",
                (outcome.value, now, stored_error, self._campaign_id, recipient_id,
                 claim_id, claim_id),
            )
            moved = cursor.rowcount == 1
            if moved:
                self._shift_count(connection, RecipientState.SENDING, outcome, 1)
        return moved

    def retry_failed(self, *, now: float) -> int:
        return self._move_all(RecipientState.FAILED, RecipientState.PENDING, now)

    def suppress(self, recipient_ids: Sequence[str], *, now: float) -> int:
        if not recipient_ids:
            return 0
        with self._transaction() as connection:
            before = connection.total_changes
            connection.executemany(
                "UPDATE throttlemail_recipients SET state = 'skipped', updated_at = ?"
                " WHERE campaign_id = ? AND recipient_id = ? AND state = 'pending'",
                [(now, self._campaign_id, recipient_id) for recipient_id in recipient_ids],
            )
            suppressed = connection.total_changes - before
            self._shift_count(
                connection, RecipientState.PENDING, RecipientState.SKIPPED, suppressed
            )
        return suppressed

    def counts(self) -> Counts:
        with self._reading() as connection:
            row = connection.execute(
                f"SELECT {', '.join(_COUNT_COLUMNS)} FROM throttlemail_campaigns WHERE id = ?",
                (self._campaign_id,),
            ).fetchone()
        return Counts.from_mapping(dict(zip(_COUNT_COLUMNS, row, strict=True)))

    def lookup(self, recipient_id: str) -> RecipientRecord | None:
        with self._reading() as connection:
            row = connection.execute(
                "SELECT state, claim_id, error FROM throttlemail_recipients"
                " WHERE campaign_id = ? AND recipient_id = ?",
                (self._campaign_id, recipient_id),
            ).fetchone()
        if row is None:
            return None
        return RecipientRecord(recipient_id, RecipientState(row[0]), row[1], row[2])

    def export(self, state: RecipientState) -> Iterator[str]:
        state = RecipientState(state)
        after = -1
        while True:
            with self._reading() as connection:
                rows = connection.execute(
                    "SELECT sequence, recipient_id FROM throttlemail_recipients"
                    " WHERE campaign_id = ? AND state = ? AND sequence > ?"
                    " ORDER BY sequence LIMIT ?",
                    (self._campaign_id, state.value, after, _EXPORT_CHUNK),
                ).fetchall()
            for _, recipient_id in rows:
                yield recipient_id
            if len(rows) < _EXPORT_CHUNK:
                return
            after = rows[-1][0]

    # -- campaign control -----------------------------------------------------------------

    def campaign_state(self) -> CampaignState:
        with self._reading() as connection:
            return self._read_campaign_state(connection)

    def change_campaign_state(self, state: CampaignState) -> CampaignState:
        state = CampaignState(state)
        with self._transaction() as connection:
            previous = self._read_campaign_state(connection)
            if previous is not CampaignState.CANCELLED:
                connection.execute(
                    "UPDATE throttlemail_campaigns SET state = ? WHERE id = ?",
                    (state.value, self._campaign_id),
                )
        return previous

    def reserve_pace(self, span: float, *, now: float) -> float:
        with self._transaction() as connection:
            (start,) = connection.execute(
                "UPDATE throttlemail_campaigns SET pace_cursor = max(pace_cursor, ?) + ?"
                " WHERE id = ? RETURNING pace_cursor - ?",
                (now, span, self._campaign_id, span),
            ).fetchone()
        return float(start)

    def return_pace(self, reserved_end: float, resume_at: float) -> bool:
        with self._transaction() as connection:
            cursor = connection.execute(
                "UPDATE throttlemail_campaigns SET pace_cursor = ?"
                " WHERE id = ? AND pace_cursor = ?",
                (resume_at, self._campaign_id, reserved_end),
            )
            return cursor.rowcount == 1

    # -- helpers ----------------------------------------------------------------------------

    def _move_all(self, source: RecipientState, target: RecipientState, now: float) -> int:
        with self._transaction() as connection:
            cursor = connection.execute(
                "UPDATE throttlemail_recipients SET state = ?, updated_at = ?"
                " WHERE campaign_id = ? AND state = ?",
                (target.value, now, self._campaign_id, source.value),
            )
            moved = cursor.rowcount
            self._shift_count(connection, source, target, moved)
        return moved

    def _set_state(
        self, connection: sqlite3.Connection, recipient_id: str, state: RecipientState, now: float
    ) -> None:
        connection.execute(
            "UPDATE throttlemail_recipients SET state = ?, updated_at = ?"
            " WHERE campaign_id = ? AND recipient_id = ?",
            (state.value, now, self._campaign_id, recipient_id),
        )

    def _shift_count(
        self,
        connection: sqlite3.Connection,
        source: RecipientState | None,
        target: RecipientState,
        amount: int,
    ) -> None:
        if amount == 0:
            return
        # Column names come from RecipientState, never from input.
        assignments = [f"{target.value} = {target.value} + :amount"]
        if source is not None:
            assignments.append(f"{source.value} = {source.value} - :amount")
        connection.execute(
            f"UPDATE throttlemail_campaigns SET {', '.join(assignments)} WHERE id = :id",
            {"amount": amount, "id": self._campaign_id},
        )

    def _read_campaign_state(self, connection: sqlite3.Connection) -> CampaignState:
        (state,) = connection.execute(
            "SELECT state FROM throttlemail_campaigns WHERE id = ?", (self._campaign_id,)
        ).fetchone()
        return CampaignState(state)

    @property
    def _campaign_id(self) -> int:
        if self._resolved_campaign_id is None:
            self._connection()
        assert self._resolved_campaign_id is not None  # set by _connection()
        return self._resolved_campaign_id

    def _create_campaign(self, connection: sqlite3.Connection) -> int:
        # Runs when a connection opens, never inside another transaction.
        connection.execute("BEGIN IMMEDIATE")
        try:
            if self._create:
                connection.execute(
                    "INSERT OR IGNORE INTO throttlemail_campaigns (name) VALUES (?)",
                    (self._campaign,),
                )
            row = connection.execute(
                "SELECT id FROM throttlemail_campaigns WHERE name = ?", (self._campaign,)
            ).fetchone()
            known = [name for (name,) in connection.execute(
                "SELECT name FROM throttlemail_campaigns ORDER BY name LIMIT 20"
            )]
            connection.execute("COMMIT")
        except BaseException:
            _rollback(connection)
            raise

        if row is None:
            raise CampaignNotFoundError(
                f"campaign {self._campaign!r} not found in SQLite ledger {self._path!r} "
                f"(campaigns there: {', '.join(map(repr, known)) or 'none'}); check "
                "--campaign, or import recipients first",
                campaign=self._campaign,
            )
        return int(row[0])

    def _connection(self) -> sqlite3.Connection:
        # One connection per thread and per process: sqlite3 connections must not cross
        # threads, and one inherited across fork() would share the parent's file locks.
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is not None and self._local.pid == os.getpid():
            return connection

        if not self._create and not os.path.exists(self._path):
            raise CampaignNotFoundError(
                f"SQLite ledger {self._path!r} not found; check the path (a relative path "
                "is relative to the current directory), or import recipients first",
                campaign=self._campaign,
            )
        try:
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(
                self._path, timeout=self._timeout, isolation_level=None, check_same_thread=True
            )
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")
            connection.executescript(_SCHEMA)
            if self._resolved_campaign_id is None:
                self._resolved_campaign_id = self._create_campaign(connection)
        except LedgerError:
            if connection is not None:
                connection.close()
            raise
        except (sqlite3.Error, OSError) as exc:
            raise LedgerError(
                f"cannot open SQLite ledger {self._path!r}: {exc}; check that the path names "
                "a SQLite database (or a new file) in a writable directory",
                campaign=self._campaign,
            ) from exc
        self._local.connection = connection
        self._local.pid = os.getpid()
        return connection

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        connection = self._connection()
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._ledger_error(exc) from exc
        try:
            yield connection
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(connection)
            raise self._ledger_error(exc) from exc
        except BaseException:
            _rollback(connection)
            raise

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        connection = self._connection()
        try:
            yield connection
        except sqlite3.Error as exc:
            raise self._ledger_error(exc) from exc

    def _ledger_error(self, exc: sqlite3.Error) -> LedgerError:
        return LedgerError(
            f"SQLite ledger {self._path!r} failed for campaign {self._campaign!r}: {exc}",
            campaign=self._campaign,
        )


def _rollback(connection: sqlite3.Connection) -> None:
    # The error that led here matters more than a failed rollback, and SQLite rolls back
    # an unfinished transaction by itself when the connection closes.
    try:
        connection.execute("ROLLBACK")
    except sqlite3.Error:
        logger.debug("rollback failed after an error", exc_info=True)
