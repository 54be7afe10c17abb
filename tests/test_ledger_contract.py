"""The contract every ledger keeps, run over each implementation by the ledger fixture."""

from __future__ import annotations

import pytest

from throttlemail import (
    CampaignState,
    Claim,
    Counts,
    DeliveryStart,
    RecipientLedger,
    RecipientState,
)

from conftest import LedgerFactory

NOW = 1_700_000_000.0
PENDING = RecipientState.PENDING
SCHEDULED = RecipientState.SCHEDULED
SENDING = RecipientState.SENDING
SENT = RecipientState.SENT
FAILED = RecipientState.FAILED
SKIPPED = RecipientState.SKIPPED


def ids(count: int, prefix: str = "r") -> list[str]:
    return [f"{prefix}{number}" for number in range(count)]


def state_of(ledger: RecipientLedger, recipient_id: str) -> RecipientState | None:
    record = ledger.lookup(recipient_id)
    return None if record is None else record.state


def test_ledger_implements_protocol(ledger: RecipientLedger) -> None:
    assert isinstance(ledger, RecipientLedger)


def test_new_ledger_is_empty_and_running(ledger: RecipientLedger) -> None:
    assert ledger.counts() == Counts()
    assert ledger.campaign_state() is CampaignState.RUNNING
    assert ledger.lookup("nobody") is None
    assert list(ledger.export(PENDING)) == []


def test_add_counts_new_ids(ledger: RecipientLedger) -> None:
    assert ledger.add(ids(5), now=NOW) == 5
    assert ledger.counts() == Counts(pending=5)
    assert list(ledger.export(PENDING)) == ids(5)


def test_add_empty_input(ledger: RecipientLedger) -> None:
    assert ledger.add([], now=NOW) == 0
    assert ledger.counts() == Counts()


def test_add_again_adds_nothing(ledger: RecipientLedger) -> None:
    ledger.add(ids(5), now=NOW)

    assert ledger.add(ids(5), now=NOW) == 0
    assert ledger.counts() == Counts(pending=5)


def test_add_overlapping_counts_only_new(ledger: RecipientLedger) -> None:
    ledger.add(ids(5), now=NOW)

    assert ledger.add(ids(8), now=NOW) == 3
    assert ledger.counts() == Counts(pending=8)
    assert list(ledger.export(PENDING)) == ids(8)


def test_reimport_after_sending_changes_no_state(ledger: RecipientLedger) -> None:
    ledger.add(ids(6), now=NOW)
    claims = ledger.claim(4, now=NOW)
    ledger.begin_delivery("r0", claims[0].claim_id, now=NOW)
    ledger.finish_delivery("r0", claims[0].claim_id, SENT, now=NOW)
    ledger.begin_delivery("r1", claims[1].claim_id, now=NOW)
    ledger.finish_delivery("r1", claims[1].claim_id, FAILED, now=NOW, error="550 no")
    ledger.begin_delivery("r2", claims[2].claim_id, now=NOW)
    ledger.suppress(["r5"], now=NOW)
    before = ledger.counts()

    assert ledger.add(ids(6), now=NOW) == 0

    assert ledger.counts() == before
    assert before == Counts(pending=1, scheduled=1, sending=1, sent=1, failed=1, skipped=1)
    assert [state_of(ledger, rid) for rid in ids(6)] == [
        SENT, FAILED, SENDING, SCHEDULED, PENDING, SKIPPED,
    ]


def test_claim_takes_oldest_first(ledger: RecipientLedger) -> None:
    ledger.add(["c", "a", "b"], now=NOW)
    ledger.add(["d"], now=NOW)

    claims = ledger.claim(3, now=NOW)

    assert [claim.recipient_id for claim in claims] == ["c", "a", "b"]
    assert ledger.counts() == Counts(pending=1, scheduled=3)


def test_claim_shares_one_new_claim_id(ledger: RecipientLedger) -> None:
    ledger.add(ids(4), now=NOW)

    first = ledger.claim(2, now=NOW)
    second = ledger.claim(2, now=NOW)

    assert len({claim.claim_id for claim in first}) == 1
    assert len({claim.claim_id for claim in second}) == 1
    assert first[0].claim_id != second[0].claim_id
    assert ledger.lookup("r0").claim_id == first[0].claim_id  # type: ignore[union-attr]


