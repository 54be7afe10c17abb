"""Campaign behaviour over every ledger: import, batches, the delivery guard, controls."""

from __future__ import annotations

import smtplib

import pytest

from throttlemail import (
    BatchPlanner,
    CallableDispatcher,
    Campaign,
    CampaignState,
    CampaignStateError,
    Counts,
    DeliveryOutcome,
    DispatchError,
    InvalidRecipientError,
    Job,
    Plan,
    RecipientLedger,
    RecipientState,
    RetryLater,
    UnknownRecipientError,
)
from throttlemail.testing import FakeClock, RecordingDispatcher


@pytest.fixture
def dispatcher() -> RecordingDispatcher:
    return RecordingDispatcher()


@pytest.fixture
def campaign(
    ledger: RecipientLedger, dispatcher: RecordingDispatcher, clock: FakeClock
) -> Campaign:
    return Campaign(
        ledger.campaign,
        ledger=ledger,
        planner=BatchPlanner(slice_size=10, interval=30),
        dispatcher=dispatcher,
        clock=clock,
    )


def test_populate_counts_added_and_existing(campaign: Campaign) -> None:
    first = campaign.populate(range(100))
    second = campaign.populate(range(50, 150))

    assert (first.added, first.existing) == (100, 0)
    assert (second.added, second.existing) == (50, 50)
    assert campaign.counts() == Counts(pending=150)


def test_populate_counts_duplicates_once(campaign: Campaign) -> None:
    result = campaign.populate(["a", "b", "a", 7, "7", "b"])

    assert result.added == 3
    assert result.existing == 3
    assert list(campaign.export("pending")) == ["a", "b", "7"]


def test_populate_duplicates_across_chunks(campaign: Campaign) -> None:
    result = campaign.populate(["a", "b", "c", "a"], chunk_size=2)

    assert result.added == 3
    assert result.existing == 1


def test_populate_empty_input(campaign: Campaign) -> None:
    result = campaign.populate([])

    assert (result.added, result.existing, result.invalid) == (0, 0, 0)
    assert campaign.counts() == Counts()


def test_populate_reports_progress(campaign: Campaign) -> None:
    seen: list[int] = []

    campaign.populate(range(25), chunk_size=10, on_progress=lambda r: seen.append(r.added))

    assert seen == [10, 20, 25]


def test_populate_invalid_raises_before_chunk(campaign: Campaign) -> None:
    with pytest.raises(InvalidRecipientError, match="must not be empty"):
        campaign.populate(["a", "b", "c", ""], chunk_size=2)

    assert list(campaign.export("pending")) == ["a", "b"]


def test_populate_invalid_with_handler(campaign: Campaign) -> None:
    rejected: list[object] = []

    result = campaign.populate(
        ["a", None, "b c", 3.5, "d"], on_invalid=lambda value, error: rejected.append(value)
    )

    assert result.added == 2
    assert result.invalid == 3
    assert rejected == [None, "b c", 3.5]
    assert campaign.counts() == Counts(pending=2)


def test_send_batch_claims_plans_dispatches(
    campaign: Campaign, dispatcher: RecordingDispatcher, clock: FakeClock
) -> None:
    campaign.populate(range(100))

    result = campaign.send_batch(25)

    assert result.claimed == 25
    assert result.dispatched == 25
    assert result.slices == 3
    assert dispatcher.recipient_ids == [str(n) for n in range(25)]
    assert [s.due_at - clock.now() for s in dispatcher.slices] == [0, 30, 60]
    assert [len(s) for s in dispatcher.slices] == [10, 10, 5]
    assert campaign.counts() == Counts(pending=75, scheduled=25)


def test_second_batch_continues_pace(
    campaign: Campaign, dispatcher: RecordingDispatcher, clock: FakeClock
) -> None:
    campaign.populate(range(100))
    start = clock.now()

    campaign.send_batch(20)
    clock.advance(10)
    campaign.send_batch(20)

    assert [s.due_at - start for s in dispatcher.slices] == [0, 30, 60, 90]


