"""The batch planner: cuts a claimed batch into slices and gives each slice its due time.

The planner does no I/O and reads no clock. The campaign passes in the time the batch may
start, which the ledger derives atomically from the campaign's pace cursor, so that the
campaign as a whole keeps its pace however many batches overlap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ._states import Claim

MAX_INTERVAL = 86_400.0
"""Maximum gap between slices, in seconds (one day). A longer one is almost certainly a
mistake in units, and would push the campaign's shared pace cursor days ahead."""


@dataclass(frozen=True)
class Slice:
    """Recipients that are handed to the job queue together, all due at ``due_at``
    (seconds since the epoch)."""

    index: int
    due_at: float
    claims: tuple[Claim, ...]

    def __len__(self) -> int:
        return len(self.claims)


@dataclass(frozen=True)
class Plan:
    """The slices of one batch, in due-time order, and the time the next slice of the
    campaign may be due (``next_due_at``)."""

    slices: tuple[Slice, ...]
    next_due_at: float

    @property
    def recipient_count(self) -> int:
        return sum(len(part) for part in self.slices)


class BatchPlanner:
    """Plans batches at a pace of ``slice_size`` recipients every ``interval`` seconds.

    The classic recipe, 100 mails then a 30 second gap, is ``BatchPlanner(slice_size=100,
    interval=30)``: at most 200 mails a minute, spread in bursts the size of one slice.
    """

    def __init__(self, *, slice_size: int = 100, interval: float = 30.0) -> None:
        if isinstance(slice_size, bool) or not isinstance(slice_size, int):
            raise TypeError(f"slice_size must be an int, got {type(slice_size).__name__}")
        if slice_size < 1:
            raise ValueError(f"slice_size must be a positive integer, got {slice_size}")
        if isinstance(interval, bool) or not isinstance(interval, (int, float)):
            raise TypeError(f"interval must be a number of seconds, got {type(interval).__name__}")
        if not math.isfinite(interval) or interval < 0:
            raise ValueError(f"interval must be zero or more seconds, got {interval}")
        if interval > MAX_INTERVAL:
            raise ValueError(
                f"interval must be at most {MAX_INTERVAL:,.0f} seconds (one day), got {interval}"
            )

        self.slice_size = slice_size
        self.interval = float(interval)

    def __repr__(self) -> str:
        return f"BatchPlanner(slice_size={self.slice_size}, interval={self.interval:g})"

    def slice_count(self, recipient_count: int) -> int:
        """Return how many slices a batch of ``recipient_count`` recipients needs."""
        return math.ceil(recipient_count / self.slice_size)

    def span(self, recipient_count: int) -> float:
        """Return how far a batch of ``recipient_count`` moves the pace cursor, in seconds.

        It is one interval per slice: the last slice's due time plus one interval is when the
        campaign's next slice may be due.
        """
        return self.slice_count(recipient_count) * self.interval

    def plan(self, claims: Sequence[Claim], *, start: float) -> Plan:
        """Cut ``claims`` into slices, the first due at ``start``, each next one an interval
        later, keeping the claim order."""
        slices = tuple(
            Slice(
                index=index,
                due_at=start + index * self.interval,
                claims=tuple(claims[offset : offset + self.slice_size]),
            )
            for index, offset in enumerate(range(0, len(claims), self.slice_size))
        )
        return Plan(slices=slices, next_due_at=start + len(slices) * self.interval)