def test_claim_more_than_pending(ledger: RecipientLedger) -> None:
    ledger.add(ids(3), now=NOW)

    assert len(ledger.claim(10, now=NOW)) == 3
    assert ledger.claim(10, now=NOW) == []
    assert ledger.counts() == Counts(scheduled=3)


@pytest.mark.parametrize("limit", [0, -1])
def test_claim_rejects_non_positive_limit(ledger: RecipientLedger, limit: int) -> None:
    with pytest.raises(ValueError, match="positive integer"):
        ledger.claim(limit, now=NOW)


@pytest.mark.parametrize("limit", [1.5, "10", True, None])
def test_claim_rejects_non_int_limit(ledger: RecipientLedger, limit: object) -> None:
    with pytest.raises(TypeError, match="must be an int"):
        ledger.claim(limit, now=NOW)  # type: ignore[arg-type]


def test_release_returns_to_pending_in_import_order(ledger: RecipientLedger) -> None:
    ledger.add(ids(4), now=NOW)
    claims = ledger.claim(2, now=NOW)

    assert ledger.release(claims, now=NOW) == 2

    assert ledger.counts() == Counts(pending=4)
    assert [c.recipient_id for c in ledger.claim(4, now=NOW)] == ids(4)


def test_release_ignores_other_claims(ledger: RecipientLedger) -> None:
    ledger.add(ids(2), now=NOW)
    (old,) = ledger.claim(1, now=NOW)
    ledger.release([old], now=NOW)
    (new,) = ledger.claim(1, now=NOW)

    assert ledger.release([old], now=NOW) == 0
    assert ledger.release([Claim("missing", new.claim_id)], now=NOW) == 0
    assert state_of(ledger, "r0") is SCHEDULED
    assert ledger.release([], now=NOW) == 0


def test_release_leaves_sending_alone(ledger: RecipientLedger) -> None:
    ledger.add(ids(1), now=NOW)
    (claim,) = ledger.claim(1, now=NOW)
    ledger.begin_delivery("r0", claim.claim_id, now=NOW)

    assert ledger.release([claim], now=NOW) == 0
    assert state_of(ledger, "r0") is SENDING


def test_begin_delivery_starts_once(ledger: RecipientLedger) -> None:
    ledger.add(ids(1), now=NOW)
    (claim,) = ledger.claim(1, now=NOW)

    assert ledger.begin_delivery("r0", claim.claim_id, now=NOW) is DeliveryStart.STARTED
    assert ledger.begin_delivery("r0", claim.claim_id, now=NOW) is DeliveryStart.STALE
    assert ledger.counts() == Counts(sending=1)


def test_begin_delivery_rejects_earlier_claim(ledger: RecipientLedger) -> None:
    ledger.add(ids(1), now=NOW)
    (old,) = ledger.claim(1, now=NOW)
    ledger.release([old], now=NOW)
    (current,) = ledger.claim(1, now=NOW)

    assert ledger.begin_delivery("r0", old.claim_id, now=NOW) is DeliveryStart.STALE
    assert state_of(ledger, "r0") is SCHEDULED
    assert ledger.begin_delivery("r0", current.claim_id, now=NOW) is DeliveryStart.STARTED


def test_begin_delivery_without_claim_id(ledger: RecipientLedger) -> None:
    ledger.add(ids(1), now=NOW)
    ledger.claim(1, now=NOW)

    assert ledger.begin_delivery("r0", None, now=NOW) is DeliveryStart.STARTED


def test_begin_delivery_pending_is_stale(ledger: RecipientLedger) -> None:
    ledger.add(ids(1), now=NOW)

    assert ledger.begin_delivery("r0", None, now=NOW) is DeliveryStart.STALE
    assert state_of(ledger, "r0") is PENDING


def test_begin_delivery_unknown_recipient(ledger: RecipientLedger) -> None:
    assert ledger.begin_delivery("ghost", 1, now=NOW) is DeliveryStart.UNKNOWN


@pytest.mark.parametrize("control", [CampaignState.PAUSED, CampaignState.CANCELLED])
def test_begin_delivery_holds_when_stopped(
    ledger: RecipientLedger, control: CampaignState
) -> None:
    ledger.add(ids(2), now=NOW)
    claims = ledger.claim(2, now=NOW)
    ledger.change_campaign_state(control)

    assert ledger.begin_delivery("r0", claims[0].claim_id, now=NOW) is DeliveryStart.HELD

    assert state_of(ledger, "r0") is PENDING
    assert ledger.counts() == Counts(pending=1, scheduled=1)
    assert ledger.begin_delivery("r0", claims[0].claim_id, now=NOW) is DeliveryStart.STALE


