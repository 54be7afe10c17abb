"""Tests that only the Redis ledger needs: cluster, concurrency, restarts, large calls, errors.

The behaviour every ledger shares is tested by the contract suite; these tests cover what
depends on Redis itself.
"""

from __future__ import annotations

import multiprocessing
import random
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
from fakeredis import _commands as fakeredis_commands

from throttlemail import (
    Campaign,
    CampaignNotFoundError,
    CampaignState,
    Claim,
    Counts,
    DeliveryStart,
    InMemoryLedger,
    LedgerError,
    MissingDependencyError,
    RecipientState,
    RedisLedger,
)
from throttlemail.ledger.redis import ledger_from_url
from throttlemail.ledger.url import open_ledger
from throttlemail.testing import FakeClock, RecordingDispatcher

from redis_support import LOOPBACK, RedisClusterNodes, RedisServer, free_port

NOW = 1_700_000_000.0
SPAWN = multiprocessing.get_context("spawn")


def ids(start: int, stop: int) -> list[str]:
    return [f"user-{number}" for number in range(start, stop)]


@pytest.fixture
def fake_client() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


@pytest.fixture
def persistent_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server that writes every change to its append-only file before replying."""
    server = RedisServer(
        tmp_path / "aof", extra_args=["--appendonly", "yes", "--appendfsync", "always"]
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- worker processes (module level, so that spawned processes can import them) ----------


def claim_until_empty(port: int, campaign: str, barrier: Any, results: Any) -> None:
    client = redis.Redis(host=LOOPBACK, port=port)
    ledger = RedisLedger(client, campaign)
    barrier.wait(timeout=60)
    claimed: list[str] = []
    while batch := ledger.claim(500, now=NOW):
        claimed += [claim.recipient_id for claim in batch]
    results.put(claimed)
    client.close()


def import_range(port: int, campaign: str, start: int, stop: int, barrier: Any,
                 results: Any) -> None:
    client = redis.Redis(host=LOOPBACK, port=port)
    ledger = RedisLedger(client, campaign)
    barrier.wait(timeout=60)
    added = 0
    all_ids = ids(start, stop)
    for offset in range(0, len(all_ids), 5_000):
        added += ledger.add(all_ids[offset : offset + 5_000], now=NOW)
    results.put(added)
    client.close()


def run_processes(target: Callable[..., None], arguments: list[tuple[Any, ...]]) -> list[Any]:
    """Run ``target`` in one spawned process per argument tuple, all released at once."""
    barrier = SPAWN.Barrier(len(arguments))
    results = SPAWN.Queue()
    processes = [
        SPAWN.Process(target=target, args=(*args, barrier, results)) for args in arguments
    ]
    for process in processes:
        process.start()
    try:
        collected = [results.get(timeout=120) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    assert [0] * len(processes) == [process.exitcode for process in processes]
    return collected


# -- Redis Cluster -----------------------------------------------------------------------


def campaigns_on_two_masters(client: redis.RedisCluster) -> tuple[str, str]:
    """Return two campaign names whose keys live on different cluster masters."""
    first = "cluster-a"
    first_node = client.get_node_from_key(f"throttlemail:{{{first}}}:recipients")
    for number in range(1000):
        name = f"cluster-b{number}"
        node = client.get_node_from_key(f"throttlemail:{{{name}}}:recipients")
        if node.name != first_node.name:
            return first, name
    raise AssertionError("no campaign name hashed to a second master")


@pytest.mark.redis
@pytest.mark.cluster
def test_cluster_two_campaigns_end_to_end(redis_cluster: RedisClusterNodes) -> None:
    client = redis_cluster.client()
    names = campaigns_on_two_masters(client)
    sent: dict[str, list[str]] = {name: [] for name in names}

    for name in names:
        dispatcher = RecordingDispatcher()
        campaign = Campaign(
            name, ledger=RedisLedger(client, name), dispatcher=dispatcher, clock=FakeClock()
        )
        campaign.populate(ids(0, 2_000))
        campaign.send_batch(1_500)
        campaign.send_batch(1_000)
        for dispatched in dispatcher.jobs:
            job = dispatched.job
            campaign.deliver(job.recipient_id, sent[name].append, claim_id=job.claim_id)

        assert campaign.counts().sent == 2_000
        assert ids(0, 2_000) == sent[name]

    slots = {client.keyslot(f"throttlemail:{{{name}}}:recipients") for name in names}
    assert len(slots) == 2
    client.close()


@pytest.mark.redis
@pytest.mark.cluster
def test_cluster_keys_share_one_slot(redis_cluster: RedisClusterNodes) -> None:
    client = redis_cluster.client()
    ledger = RedisLedger(client, "cluster-slot")
    ledger.add(ids(0, 10), now=NOW)
    claims = ledger.claim(5, now=NOW)
    ledger.begin_delivery(claims[0].recipient_id, claims[0].claim_id, now=NOW)
    ledger.finish_delivery(
        claims[0].recipient_id, claims[0].claim_id, RecipientState.FAILED, now=NOW, error="x"
    )
    ledger.reserve_pace(30.0, now=NOW)

    keys = [
        key.decode()
        for key in client.keys("throttlemail:{cluster-slot}:*", target_nodes="all")
    ]
    assert len(keys) == 4
    assert len({client.keyslot(key) for key in keys}) == 1
    client.close()


@pytest.mark.redis
@pytest.mark.cluster
def test_cluster_reloads_flushed_scripts(redis_cluster: RedisClusterNodes) -> None:
    client = redis_cluster.client()
    ledger = RedisLedger(client, "cluster-flush")
    ledger.add(ids(0, 10), now=NOW)
    ledger.claim(2, now=NOW)

    for server in redis_cluster.servers:
        node = server.client()
        node.script_flush()
        node.close()

    assert len(ledger.claim(3, now=NOW)) == 3
    client.close()


# -- concurrency -------------------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.slow
def test_concurrent_claims_never_overlap(redis_server: RedisServer) -> None:
    ledger = RedisLedger(redis_server.client(), "concurrent-claims")
    expected = ids(0, 100_000)
    ledger.add(expected, now=NOW)

    batches = run_processes(
        claim_until_empty, [(redis_server.port, "concurrent-claims")] * 8
    )

    claimed = [recipient_id for batch in batches for recipient_id in batch]
    assert len(expected) == len(claimed)
    assert set(expected) == set(claimed)
    assert ledger.counts().scheduled == 100_000


@pytest.mark.redis
@pytest.mark.slow
def test_concurrent_imports_keep_ids_unique(redis_server: RedisServer) -> None:
    campaign = "concurrent-imports"
    ledger = RedisLedger(redis_server.client(), campaign)
    ledger.add(ids(0, 1_000), now=NOW)
    claims = ledger.claim(400, now=NOW)
    # Four overlapping ranges covering user-0 .. user-99999, each id in up to two ranges.
    ranges = [(start, start + 40_000) for start in (0, 20_000, 40_000, 60_000)]

    added = run_processes(
        import_range, [(redis_server.port, campaign, start, stop) for start, stop in ranges]
    )

    assert sum(added) == 100_000 - 1_000
    assert ledger.counts().total == 100_000
    assert ledger.counts().scheduled == 400
    exported = list(ledger.export(RecipientState.PENDING))
    assert len(exported) == len(set(exported))
    for claim in claims:
        record = ledger.lookup(claim.recipient_id)
        assert record is not None
        assert RecipientState.SCHEDULED is record.state
        assert claim.claim_id == record.claim_id


# -- restarts with append-only persistence -----------------------------------------------


@pytest.mark.redis
def test_restart_between_import_and_reimport(persistent_redis: RedisServer) -> None:
    ledger = RedisLedger(persistent_redis.client(), "restart-import")
    ledger.add(ids(0, 10_000), now=NOW)
    claimed = ledger.claim(1_000, now=NOW)

    persistent_redis.restart()

    assert ledger.add(ids(0, 15_000), now=NOW) == 5_000
    counts = ledger.counts()
    assert counts.pending == 14_000
    assert counts.scheduled == 1_000
    next_claims = ledger.claim(14_000, now=NOW)
    assert ids(1_000, 15_000) == [claim.recipient_id for claim in next_claims]
    assert claimed[-1].claim_id + 1 == next_claims[0].claim_id


@pytest.mark.redis
def test_restart_between_claim_and_delivery(persistent_redis: RedisServer) -> None:
    ledger = RedisLedger(persistent_redis.client(), "restart-claim")
    ledger.add(ids(0, 3_000), now=NOW)
    claims = ledger.claim(2_000, now=NOW)

    persistent_redis.restart()

    starts = [ledger.begin_delivery(c.recipient_id, c.claim_id, now=NOW) for c in claims]
    repeats = [ledger.begin_delivery(c.recipient_id, c.claim_id, now=NOW) for c in claims]
    assert starts == [DeliveryStart.STARTED] * 2_000
    assert repeats == [DeliveryStart.STALE] * 2_000
    remaining = ledger.claim(5_000, now=NOW)
    assert ids(2_000, 3_000) == [claim.recipient_id for claim in remaining]
    counts = ledger.counts()
    assert counts.sending == 2_000
    assert counts.scheduled == 1_000
    assert counts.pending == 0


# -- large calls -------------------------------------------------------------------------


@pytest.mark.redis
def test_large_add_and_claim_in_one_call(redis_server: RedisServer) -> None:
    ledger = RedisLedger(redis_server.client(), "large-calls")

    added = ledger.add(ids(0, 25_000), now=NOW)
    claims = ledger.claim(20_000, now=NOW)

    assert added == 25_000
    assert ids(0, 20_000) == [claim.recipient_id for claim in claims]
    assert {claims[0].claim_id} == {claim.claim_id for claim in claims}
    assert ledger.release(claims, now=NOW) == 20_000
    assert ledger.suppress(ids(0, 25_000), now=NOW) == 25_000


def test_large_add_and_claim_on_fakeredis(fake_client: fakeredis.FakeRedis) -> None:
    ledger = RedisLedger(fake_client, "large-fake")

    added = ledger.add(ids(0, 25_000), now=NOW)
    claims = ledger.claim(20_000, now=NOW)

    assert added == 25_000
    assert len(claims) == 20_000
    assert ledger.counts().pending == 5_000


@pytest.mark.redis
def test_retry_failed_beyond_one_chunk(redis_server: RedisServer) -> None:
    ledger = RedisLedger(redis_server.client(), "large-retry")
    ledger.add(ids(0, 12_000), now=NOW)
    for claim in ledger.claim(12_000, now=NOW):
        ledger.begin_delivery(claim.recipient_id, claim.claim_id, now=NOW)
        ledger.finish_delivery(
            claim.recipient_id, claim.claim_id, RecipientState.FAILED, now=NOW, error="550"
        )

    assert ledger.retry_failed(now=NOW) == 12_000
    assert ids(0, 12_000) == list(ledger.export(RecipientState.PENDING))


@pytest.mark.redis
def test_export_pages_in_import_order(redis_server: RedisServer) -> None:
    ledger = RedisLedger(redis_server.client(), "large-export")
    ledger.add(ids(0, 25_000), now=NOW)
    ledger.claim(7_000, now=NOW)

    assert ids(7_000, 25_000) == list(ledger.export(RecipientState.PENDING))
    assert ids(0, 7_000) == list(ledger.export(RecipientState.SCHEDULED))


# -- scripts, keys and values -----------------------------------------------------------


@pytest.mark.redis
def test_claim_after_script_cache_flush(redis_server: RedisServer) -> None:
    client = redis_server.client()
    ledger = RedisLedger(client, "script-flush")
    ledger.add(ids(0, 10), now=NOW)
    ledger.claim(2, now=NOW)

    client.script_flush()

    assert ids(2, 5) == [claim.recipient_id for claim in ledger.claim(3, now=NOW)]


@pytest.mark.redis
def test_keys_use_campaign_hash_tag(redis_server: RedisServer) -> None:
    client = redis_server.client(decode_responses=True)
    ledger = RedisLedger(client, "key-layout", key_prefix="app")
    ledger.add(ids(0, 3), now=NOW)
    claim = ledger.claim(1, now=NOW)[0]
    ledger.begin_delivery(claim.recipient_id, claim.claim_id, now=NOW)
    ledger.finish_delivery(
        claim.recipient_id, claim.claim_id, RecipientState.FAILED, now=NOW, error="bounced"
    )

    assert {
        "app:{key-layout}:recipients",
        "app:{key-layout}:claims",
        "app:{key-layout}:errors",
        "app:{key-layout}:meta",
    } == set(client.keys("app:{key-layout}:*"))


def test_reserve_pace_keeps_every_digit(fake_client: fakeredis.FakeRedis) -> None:
    ledger = RedisLedger(fake_client, "pace-digits")

    first = ledger.reserve_pace(0.1, now=1_700_000_000.123456)
    second = ledger.reserve_pace(30.0, now=0.0)

    assert first == 1_700_000_000.123456
    assert second == 1_700_000_000.123456 + 0.1


def test_campaign_name_brace_rejected(fake_client: fakeredis.FakeRedis) -> None:
    with pytest.raises(ValueError, match="hash tag"):
        RedisLedger(fake_client, "a}b")


@pytest.mark.parametrize("decode_responses", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_fakeredis_matches_memory_ledger(seed: int, decode_responses: bool) -> None:
    client = fakeredis.FakeRedis(
        server=fakeredis.FakeServer(), decode_responses=decode_responses
    )
    compare_with_memory_ledger(RedisLedger(client, "random"), random.Random(seed))
    compare_state_and_lookups(RedisLedger(client, "states"), random.Random(seed))


def compare_with_memory_ledger(ledger: RedisLedger, rng: random.Random) -> None:
    """Apply the same random operations to ``ledger`` and an in-memory ledger and compare
    every result, every count and every export."""
    reference = InMemoryLedger("random")
    claims: list[Claim] = []
    for step in range(300):
        operation, arguments = random_operation(rng, claims)
        now = NOW + step

        expected = getattr(reference, operation)(*arguments, now=now)
        actual = getattr(ledger, operation)(*arguments, now=now)

        assert expected == actual, f"step {step}: {operation}{arguments}"
        assert reference.counts() == ledger.counts(), f"step {step}: {operation}{arguments}"
        if operation == "claim":
            claims += expected
    for state in RecipientState:
        assert list(reference.export(state)) == list(ledger.export(state)), state


def random_operation(rng: random.Random, claims: list[Claim]) -> tuple[str, tuple[Any, ...]]:
    """Return a ledger method name and its positional arguments (all take ``now=``)."""
    claim = rng.choice(claims) if claims else Claim("user-0", 1)
    claim_id = claim.claim_id if rng.random() < 0.8 else None
    operation = rng.choice(
        ["add", "add", "claim", "release", "begin_delivery", "finish_delivery",
         "retry_failed", "suppress", "reserve_pace"]
    )
    if operation == "add":
        return operation, (list({f"user-{rng.randrange(200)}": None for _ in range(20)}),)
    if operation == "claim":
        return operation, (rng.randrange(1, 25),)
    if operation == "release":
        return operation, (rng.sample(claims, min(len(claims), 8)),)
    if operation == "begin_delivery":
        return operation, (claim.recipient_id, claim_id)
    if operation == "finish_delivery":
        outcome = rng.choice([RecipientState.SENT, RecipientState.FAILED, RecipientState.PENDING])
        return operation, (claim.recipient_id, claim_id, outcome)
    if operation == "suppress":
        return operation, (list({f"user-{rng.randrange(220)}": None for _ in range(3)}),)
    if operation == "reserve_pace":
        return operation, (rng.random() * 100,)
    return operation, ()


def compare_state_and_lookups(ledger: RedisLedger, rng: random.Random) -> None:
    """Change the campaign state and look up recipients on ``ledger`` and an in-memory
    ledger that hold the same recipients, and compare the results."""
    reference = InMemoryLedger("random")
    recipient_ids = ids(0, 50)
    reference.add(recipient_ids, now=NOW)
    ledger.add(recipient_ids, now=NOW)
    for step in range(200):
        state = rng.choices(list(CampaignState), weights=[8, 8, 1])[0]
        assert reference.change_campaign_state(state) == ledger.change_campaign_state(state)
        assert reference.campaign_state() == ledger.campaign_state()

        for claim in reference.claim(2, now=NOW):
            ledger.claim(2, now=NOW)
            started = reference.begin_delivery(claim.recipient_id, claim.claim_id, now=NOW)
            actual = ledger.begin_delivery(claim.recipient_id, claim.claim_id, now=NOW)
            assert started == actual, f"step {step}"
            if started is DeliveryStart.STARTED:
                error = rng.choice([None, "550 mailbox unavailable"])
                for target in (reference, ledger):
                    target.finish_delivery(
                        claim.recipient_id, claim.claim_id, RecipientState.FAILED,
                        now=NOW, error=error,
                    )
            break
        recipient_id = rng.choice([*recipient_ids, "absent"])
        assert reference.lookup(recipient_id) == ledger.lookup(recipient_id), f"step {step}"


@pytest.mark.redis
def test_real_redis_matches_memory_ledger(redis_server: RedisServer) -> None:
    for seed in range(3):
        client = redis_server.client(decode_responses=bool(seed % 2))
        ledger = RedisLedger(client, f"random-{seed}")
        compare_with_memory_ledger(ledger, random.Random(seed))
        compare_state_and_lookups(RedisLedger(client, f"states-{seed}"), random.Random(seed))
        client.close()


@pytest.mark.redis
def test_open_ledger_accepts_redis_url(redis_url: str) -> None:
    ledger = open_ledger(redis_url, "from-url")

    assert ledger.add(["a", "b"], now=NOW) == 2
    assert isinstance(ledger, RedisLedger)


@pytest.mark.redis
def test_missing_campaign_without_create(redis_url: str) -> None:
    ledger = open_ledger(redis_url, "never-populated", create=False)

    with pytest.raises(CampaignNotFoundError, match="'never-populated' not found"):
        ledger.change_campaign_state(CampaignState.PAUSED)

    with pytest.raises(CampaignNotFoundError):
        ledger.counts()
    assert open_ledger(redis_url, "never-populated").counts() == Counts()


@pytest.mark.redis
def test_existing_campaign_without_create(redis_url: str) -> None:
    open_ledger(redis_url, "populated-once").add(["a"], now=NOW)

    ledger = open_ledger(redis_url, "populated-once", create=False)

    assert ledger.change_campaign_state(CampaignState.PAUSED) is CampaignState.RUNNING
    assert ledger.counts() == Counts(pending=1)


def connected_client_names(client: redis.Redis) -> list[str]:
    return [entry["name"] for entry in client.client_list()]


@pytest.mark.redis
def test_close_keeps_passed_client_open(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    ledger = RedisLedger(redis_server.client(client_name="close-passed"), "close-passed")
    ledger.add(["a"], now=NOW)

    ledger.close()

    assert "close-passed" in connected_client_names(redis_client)


@pytest.mark.redis
def test_close_disconnects_client_from_url(redis_url: str, redis_client: redis.Redis) -> None:
    ledger = ledger_from_url(f"{redis_url}?client_name=close-owned", "close-owned")
    ledger.add(["a"], now=NOW)

    ledger.close()

    # The server drops the connection after the client closes it, not at once.
    deadline = time.monotonic() + 5
    while "close-owned" in connected_client_names(redis_client):
        assert time.monotonic() < deadline, "the ledger's connection is still open"
        time.sleep(0.01)
    assert ledger.counts().pending == 1


# -- errors ------------------------------------------------------------------------------


def test_dead_server_error_hides_password() -> None:
    url = f"redis://:s3cret-word@{LOOPBACK}:{free_port()}/0"
    ledger = ledger_from_url(url, "dead-server")

    with pytest.raises(LedgerError) as caught:
        ledger.counts()

    assert "s3cret-word" not in str(caught.value)
    assert caught.value.campaign == "dead-server"
    assert isinstance(caught.value.__cause__, redis.ConnectionError)


def test_invalid_url_error_hides_password() -> None:
    with pytest.raises(LedgerError) as caught:
        ledger_from_url(f"redis://:s3cret-word@{LOOPBACK}:notaport/0", "bad-url")

    assert "s3cret-word" not in str(caught.value)


def test_fakeredis_without_lupa_rejected(
    monkeypatch: pytest.MonkeyPatch, fake_client: fakeredis.FakeRedis
) -> None:
    # find_spec() reports a module as missing when its sys.modules entry is None.
    monkeypatch.setitem(sys.modules, "lupa", None)

    with pytest.raises(MissingDependencyError, match="pip install lupa"):
        RedisLedger(fake_client, "no-lua")


def test_fakeredis_without_scripting_rejected(
    monkeypatch: pytest.MonkeyPatch, fake_client: fakeredis.FakeRedis
) -> None:
    ledger = RedisLedger(fake_client, "no-scripting")
    # This is how fakeredis behaves when lupa is missing: the commands do not exist.
    for command in ("eval", "evalsha", "script"):
        monkeypatch.delitem(fakeredis_commands.SUPPORTED_COMMANDS, command, raising=False)

    with pytest.raises(MissingDependencyError, match="lupa"):
        ledger.claim(1, now=NOW)
