"""Shared fixtures: the ledger registry that the contract suite runs over, and a fake clock."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from throttlemail import InMemoryLedger, RecipientLedger, SqliteLedger
from throttlemail.testing import FakeClock

pytest_plugins = ["redis_support"]

LedgerFactory = Callable[[str], RecipientLedger]

_campaign_numbers = itertools.count()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def campaign_name() -> str:
    # A fresh name per test, so ledgers that outlive a test (a shared Redis) never mix.
    return f"test-{next(_campaign_numbers)}"


def _memory_factory(tmp_path: Path) -> LedgerFactory:
    return InMemoryLedger


def _sqlite_factory(tmp_path: Path) -> LedgerFactory:
    return lambda campaign: SqliteLedger(tmp_path / "ledger.db", campaign)


LEDGER_KINDS = [
    pytest.param("memory", marks=pytest.mark.memory, id="memory"),
    pytest.param("sqlite", marks=pytest.mark.sqlite, id="sqlite"),
    pytest.param("fakeredis", marks=pytest.mark.fakeredis, id="fakeredis"),
    pytest.param("redis", marks=pytest.mark.redis, id="redis"),
]


@pytest.fixture(params=LEDGER_KINDS)
def ledger_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerFactory]:
    """A function that opens a ledger of one kind for a campaign name.

    Calling it twice with one name gives two handles on the same stored campaign, as two
    processes would have.
    """
    kind = request.param
    if kind == "memory":
        shared: dict[str, InMemoryLedger] = {}
        yield lambda campaign: shared.setdefault(campaign, InMemoryLedger(campaign))
    elif kind == "sqlite":
        yield _sqlite_factory(tmp_path)
    else:
        # The Redis ledgers come from tests/redis_support.py, which starts the servers.
        redis_support = pytest.importorskip("redis_support")
        yield from redis_support.ledger_factory(request, kind)


@pytest.fixture
def ledger(ledger_factory: LedgerFactory, campaign_name: str) -> RecipientLedger:
    return ledger_factory(campaign_name)