def test_paused_then_resumed_delivers(ledger: RecipientLedger) -> None:
    ledger.add(ids(1), now=NOW)
    (claim,) = ledger.claim(1, now=NOW)
    ledger.change_campaign_state(CampaignState.PAUSED)
    ledger.change_campaign_state(CampaignState.RUNNING)

    assert ledger.begin_delivery("r0", claim.claim_id, now=NOW) is DeliveryStart.STARTED


@pytest.mark.parametrize("outcome", [SENT, FAILED, PENDING])
def test_finish_delivery_moves_sending(ledger: RecipientLedger, outcome: RecipientState) -> None:
    ledger.add(ids(1), now=NOW)
    (claim,) = ledger.claim(1, now=NOW)
    ledger.begin_delivery("r0", claim.claim_id, now=NOW)

    assert ledger.finish_delivery("r0", claim.claim_id, outcome, now=NOW) is True

    assert state_of(ledger, "r0") is outcome
    assert ledger.counts()[outcome] == 1
    assert ledger.counts().total == 1


def test_finish_delivery_stores_error(ledger: RecipientLedger) -> None:
    ledger.add(ids(1), now=NOW)
    (claim,) = ledger.claim(1, now=NOW)
    ledger.begin_delivery("r0", claim.claim_id, now=NOW)

    ledger.finish_delivery("r0", claim.claim_id, FAILED, now=NOW, error="550 mailbox unknown")

    record = ledger.lookup("r0")
    assert record is not None
    assert record.state is FAILED
    assert record.error == "550 mailbox unknown"


def test_finish_delivery_needs_sending(ledger: RecipientLedger) -> None:
    ledger.add(ids(1), now=NOW)
    (claim,) = ledger.claim(1, now=NOW)

    assert ledger.finish_delivery("r0", claim.claim_id, SENT, now=NOW) is False
    assert ledger.finish_delivery("ghost", claim.claim_id, SENT, now=NOW) is False
    assert state_of(ledger, "r0") is SCHEDULED


def test_finish_delivery_needs_current_claim(ledger: RecipientLedger) -> None:
    ledger.add(ids(1), now=NOW)
    (claim,) = ledger.claim(1, now=NOW)
    ledger.begin_delivery("r0", claim.claim_id, now=NOW)

    assert ledger.finish_delivery("r0", claim.claim_id + 1, SENT, now=NOW) is False
    assert state_of(ledger, "r0") is SENDING


def test_finish_delivery_rejects_bad_outcome(ledger: RecipientLedger) -> None:
    with pytest.raises(ValueError, match="cannot finish"):
        ledger.finish_delivery("r0", 1, SCHEDULED, now=NOW)


def test_deferred_recipient_is_claimed_again(ledger: RecipientLedger) -> None:
    ledger.add(ids(2), now=NOW)
    (first, _) = ledger.claim(2, now=NOW)
    ledger.begin_delivery("r0", first.claim_id, now=NOW)
    ledger.finish_delivery("r0", first.claim_id, PENDING, now=NOW)

    (again,) = ledger.claim(5, now=NOW)

    assert again.recipient_id == "r0"
    assert again.claim_id > first.claim_id


def test_retry_failed_returns_all_failed(ledger: RecipientLedger) -> None:
    ledger.add(ids(3), now=NOW)
    claims = ledger.claim(3, now=NOW)
    for claim in claims[:2]:
        ledger.begin_delivery(claim.recipient_id, claim.claim_id, now=NOW)
        ledger.finish_delivery(claim.recipient_id, claim.claim_id, FAILED, now=NOW, error="x")

    assert ledger.retry_failed(now=NOW) == 2

    assert ledger.counts() == Counts(pending=2, scheduled=1)
    assert ledger.retry_failed(now=NOW) == 0
    assert [c.recipient_id for c in ledger.claim(5, now=NOW)] == ["r0", "r1"]


