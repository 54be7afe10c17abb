"""A dispatcher that runs each job in this process, waiting until its slice is due."""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..clock import Clock, SystemClock
from ..planner import Slice
from .base import Job

logger = logging.getLogger(__name__)


class CallableDispatcher:
    """Calls ``handler(job)`` for each recipient of a slice once the slice is due.

    The handler usually calls :meth:`throttlemail.Campaign.deliver`. :meth:`dispatch` blocks
    while it waits for the due time and while the handler runs, so this suits scripts,
    tests and small sends. Use a queue-backed dispatcher to send from workers.

    When a slice starts late (a slow send, a stopped process), the slices after it keep
    their planned gaps from it rather than all starting at once, so a stall never turns
    into a burst above the pace.

    NOTE: the delay stays within this dispatcher. A batch of the same campaign sent from
    another process follows its plan, so the two can exceed the pace while this one is late.
    """

    def __init__(self, handler: Callable[[Job], object], *, clock: Clock | None = None) -> None:
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {type(handler).__name__}")
        self._handler = handler
        self._clock = clock if clock is not None else SystemClock()
        # Campaign name -> (due time, actual start) of the last slice this dispatcher ran.
        self._last_slice: dict[str, tuple[float, float]] = {}

    def dispatch(self, campaign: str, planned: Slice) -> None:
        start_at = self._start_time(campaign, planned.due_at)
        delay = start_at - self._clock.now()
        if delay > 0:
            logger.debug(
                "campaign %s: waiting %.1f s for slice %d", campaign, delay, planned.index
            )
            self._clock.sleep(delay)

        self._last_slice[campaign] = (planned.due_at, self._clock.now())
        for claim in planned.claims:
            self._handler(Job(campaign, claim.recipient_id, claim.claim_id))

    def _start_time(self, campaign: str, due_at: float) -> float:
        last = self._last_slice.get(campaign)
        if last is None:
            return due_at

        last_due_at, last_started_at = last
        planned_gap = max(due_at - last_due_at, 0.0)
        return max(due_at, last_started_at + planned_gap)
