"""Helpers for testing code that uses throttlemail: a fake clock and a recording dispatcher.

Neither sleeps nor talks to a queue, so a whole campaign runs in a test in milliseconds::

    clock = FakeClock()
    dispatcher = RecordingDispatcher()
    campaign = Campaign("welcome", ledger=InMemoryLedger("welcome"),
                        dispatcher=dispatcher, clock=clock)
"""

from __future__ import annotations

from dataclasses import dataclass

from .dispatch.base import Job
from .ledger.memory import InMemoryLedger
from .planner import Slice

__all__ = ["DispatchedJob", "FakeClock", "InMemoryLedger", "RecordingDispatcher"]


class FakeClock:
    """A clock that does not move until a test advances it. :meth:`sleep` advances it at once."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.time = start
        self.slept: list[float] = []

    def now(self) -> float:
        return self.time

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if seconds > 0:
            self.time += seconds

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds``."""
        self.time += seconds


@dataclass(frozen=True)
class DispatchedJob:
    """One job a :class:`RecordingDispatcher` received, with the time it was due."""

    job: Job
    due_at: float


class RecordingDispatcher:
    """A dispatcher that only records what it was given, in order.

    Set :attr:`fail_on_slice` to an index to make that slice raise ``RuntimeError``, for
    testing what happens when a queue fails part-way.
    """

    def __init__(self) -> None:
        self.jobs: list[DispatchedJob] = []
        self.slices: list[Slice] = []
        self.fail_on_slice: int | None = None

    def dispatch(self, campaign: str, planned: Slice) -> None:
        if self.fail_on_slice == len(self.slices):
            raise RuntimeError(f"dispatch of slice {planned.index} failed (test)")
        self.slices.append(planned)
        for claim in planned.claims:
            self.jobs.append(
                DispatchedJob(Job(campaign, claim.recipient_id, claim.claim_id), planned.due_at)
            )

    @property
    def recipient_ids(self) -> list[str]:
        """Ids of every recipient dispatched so far, in order."""
        return [dispatched.job.recipient_id for dispatched in self.jobs]
