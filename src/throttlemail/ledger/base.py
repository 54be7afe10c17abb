"""The ledger protocol: the durable record of every recipient of one campaign."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .._states import CampaignState, Claim, Counts, DeliveryStart, RecipientState

# Shared by every ledger, so each one rejects a bad claim size with the same message.


def check_claim_limit(limit: object) -> int:
    """Return ``limit`` if it is a positive ``int``; raise otherwise."""
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(f"claim limit must be an int, got {type(limit).__name__}")
    if limit < 1:
        raise ValueError(f"claim limit must be a positive integer, got {limit}")
    return limit


FINISHED_STATES = (RecipientState.SENT, RecipientState.FAILED, RecipientState.PENDING)


def check_delivery_outcome(outcome: RecipientState) -> RecipientState:
    """Return ``outcome`` if a delivery may finish in it (sent, failed, pending); raise
    ``ValueError`` otherwise."""
    if outcome not in FINISHED_STATES:
        raise ValueError(
            f"a delivery cannot finish as {RecipientState(outcome).value!r}; "
            "use sent, failed or pending"
        )
    return outcome


@dataclass(frozen=True)
class RecipientRecord:
    """The record a ledger keeps about one recipient.

    ``claim_id`` is the latest claim that scheduled it (0 if it was never claimed);
    ``error`` is the text of the last failed send, kept until the recipient is sent.
    """

    recipient_id: str
    state: RecipientState
    claim_id: int
    error: str | None


@runtime_checkable
class RecipientLedger(Protocol):
    """The record of every recipient of one campaign, its state, and the campaign's control
    state and pace cursor.

    Every method that changes a state does so atomically: two processes calling
    :meth:`claim` at once never receive the same recipient, and two jobs calling
    :meth:`begin_delivery` for the same claim never both get ``STARTED``. Times are seconds
    since the epoch, passed in by the caller so that ledgers never read a clock.
    """

    @property
    def campaign(self) -> str:
        """The campaign whose recipients this ledger holds."""
        ...

    def add(self, recipient_ids: Sequence[str], *, now: float) -> int:
        """Add ``recipient_ids`` as ``pending`` and return how many were new.

        Ids already present keep their state. The ids are valid and unique within the call
        (the campaign checks them). Recipients are claimed in the order they were added.
        """
        ...

    def claim(self, limit: int, *, now: float) -> list[Claim]:
        """Move up to ``limit`` pending recipients to ``scheduled`` under one new claim id,
        oldest first, and return them."""
        ...

    def release(self, claims: Sequence[Claim], *, now: float) -> int:
        """Put each claimed recipient that is still ``scheduled`` under that claim back to
        ``pending``; return how many moved."""
        ...

    def begin_delivery(
        self, recipient_id: str, claim_id: int | None, *, now: float
    ) -> DeliveryStart:
        """Move the recipient from ``scheduled`` to ``sending`` if the campaign is running and
        ``claim_id`` is its current claim (any claim, when ``claim_id`` is ``None``).

        When the campaign is paused or cancelled, a scheduled recipient under that claim goes
        back to ``pending`` instead and the result is ``HELD``.
        """
        ...

    def finish_delivery(
        self,
        recipient_id: str,
        claim_id: int | None,
        outcome: RecipientState,
        *,
        now: float,
        error: str | None = None,
    ) -> bool:
        """Move the recipient from ``sending`` to ``outcome`` (``sent``, ``failed``, or
        ``pending`` to try again later), if ``claim_id`` is its current claim.

        Returns whether it moved. ``error`` is stored with ``failed``.
        """
        ...

    def retry_failed(self, *, now: float) -> int:
        """Move every ``failed`` recipient back to ``pending``; return how many moved."""
        ...

    def suppress(self, recipient_ids: Sequence[str], *, now: float) -> int:
        """Move the given ``pending`` recipients to ``skipped``; return how many moved."""
        ...

    def counts(self) -> Counts:
        """Return how many recipients are in each state, without scanning them."""
        ...

    def lookup(self, recipient_id: str) -> RecipientRecord | None:
        """Return the ledger's record of one recipient, or ``None``."""
        ...

    def export(self, state: RecipientState) -> Iterator[str]:
        """Yield the ids of the recipients in ``state``, in the order they were added.

        The iterator reads in chunks, so a large campaign is never held in memory at once.
        """
        ...

    def campaign_state(self) -> CampaignState:
        """Return the control state that operators set (``running`` until changed)."""
        ...

    def change_campaign_state(self, state: CampaignState) -> CampaignState:
        """Set the control state and return the previous one.

        A cancelled campaign stays cancelled: asking for any other state changes nothing and
        returns ``CANCELLED``.
        """
        ...

    def reserve_pace(self, span: float, *, now: float) -> float:
        """Reserve ``span`` seconds of the campaign's pace and return when they start.

        The start is the pace cursor or ``now``, whichever is later, and the cursor moves to
        start plus ``span``. Batches planned at once therefore queue behind each other.
        """
        ...

    def return_pace(self, reserved_end: float, resume_at: float) -> bool:
        """Give back the unused end of a reservation that ended at ``reserved_end``.

        If the pace cursor is still ``reserved_end`` (no later batch reserved after it),
        move it back to ``resume_at`` and return ``True``; otherwise change nothing.
        """
        ...