def test_send_batch_when_nothing_pending(
    campaign: Campaign, dispatcher: RecordingDispatcher
) -> None:
    result = campaign.send_batch(10)

    assert result.claimed == 0
    assert result.first_due_at is None
    assert dispatcher.jobs == []


@pytest.mark.parametrize("size", [0, -3])
def test_send_batch_rejects_bad_size(campaign: Campaign, size: int) -> None:
    with pytest.raises(ValueError, match="positive integer"):
        campaign.send_batch(size)


def test_send_batch_when_paused(campaign: Campaign, dispatcher: RecordingDispatcher) -> None:
    campaign.populate(range(10))
    campaign.pause()

    with pytest.raises(CampaignStateError, match="paused; resume it first"):
        campaign.send_batch(5)

    assert campaign.counts() == Counts(pending=10)


def test_dispatch_failure_releases_the_rest(
    campaign: Campaign, dispatcher: RecordingDispatcher
) -> None:
    campaign.populate(range(50))
    dispatcher.fail_on_slice = 1

    with pytest.raises(DispatchError) as raised:
        campaign.send_batch(30)

    assert raised.value.dispatched == 10
    assert raised.value.released == 20
    assert campaign.counts() == Counts(pending=40, scheduled=10)
    assert list(campaign.export("scheduled")) == [str(n) for n in range(10)]


def test_interrupt_releases_then_propagates(ledger: RecipientLedger, clock: FakeClock) -> None:
    class InterruptedDispatcher:
        def dispatch(self, campaign: str, planned: object) -> None:
            raise KeyboardInterrupt

    campaign = Campaign(
        ledger.campaign, ledger=ledger, dispatcher=InterruptedDispatcher(), clock=clock
    )
    campaign.populate(range(5))

    with pytest.raises(KeyboardInterrupt):
        campaign.send_batch(5)

    assert campaign.counts() == Counts(pending=5)


def test_deliver_sends_once(campaign: Campaign, dispatcher: RecordingDispatcher) -> None:
    campaign.populate(["a"])
    campaign.send_batch(1)
    (dispatched,) = dispatcher.jobs
    mailed: list[str] = []

    first = campaign.deliver("a", mailed.append, claim_id=dispatched.job.claim_id)
    second = campaign.deliver("a", mailed.append, claim_id=dispatched.job.claim_id)

    assert first is DeliveryOutcome.SENT
    assert second is DeliveryOutcome.STALE
    assert mailed == ["a"]
    assert campaign.counts() == Counts(sent=1)


def test_deliver_earlier_claim_sends_nothing(
    campaign: Campaign, dispatcher: RecordingDispatcher
) -> None:
    campaign.populate(["a"])
    campaign.send_batch(1)
    old_claim = dispatcher.jobs[0].job.claim_id
    campaign.pause()
    campaign.deliver("a", lambda rid: None, claim_id=old_claim)
    campaign.resume()
    campaign.send_batch(1)
    new_claim = dispatcher.jobs[1].job.claim_id
    mailed: list[str] = []

    late = campaign.deliver("a", mailed.append, claim_id=old_claim)
    current = campaign.deliver("a", mailed.append, claim_id=new_claim)

    assert late is DeliveryOutcome.STALE
    assert current is DeliveryOutcome.SENT
    assert mailed == ["a"]


@pytest.mark.parametrize("stop", ["pause", "cancel"])
def test_deliver_holds_when_stopped(
    campaign: Campaign, dispatcher: RecordingDispatcher, stop: str
) -> None:
    campaign.populate(["a", "b"])
    campaign.send_batch(2)
    getattr(campaign, stop)()
    mailed: list[str] = []

    outcome = campaign.deliver("a", mailed.append, claim_id=dispatcher.jobs[0].job.claim_id)

    assert outcome is DeliveryOutcome.HELD
    assert mailed == []
    assert campaign.counts() == Counts(pending=1, scheduled=1)


