"""End to end: the example newsletter's mail, received by a real SMTP server on 127.0.0.1.

The example application lives in ``examples/newsletter``. These tests put ``examples/`` on
``sys.path`` to import it and run its campaign on a SQLite ledger in a temporary
directory. They check every message that an aiosmtpd server receives.
"""

from __future__ import annotations

import csv
import importlib
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from types import ModuleType

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from throttlemail import BatchPlanner, Campaign, Counts, RecipientState

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
RECIPIENTS_FILE = EXAMPLES / "data" / "recipients.csv"
MAIN_JOB = EXAMPLES / "main_job.py"
SUBJECT = "Our terms of service are changing"
BATCH_SIZE = 200


@dataclass(frozen=True)
class Row:
    recipient_id: str
    email: str
    name: str


@dataclass(frozen=True)
class ReceivedMessage:
    envelope_recipients: tuple[str, ...]
    message: EmailMessage


class RecordingHandler:
    """An aiosmtpd handler that keeps every message, and rejects chosen addresses.

    ``rcpt_replies`` maps an address to the reply its ``RCPT TO`` gets instead of 250.
    """

    def __init__(self) -> None:
        self.received: list[ReceivedMessage] = []
        self.rcpt_replies: dict[str, str] = {}

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = self.rcpt_replies.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        parsed = BytesParser(policy=policy.default).parsebytes(envelope.original_content or b"")
        assert isinstance(parsed, EmailMessage)
        self.received.append(ReceivedMessage(tuple(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"


def read_rows() -> dict[str, Row]:
    with RECIPIENTS_FILE.open(encoding="utf-8", newline="") as file:
        return {
            row["id"]: Row(row["id"], row["email"], row["name"]) for row in csv.DictReader(file)
        }


def free_port() -> int:
    # aiosmtpd's Controller connects to its own port once started, so it needs a real one.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@contextmanager
def running_smtp_server(
    handler: RecordingHandler, monkeypatch: pytest.MonkeyPatch, notifier: ModuleType
) -> Iterator[None]:
    """Run aiosmtpd on 127.0.0.1 and point the example's notifier at it."""
    # server_hostname avoids aiosmtpd's default, socket.getfqdn(), which may query DNS.
    controller = Controller(
        handler, hostname="127.0.0.1", port=free_port(), server_hostname="localhost"
    )
    controller.start()
    monkeypatch.setenv("NEWSLETTER_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("NEWSLETTER_SMTP_PORT", str(controller.port))
    monkeypatch.setenv("NEWSLETTER_RECIPIENTS", str(RECIPIENTS_FILE))
    try:
        yield
    finally:
        notifier.close()
        controller.stop()


@contextmanager
def example_campaign(
    ledger_path: Path, monkeypatch: pytest.MonkeyPatch, planner: BatchPlanner
) -> Iterator[tuple[Campaign, ModuleType]]:
    """Import the example application and build its campaign on a ledger at ``ledger_path``.

    Yields the campaign and the application's notifier module.
    """
    monkeypatch.syspath_prepend(str(EXAMPLES))
    # Importing the app opens the ledger that NEWSLETTER_LEDGER names, so the first import
    # must not create newsletter.db in the working directory.
    monkeypatch.setenv("NEWSLETTER_LEDGER", str(ledger_path.with_name("imported-app.db")))
    app = importlib.import_module("newsletter.app")
    notifier = importlib.import_module("newsletter.notifier")

    campaign = app.build_campaign(ledger_path, planner=planner)
    try:
        yield campaign, notifier
    finally:
        campaign.ledger.close()
        app.campaign.ledger.close()


@dataclass(frozen=True)
class SentBatch:
    campaign: Campaign
    received: list[ReceivedMessage]
    rows: dict[str, Row]
    claimed_ids: list[str]


@pytest.fixture(scope="module")
def sent_batch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentBatch]:
    """The whole recipient file imported and a batch of 200 sent, in slices of 50."""
    planner = BatchPlanner(slice_size=50, interval=0.05)
    ledger_path = tmp_path_factory.mktemp("end-to-end") / "ledger.db"
    handler = RecordingHandler()
    rows = read_rows()

    with pytest.MonkeyPatch.context() as monkeypatch, example_campaign(
        ledger_path, monkeypatch, planner
    ) as (campaign, notifier), running_smtp_server(handler, monkeypatch, notifier):
        campaign.populate(rows.keys())
        # The ledger claims in import order, so the batch is the first 200 rows.
        claimed_ids = list(rows)[:BATCH_SIZE]
        campaign.send_batch(BATCH_SIZE)
        yield SentBatch(campaign, handler.received, rows, claimed_ids)


def test_batch_sends_one_message_per_recipient(sent_batch: SentBatch) -> None:
    envelope_recipients = [
        address for received in sent_batch.received for address in received.envelope_recipients
    ]

    assert len(sent_batch.received) == BATCH_SIZE
    assert len(envelope_recipients) == len(set(envelope_recipients))


def test_batch_envelope_recipients_are_claimed_emails(sent_batch: SentBatch) -> None:
    expected = {sent_batch.rows[recipient_id].email for recipient_id in sent_batch.claimed_ids}

    for received in sent_batch.received:
        assert len(received.envelope_recipients) == 1
        assert received.envelope_recipients[0] in expected


def test_batch_messages_match_csv_rows(sent_batch: SentBatch) -> None:
    rows_by_email = {row.email: row for row in sent_batch.rows.values()}

    for received in sent_batch.received:
        envelope_recipient = received.envelope_recipients[0]
        row = rows_by_email[envelope_recipient]
        (to,) = received.message["To"].addresses
        assert to.addr_spec == envelope_recipient
        assert to.display_name == row.name
        assert received.message["Subject"] == SUBJECT
        assert f"id={row.recipient_id}>" in received.message["List-Unsubscribe"]
        assert received.message["Message-ID"]
        assert received.message["Date"]


def test_batch_messages_have_text_and_html(sent_batch: SentBatch) -> None:
    for received in sent_batch.received:
        (to,) = received.message["To"].addresses
        text = received.message.get_body(preferencelist=("plain",))
        markup = received.message.get_body(preferencelist=("html",))
        assert received.message.get_content_type() == "multipart/alternative"
        assert text is not None
        assert markup is not None
        assert f"Hello {to.display_name}," in text.get_content()
        assert "terms of service" in markup.get_content()


def test_batch_received_addresses_equal_ledger_sent(sent_batch: SentBatch) -> None:
    sent_ids = list(sent_batch.campaign.export(RecipientState.SENT))
    received_addresses = {received.envelope_recipients[0] for received in sent_batch.received}

    assert sent_ids == sent_batch.claimed_ids
    assert received_addresses == {sent_batch.rows[recipient_id].email for recipient_id in sent_ids}


def test_batch_counts_after_sending(sent_batch: SentBatch) -> None:
    expected = Counts(pending=len(sent_batch.rows) - BATCH_SIZE, sent=BATCH_SIZE)

    assert sent_batch.campaign.counts() == expected


# -- SMTP rejections ---------------------------------------------------------------------


@pytest.fixture
def small_campaign(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Campaign, RecordingHandler, dict[str, Row]]]:
    """The example campaign with its first five recipients imported, and its SMTP server."""
    planner = BatchPlanner(slice_size=5, interval=0)
    handler = RecordingHandler()
    rows = dict(list(read_rows().items())[:5])

    with example_campaign(tmp_path / "ledger.db", monkeypatch, planner) as (
        campaign,
        notifier,
    ), running_smtp_server(handler, monkeypatch, notifier):
        campaign.populate(rows.keys())
        yield campaign, handler, rows


def test_temporary_rejection_leaves_recipient_pending(
    small_campaign: tuple[Campaign, RecordingHandler, dict[str, Row]],
) -> None:
    campaign, handler, rows = small_campaign
    rejected = rows["3"]
    handler.rcpt_replies[rejected.email] = "451 4.2.1 Mailbox busy, try again later"

    campaign.send_batch(5)

    record = campaign.ledger.lookup(rejected.recipient_id)
    received = {received.envelope_recipients[0] for received in handler.received}
    assert record is not None
    assert record.state == RecipientState.PENDING
    assert record.error is None
    assert received == {row.email for row in rows.values()} - {rejected.email}
    assert campaign.counts() == Counts(pending=1, sent=4)


def test_permanent_rejection_marks_recipient_failed(
    small_campaign: tuple[Campaign, RecordingHandler, dict[str, Row]],
) -> None:
    campaign, handler, rows = small_campaign
    rejected = rows["3"]
    handler.rcpt_replies[rejected.email] = "550 5.1.1 No such user here"

    campaign.send_batch(5)

    record = campaign.ledger.lookup(rejected.recipient_id)
    received = {received.envelope_recipients[0] for received in handler.received}
    assert record is not None
    assert record.state == RecipientState.FAILED
    assert record.error is not None
    assert "550" in record.error
    assert "No such user here" in record.error
    assert received == {row.email for row in rows.values()} - {rejected.email}
    assert campaign.counts() == Counts(sent=4, failed=1)


# -- the README's main job ---------------------------------------------------------------


@pytest.mark.slow
def test_main_job_sends_first_thousand(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, str(MAIN_JOB), "--output", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert "The SMTP server received 1000 messages" in completed.stdout
    assert len(list((tmp_path / "mail").glob("*.eml"))) == 1000
