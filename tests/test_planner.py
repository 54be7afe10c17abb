"""The batch planner, checked by example and by property."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from throttlemail import BatchPlanner, Claim, InMemoryLedger

claim_lists = st.integers(min_value=0, max_value=500).map(
    lambda count: [Claim(f"r{n}", 1) for n in range(count)]
)
slice_sizes = st.integers(min_value=1, max_value=200)
intervals = st.floats(min_value=0, max_value=3600, allow_nan=False)
starts = st.floats(min_value=0, max_value=4e9, allow_nan=False)


def test_plan_example() -> None:
    planner = BatchPlanner(slice_size=2, interval=30)
    claims = [Claim(f"r{n}", 1) for n in range(5)]

    plan = planner.plan(claims, start=100.0)

    assert [s.due_at for s in plan.slices] == [100.0, 130.0, 160.0]
    assert [[c.recipient_id for c in s.claims] for s in plan.slices] == [
        ["r0", "r1"], ["r2", "r3"], ["r4"],
    ]
    assert plan.next_due_at == 190.0
    assert planner.span(5) == 90.0


@given(claims=claim_lists, slice_size=slice_sizes, interval=intervals, start=starts)
def test_slices_never_exceed_size(
    claims: list[Claim], slice_size: int, interval: float, start: float
) -> None:
    plan = BatchPlanner(slice_size=slice_size, interval=interval).plan(claims, start=start)

    assert all(1 <= len(s) <= slice_size for s in plan.slices)
    assert len(plan.slices) == math.ceil(len(claims) / slice_size)


@given(claims=claim_lists, slice_size=slice_sizes, interval=intervals, start=starts)
def test_plan_keeps_every_claim_in_order(
    claims: list[Claim], slice_size: int, interval: float, start: float
) -> None:
    plan = BatchPlanner(slice_size=slice_size, interval=interval).plan(claims, start=start)

    assert [c for s in plan.slices for c in s.claims] == claims
    assert plan.recipient_count == len(claims)


@given(claims=claim_lists, slice_size=slice_sizes, interval=intervals, start=starts)
def test_due_times_never_go_backwards(
    claims: list[Claim], slice_size: int, interval: float, start: float
) -> None:
    plan = BatchPlanner(slice_size=slice_size, interval=interval).plan(claims, start=start)
    due_times = [s.due_at for s in plan.slices] + [plan.next_due_at]

    assert due_times == sorted(due_times)
    assert all(due >= start for due in due_times)


@given(
    batches=st.lists(st.tuples(st.integers(1, 300), st.floats(0, 600)), min_size=1, max_size=8),
    slice_size=slice_sizes,
    interval=st.floats(min_value=0.001, max_value=120, allow_nan=False),
)
def test_consecutive_batches_continue_pace(
    batches: list[tuple[int, float]], slice_size: int, interval: float
) -> None:
    # Each batch arrives some seconds after the previous one; the campaign's slices must
    # stay at least one interval apart however the batches overlap.
    planner = BatchPlanner(slice_size=slice_size, interval=interval)
    ledger = InMemoryLedger("pace")
    now = 1_000.0
    due_times: list[float] = []

    for size, wait in batches:
        now += wait
        claims = [Claim(f"r{n}", 1) for n in range(size)]
        start = ledger.reserve_pace(planner.span(size), now=now)
        plan = planner.plan(claims, start=start)
        assert start >= now
        due_times.extend(s.due_at for s in plan.slices)

    gaps = [later - earlier for earlier, later in itertools.pairwise(due_times)]
    assert all(gap >= interval * (1 - 1e-9) for gap in gaps)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"slice_size": 0}, ValueError, "positive integer"),
        ({"slice_size": -1}, ValueError, "positive integer"),
        ({"slice_size": 2.5}, TypeError, "must be an int"),
        ({"slice_size": True}, TypeError, "must be an int"),
        ({"interval": -1}, ValueError, "zero or more seconds"),
        ({"interval": float("nan")}, ValueError, "zero or more seconds"),
        ({"interval": float("inf")}, ValueError, "zero or more seconds"),
        ({"interval": "30"}, TypeError, "number of seconds"),
        ({"interval": 86_401}, ValueError, "at most 86,400 seconds"),
    ],
)
def test_planner_rejects_bad_options(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        BatchPlanner(**kwargs)  # type: ignore[arg-type]