def test_deliver_permanent_error_fails(
    campaign: Campaign, dispatcher: RecordingDispatcher
) -> None:
    campaign.populate(["a"])
    campaign.send_batch(1)

    def refuse(recipient_id: str) -> None:
        raise smtplib.SMTPRecipientsRefused({"a@example.com": (550, b"no such user")})

    outcome = campaign.deliver("a", refuse, claim_id=dispatcher.jobs[0].job.claim_id)

    record = campaign.ledger.lookup("a")
    assert outcome is DeliveryOutcome.FAILED
    assert record is not None
    assert record.state is RecipientState.FAILED
    assert record.error is not None
    assert "no such user" in record.error


@pytest.mark.parametrize(
    "error",
    [
        RetryLater("provider rate limit"),
        smtplib.SMTPResponseException(451, b"try again later"),
        smtplib.SMTPSenderRefused(421, b"too many connections", "news@example.com"),
        smtplib.SMTPRecipientsRefused({"a@example.com": (452, b"mailbox full")}),
    ],
)
def test_deliver_temporary_error_defers(
    campaign: Campaign, dispatcher: RecordingDispatcher, error: Exception
) -> None:
    campaign.populate(["a"])
    campaign.send_batch(1)

    def flaky(recipient_id: str) -> None:
        raise error

    outcome = campaign.deliver("a", flaky, claim_id=dispatcher.jobs[0].job.claim_id)

    assert outcome is DeliveryOutcome.DEFERRED
    assert campaign.counts() == Counts(pending=1)


def test_deliver_interrupt_leaves_sending(
    campaign: Campaign, dispatcher: RecordingDispatcher
) -> None:
    campaign.populate(["a"])
    campaign.send_batch(1)

    def killed(recipient_id: str) -> None:
        raise SystemExit(1)

    with pytest.raises(SystemExit):
        campaign.deliver("a", killed, claim_id=dispatcher.jobs[0].job.claim_id)

    assert campaign.counts() == Counts(sending=1)


def test_deliver_unknown_recipient(campaign: Campaign) -> None:
    with pytest.raises(UnknownRecipientError, match="has no recipient 'ghost'"):
        campaign.deliver("ghost", lambda rid: None, claim_id=1)


def test_deliver_int_id_means_string(campaign: Campaign, dispatcher: RecordingDispatcher) -> None:
    campaign.populate([42])
    campaign.send_batch(1)
    mailed: list[str] = []

    campaign.deliver(42, mailed.append, claim_id=dispatcher.jobs[0].job.claim_id)

    assert mailed == ["42"]


def test_retry_failed_then_send_again(
    campaign: Campaign, dispatcher: RecordingDispatcher
) -> None:
    campaign.populate(["a"])
    campaign.send_batch(1)

    def broken(recipient_id: str) -> None:
        raise RuntimeError("template error")

    campaign.deliver("a", broken, claim_id=dispatcher.jobs[0].job.claim_id)

    assert campaign.retry_failed() == 1
    campaign.send_batch(1)
    outcome = campaign.deliver("a", lambda rid: None, claim_id=dispatcher.jobs[1].job.claim_id)
    assert outcome is DeliveryOutcome.SENT
    assert campaign.counts() == Counts(sent=1)


def test_cancel_cannot_resume(campaign: Campaign) -> None:
    campaign.cancel()

    with pytest.raises(CampaignStateError, match="cancelled"):
        campaign.resume()
    with pytest.raises(CampaignStateError, match="cancelled"):
        campaign.pause()
    assert campaign.state() is CampaignState.CANCELLED