def test_suppress_only_pending(ledger: RecipientLedger) -> None:
    ledger.add(ids(3), now=NOW)
    ledger.claim(1, now=NOW)

    assert ledger.suppress(["r0", "r1", "ghost", "r1"], now=NOW) == 1

    assert [state_of(ledger, rid) for rid in ids(3)] == [SCHEDULED, SKIPPED, PENDING]
    assert [c.recipient_id for c in ledger.claim(5, now=NOW)] == ["r2"]
    assert ledger.suppress([], now=NOW) == 0


def test_export_by_state_in_import_order(ledger: RecipientLedger) -> None:
    ledger.add(ids(6), now=NOW)
    claims = ledger.claim(4, now=NOW)
    ledger.release(claims[1:2], now=NOW)

    assert list(ledger.export(PENDING)) == ["r1", "r4", "r5"]
    assert list(ledger.export(SCHEDULED)) == ["r0", "r2", "r3"]
    assert list(ledger.export(SENT)) == []


def test_export_large_state_streams_everything(ledger: RecipientLedger) -> None:
    ledger.add(ids(25_000), now=NOW)

    exported = list(ledger.export(PENDING))

    assert len(exported) == 25_000
    assert exported[0] == "r0"
    assert exported[-1] == "r24999"
    assert len(set(exported)) == 25_000


def test_cancelled_stays_cancelled(ledger: RecipientLedger) -> None:
    assert ledger.change_campaign_state(CampaignState.PAUSED) is CampaignState.RUNNING
    assert ledger.change_campaign_state(CampaignState.CANCELLED) is CampaignState.PAUSED

    assert ledger.change_campaign_state(CampaignState.RUNNING) is CampaignState.CANCELLED
    assert ledger.campaign_state() is CampaignState.CANCELLED


def test_reserve_pace_starts_now_when_idle(ledger: RecipientLedger) -> None:
    assert ledger.reserve_pace(90.0, now=NOW) == NOW


def test_reserve_pace_queues_batches(ledger: RecipientLedger) -> None:
    first = ledger.reserve_pace(300.0, now=NOW)
    second = ledger.reserve_pace(300.0, now=NOW + 60)

    assert first == NOW
    assert second == NOW + 300


def test_reserve_pace_after_idle_gap(ledger: RecipientLedger) -> None:
    ledger.reserve_pace(30.0, now=NOW)

    assert ledger.reserve_pace(30.0, now=NOW + 1000) == NOW + 1000


def test_handles_share_one_campaign(ledger_factory: LedgerFactory, campaign_name: str) -> None:
    first = ledger_factory(campaign_name)
    second = ledger_factory(campaign_name)
    first.add(ids(3), now=NOW)
    first.change_campaign_state(CampaignState.PAUSED)

    assert second.counts() == Counts(pending=3)
    assert second.campaign_state() is CampaignState.PAUSED
    assert second.add(ids(4), now=NOW) == 1


def test_campaigns_are_separate(ledger_factory: LedgerFactory, campaign_name: str) -> None:
    first = ledger_factory(campaign_name)
    other = ledger_factory(campaign_name + "-other")
    first.add(ids(3), now=NOW)
    first.change_campaign_state(CampaignState.CANCELLED)

    assert other.add(ids(2), now=NOW) == 2
    assert other.counts() == Counts(pending=2)
    assert other.campaign_state() is CampaignState.RUNNING
    assert first.counts() == Counts(pending=3)


def test_unicode_ids_round_trip(ledger: RecipientLedger) -> None:
    unusual = ["ünïcødé", "user@example.com", "1234567890", "a:b{c}d", "-5", "x" * 256]
    ledger.add(unusual, now=NOW)

    assert list(ledger.export(PENDING)) == unusual
    assert [c.recipient_id for c in ledger.claim(10, now=NOW)] == unusual


def test_return_pace_moves_cursor_back(ledger: RecipientLedger) -> None:
    start = ledger.reserve_pace(300.0, now=NOW)

    assert ledger.return_pace(start + 300.0, NOW + 30) is True

    assert ledger.reserve_pace(30.0, now=NOW) == NOW + 30


def test_return_pace_after_later_reservation(ledger: RecipientLedger) -> None:
    start = ledger.reserve_pace(300.0, now=NOW)
    ledger.reserve_pace(60.0, now=NOW)

    assert ledger.return_pace(start + 300.0, NOW + 30) is False

    assert ledger.reserve_pace(30.0, now=NOW) == NOW + 360
