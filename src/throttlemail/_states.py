"""Recipient states, campaign states and the small value objects that carry them."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class RecipientState(str, enum.Enum):
    """The state of one recipient in a campaign.

    ``pending`` → ``scheduled`` (claimed into a batch) → ``sending`` (a job won the delivery
    guard) → ``sent`` or ``failed``. ``skipped`` recipients are never claimed.
    """

    PENDING = "pending"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"

    def __str__(self) -> str:
        return self.value


class CampaignState(str, enum.Enum):
    """The control state an operator sets: whether jobs may send."""

    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


class DeliveryStart(str, enum.Enum):
    """The result of a job's request to begin delivering to a recipient."""

    STARTED = "started"
    """The job won ``scheduled → sending`` for the current claim and must send now."""

    HELD = "held"
    """The campaign is paused or cancelled: the recipient went back to ``pending``."""

    STALE = "stale"
    """The recipient is not scheduled under this claim (a late or repeated job)."""

    UNKNOWN = "unknown"
    """The ledger contains no such recipient."""


@dataclass(frozen=True)
class Counts:
    """How many recipients of a campaign are in each state."""

    pending: int = 0
    scheduled: int = 0
    sending: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0

    @property
    def total(self) -> int:
        return (
            self.pending + self.scheduled + self.sending + self.sent + self.failed + self.skipped
        )

    def __getitem__(self, state: RecipientState | str) -> int:
        return int(getattr(self, RecipientState(state).value))

    def as_dict(self) -> dict[str, int]:
        """Return the counts keyed by state name, in lifecycle order."""
        return {state.value: self[state] for state in RecipientState}

    @classmethod
    def from_mapping(cls, counts: dict[str, int]) -> Counts:
        """Build counts from a ``{state name: count}`` mapping; missing states count 0."""
        return cls(**{state.value: int(counts.get(state.value, 0)) for state in RecipientState})


@dataclass(frozen=True)
class Claim:
    """One recipient handed to one batch.

    ``claim_id`` numbers the claim within the campaign. A delivery job carries it so the
    delivery guard can tell the job of the current claim from a late copy of an earlier one.
    """

    recipient_id: str
    claim_id: int


@dataclass(frozen=True)
class PopulateResult:
    """The totals of an import: ``added`` new recipients, ``existing`` ids already present
    (their state untouched), and ``invalid`` rows rejected."""

    added: int = 0
    existing: int = 0
    invalid: int = 0

    def __add__(self, other: PopulateResult) -> PopulateResult:
        return PopulateResult(
            added=self.added + other.added,
            existing=self.existing + other.existing,
            invalid=self.invalid + other.invalid,
        )