def test_suppress_skips_recipients(campaign: Campaign, dispatcher: RecordingDispatcher) -> None:
    campaign.populate(["a", "b", "c"])

    assert campaign.suppress(["b", "b"]) == 1

    campaign.send_batch(10)
    assert dispatcher.recipient_ids == ["a", "c"]
    assert campaign.counts() == Counts(scheduled=2, skipped=1)


def test_status_shape(campaign: Campaign) -> None:
    campaign.populate(["a"])

    assert campaign.status().as_dict() == {
        "campaign": campaign.name,
        "state": "running",
        "counts": {
            "pending": 1, "scheduled": 0, "sending": 0, "sent": 0, "failed": 0, "skipped": 0,
        },
    }


def test_campaign_name_must_match_ledger(ledger: RecipientLedger) -> None:
    with pytest.raises(ValueError, match="ledger of campaign"):
        Campaign(ledger.campaign + "-x", ledger=ledger)


@pytest.mark.parametrize("name", ["", "has space", "{tag}", "-lead", "x" * 101])
def test_campaign_name_rejected(ledger: RecipientLedger, name: str) -> None:
    with pytest.raises(ValueError, match="invalid campaign name"):
        Campaign(name, ledger=ledger)


def test_close_then_use_again(campaign: Campaign) -> None:
    campaign.populate(["a", "b"])

    campaign.close()

    assert campaign.counts() == Counts(pending=2)


def test_dispatch_failure_returns_unused_pace(
    campaign: Campaign, dispatcher: RecordingDispatcher, clock: FakeClock
) -> None:
    campaign.populate(range(100))
    dispatcher.fail_on_slice = 1
    start = clock.now()

    with pytest.raises(DispatchError):
        campaign.send_batch(50)
    dispatcher.fail_on_slice = None
    campaign.send_batch(10)

    # Slice 1 failed and may have been partly handed over, so the pace resumes after it.
    assert [s.due_at - start for s in dispatcher.slices] == [0, 60]


def test_interrupt_mid_slice_keeps_pace(ledger: RecipientLedger, clock: FakeClock) -> None:
    sent: list[tuple[str, float]] = []
    interrupts = ["4"]

    def handle(job: Job) -> None:
        if job.recipient_id in interrupts:
            interrupts.remove(job.recipient_id)
            raise KeyboardInterrupt
        campaign.deliver(
            job.recipient_id, lambda rid: sent.append((rid, clock.now())), claim_id=job.claim_id
        )

    campaign = Campaign(
        ledger.campaign,
        ledger=ledger,
        planner=BatchPlanner(slice_size=3, interval=30),
        dispatcher=CallableDispatcher(handle, clock=clock),
        clock=clock,
    )
    campaign.populate(range(12))
    begin = clock.now()

    with pytest.raises(KeyboardInterrupt):
        campaign.send_batch(9)
    campaign.send_batch(3)

    # Recipient 3 went out in slice 1 before the interrupt, so the next batch waits for
    # slice 1's successor instead of reusing slice 1's time.
    assert [(rid, when - begin) for rid, when in sent] == [
        ("0", 0), ("1", 0), ("2", 0), ("3", 30), ("4", 60), ("5", 60), ("6", 60),
    ]
    assert campaign.counts() == Counts(pending=5, sent=7)


def test_send_batch_reports_plan(campaign: Campaign, clock: FakeClock) -> None:
    campaign.populate(range(30))
    plans: list[Plan] = []

    campaign.send_batch(25, on_plan=plans.append)

    assert len(plans) == 1
    assert [len(s) for s in plans[0].slices] == [10, 10, 5]
    assert plans[0].slices[0].due_at == clock.now()


def test_interrupt_before_first_slice_releases_all(
    campaign: Campaign, dispatcher: RecordingDispatcher
) -> None:
    campaign.populate(range(40))

    def interrupt(plan: Plan) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        campaign.send_batch(40, on_plan=interrupt)

    assert campaign.counts() == Counts(pending=40)
    assert dispatcher.jobs == []
