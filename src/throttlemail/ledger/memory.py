"""An in-memory ledger for tests, scripts and single-process use."""

from __future__ import annotations

import heapq
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .._states import CampaignState, Claim, Counts, DeliveryStart, RecipientState
from .base import RecipientRecord, check_claim_limit, check_delivery_outcome


@dataclass
class _Entry:
    sequence: int
    state: RecipientState
    claim_id: int = 0
    error: str | None = None
    updated_at: float = 0.0


class InMemoryLedger:
    """A :class:`~throttlemail.RecipientLedger` kept in this process's memory.

    Thread-safe, but nothing survives the process: use it in tests and short scripts.
    """

    def __init__(self, campaign: str = "default") -> None:
        self._campaign = campaign
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        # Heap of (sequence, id) for pending recipients; entries that have since left
        # pending are dropped lazily when they reach the top.
        self._pending: list[tuple[int, str]] = []
        self._counts = dict.fromkeys(RecipientState, 0)
        self._next_sequence = 0
        self._last_claim_id = 0
        self._campaign_state = CampaignState.RUNNING
        self._pace_cursor = 0.0

    def __repr__(self) -> str:
        return f"InMemoryLedger(campaign={self._campaign!r})"

    @property
    def campaign(self) -> str:
        return self._campaign

    def add(self, recipient_ids: Sequence[str], *, now: float) -> int:
        added = 0
        with self._lock:
            for recipient_id in recipient_ids:
                if recipient_id in self._entries:
                    continue
                sequence = self._next_sequence
                self._next_sequence += 1
                self._entries[recipient_id] = _Entry(
                    sequence, RecipientState.PENDING, updated_at=now
                )
                heapq.heappush(self._pending, (sequence, recipient_id))
                added += 1
            self._counts[RecipientState.PENDING] += added
        return added

    def claim(self, limit: int, *, now: float) -> list[Claim]:
        check_claim_limit(limit)
        claims: list[Claim] = []
        with self._lock:
            self._last_claim_id += 1
            claim_id = self._last_claim_id
            while self._pending and len(claims) < limit:
                sequence, recipient_id = heapq.heappop(self._pending)
                entry = self._entries[recipient_id]
                if entry.state is not RecipientState.PENDING or entry.sequence != sequence:
                    continue
                entry.claim_id = claim_id
                self._move(entry, RecipientState.SCHEDULED, now)
                claims.append(Claim(recipient_id, claim_id))
        return claims

    def release(self, claims: Sequence[Claim], *, now: float) -> int:
        released = 0
        with self._lock:
            for claim in claims:
                entry = self._entries.get(claim.recipient_id)
                if (
                    entry is not None
                    and entry.state is RecipientState.SCHEDULED
                    and entry.claim_id == claim.claim_id
                ):
                    self._move(entry, RecipientState.PENDING, now)
                    heapq.heappush(self._pending, (entry.sequence, claim.recipient_id))
                    released += 1
        return released

    def begin_delivery(
        self, recipient_id: str, claim_id: int | None, *, now: float
    ) -> DeliveryStart:
        with self._lock:
            entry = self._entries.get(recipient_id)
            if entry is None:
                return DeliveryStart.UNKNOWN
            if entry.state is not RecipientState.SCHEDULED or not _matches(entry, claim_id):
                return DeliveryStart.STALE
            if self._campaign_state is not CampaignState.RUNNING:
                self._move(entry, RecipientState.PENDING, now)
                heapq.heappush(self._pending, (entry.sequence, recipient_id))
                return DeliveryStart.HELD
            self._move(entry, RecipientState.SENDING, now)
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
        with self._lock:
            entry = self._entries.get(recipient_id)
            if entry is None or entry.state is not RecipientState.SENDING:
                return False
            if not _matches(entry, claim_id):
                return False
            self._move(entry, outcome, now)
            if outcome is RecipientState.FAILED:
                entry.error = error
            elif outcome is RecipientState.SENT:
                entry.error = None
            else:
                heapq.heappush(self._pending, (entry.sequence, recipient_id))
            return True

    def retry_failed(self, *, now: float) -> int:
        with self._lock:
            failed = [
                (recipient_id, entry)
                for recipient_id, entry in self._entries.items()
                if entry.state is RecipientState.FAILED
            ]
            for recipient_id, entry in failed:
                self._move(entry, RecipientState.PENDING, now)
                heapq.heappush(self._pending, (entry.sequence, recipient_id))
        return len(failed)

    def suppress(self, recipient_ids: Sequence[str], *, now: float) -> int:
        suppressed = 0
        with self._lock:
            for recipient_id in recipient_ids:
                entry = self._entries.get(recipient_id)
                if entry is not None and entry.state is RecipientState.PENDING:
                    self._move(entry, RecipientState.SKIPPED, now)
                    suppressed += 1
        return suppressed

    def counts(self) -> Counts:
        with self._lock:
            return Counts.from_mapping({state.value: n for state, n in self._counts.items()})

    def lookup(self, recipient_id: str) -> RecipientRecord | None:
        with self._lock:
            entry = self._entries.get(recipient_id)
            if entry is None:
                return None
            return RecipientRecord(recipient_id, entry.state, entry.claim_id, entry.error)

    def export(self, state: RecipientState) -> Iterator[str]:
        state = RecipientState(state)
        with self._lock:
            matching = [rid for rid, entry in self._entries.items() if entry.state is state]
        yield from matching

    def campaign_state(self) -> CampaignState:
        with self._lock:
            return self._campaign_state

    def change_campaign_state(self, state: CampaignState) -> CampaignState:
        state = CampaignState(state)
        with self._lock:
            previous = self._campaign_state
            if previous is not CampaignState.CANCELLED:
                self._campaign_state = state
            return previous

    def reserve_pace(self, span: float, *, now: float) -> float:
        with self._lock:
            start = max(self._pace_cursor, now)
            self._pace_cursor = start + span
            return start

    def return_pace(self, reserved_end: float, resume_at: float) -> bool:
        with self._lock:
            if self._pace_cursor != reserved_end:
                return False
            self._pace_cursor = resume_at
            return True

    def _move(self, entry: _Entry, state: RecipientState, now: float) -> None:
        self._counts[entry.state] -= 1
        self._counts[state] += 1
        entry.state = state
        entry.updated_at = now


def _matches(entry: _Entry, claim_id: int | None) -> bool:
    return claim_id is None or entry.claim_id == claim_id
