"""The in-process dispatcher: waiting for due times, and keeping the pace after a stall."""

from __future__ import annotations

from throttlemail import CallableDispatcher, Claim, Job, Slice
from throttlemail.testing import FakeClock

START = 1_700_000_000.0


def make_slice(index: int, due_at: float, *ids: str) -> Slice:
    return Slice(index=index, due_at=due_at, claims=tuple(Claim(rid, 1) for rid in ids))


def test_waits_until_slice_due() -> None:
    clock = FakeClock(START)
    started: list[tuple[str, float]] = []
    dispatcher = CallableDispatcher(lambda job: started.append((job.recipient_id, clock.now())),
                                    clock=clock)

    dispatcher.dispatch("c", make_slice(0, START + 30, "a", "b"))

    assert started == [("a", START + 30), ("b", START + 30)]
    assert clock.slept == [30]


def test_passes_campaign_and_claim() -> None:
    jobs: list[Job] = []
    dispatcher = CallableDispatcher(jobs.append, clock=FakeClock(START))

    dispatcher.dispatch("news", Slice(0, START, (Claim("a", 7),)))

    assert jobs == [Job("news", "a", 7)]


def test_stall_keeps_gaps_between_slices() -> None:
    clock = FakeClock(START)
    started: dict[str, float] = {}

    def slow_first(job: Job) -> None:
        started[job.recipient_id] = clock.now()
        if job.recipient_id == "a":
            clock.advance(100)

    dispatcher = CallableDispatcher(slow_first, clock=clock)

    for index, rid in enumerate("abc"):
        dispatcher.dispatch("c", make_slice(index, START + 30 * index, rid))

    assert started["a"] == START
    assert started["b"] == START + 100
    assert started["c"] == START + 130


def test_campaigns_keep_separate_pace() -> None:
    clock = FakeClock(START)
    started: dict[str, float] = {}
    dispatcher = CallableDispatcher(
        lambda job: started.setdefault(job.recipient_id, clock.now()), clock=clock
    )

    dispatcher.dispatch("one", make_slice(0, START + 50, "a"))
    dispatcher.dispatch("two", make_slice(0, START, "b"))

    assert started == {"a": START + 50, "b": START + 50}
