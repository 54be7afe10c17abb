"""The newsletter's campaign, as the command line loads it with ``--app newsletter.app:campaign``.

The campaign's SQLite ledger is the file that ``NEWSLETTER_LEDGER`` names, by default
``newsletter.db`` in the working directory, created on first use.
"""

from __future__ import annotations

import os

from throttlemail import BatchPlanner, CallableDispatcher, Campaign, Job, SqliteLedger

from . import notifier

CAMPAIGN_NAME = "tos-update"
DEFAULT_LEDGER_PATH = "newsletter.db"


def build_campaign(
    ledger_path: str | os.PathLike[str], *, planner: BatchPlanner | None = None
) -> Campaign:
    """Assemble the campaign on the SQLite ledger at ``ledger_path``.

    The default pace is the classic one: 100 mails, then 30 seconds of quiet.
    """
    def deliver_job(job: Job) -> None:
        # The guard sends only if this job still holds the recipient's current claim, and
        # records sent, failed, or pending again for a temporary error.
        campaign.deliver(job.recipient_id, notifier.send, claim_id=job.claim_id)

    campaign = Campaign(
        CAMPAIGN_NAME,
        ledger=SqliteLedger(ledger_path, CAMPAIGN_NAME),
        planner=planner if planner is not None else BatchPlanner(slice_size=100, interval=30),
        # In production this would be a queue-backed dispatcher, with deliver_job as the
        # worker's job. Sending in-process keeps the example free of a broker.
        dispatcher=CallableDispatcher(deliver_job),
    )
    return campaign


def deliver(recipient_id: str) -> None:
    """Send the notice to one recipient, for ``throttlemail send-batch --deliver``."""
    notifier.send(recipient_id)


campaign = build_campaign(os.environ.get("NEWSLETTER_LEDGER", DEFAULT_LEDGER_PATH))
