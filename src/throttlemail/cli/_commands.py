"""The command-line commands. Each takes the parsed arguments and returns an exit status."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from .._states import CampaignState, Counts
from ..campaign import Campaign, CampaignStatus
from ..dispatch import CallableDispatcher, Job
from ..errors import CampaignNotFoundError, InvalidInputError, InvalidRecipientError
from ..guard import DeliveryOutcome
from ..ids import normalize_recipient_id
from ..planner import BatchPlanner, Plan
from ._input import open_recipient_file, read_column, read_lines, reject_csv_header
from ._loading import UsageError, load_sender
from ._progress import Progress

_SHOWN_BAD_ROWS = 10


@dataclass
class _BadRows:
    total: int = 0
    first_rows: list[str] = field(default_factory=list)

    def add(self, line_number: int, error: InvalidRecipientError) -> None:
        self.total += 1
        if len(self.first_rows) < _SHOWN_BAD_ROWS:
            self.first_rows.append(f"  line {line_number}: {error}")


def populate(campaign: Campaign, args: argparse.Namespace) -> int:
    source = "standard input" if args.file == "-" else args.file
    bad_rows = _BadRows()
    progress = Progress(sys.stderr, "populate")

    with open_recipient_file(args.file) as handle:
        if args.column is None:
            rows = reject_csv_header(read_lines(handle, source), source)
        else:
            rows = read_column(handle, source, args.column)

        file_errors: list[InvalidInputError] = []

        def valid_ids() -> Iterator[str]:
            line_number = 0
            try:
                for line_number, value in rows:
                    try:
                        yield normalize_recipient_id(value)
                    except InvalidRecipientError as error:
                        bad_rows.add(line_number, error)
            except InvalidInputError as error:
                # A file that is unreadable from the start fails at once. One that breaks
                # part-way (an encoding error) ends the input here, so that the rows read
                # so far are still imported and counted before the error is shown.
                if line_number == 0:
                    raise
                file_errors.append(error)

        result = campaign.populate(
            valid_ids(),
            on_progress=lambda so_far: progress.update(
                so_far.added + so_far.existing, f"{so_far.added:,} new"
            ),
        )
    progress.finish(result.added + result.existing, f"{result.added:,} new")

    print(
        f"{campaign.name}: {_plural(result.added, 'recipient')} added, "
        f"{result.existing:,} already present, {bad_rows.total:,} invalid"
    )
    for error in file_errors:
        print(
            f"throttlemail: error: {error}; the rows before it were imported",
            file=sys.stderr,
        )
    if bad_rows.total:
        print(f"error: {bad_rows.total:,} invalid rows in {source}:", file=sys.stderr)
        for line in bad_rows.first_rows:
            print(line, file=sys.stderr)
        if bad_rows.total > len(bad_rows.first_rows):
            print(f"  ... and {bad_rows.total - len(bad_rows.first_rows):,} more", file=sys.stderr)
        print(
            "The valid rows were imported. Fix the file and run populate again: "
            "recipients already imported keep their state.",
            file=sys.stderr,
        )
        return 1
    return 1 if file_errors else 0


def send_batch(campaign: Campaign, args: argparse.Namespace) -> int:
    outcomes: Counter[DeliveryOutcome] = Counter()
    if args.deliver is not None:
        send = load_sender(args.deliver)

        def deliver_job(job: Job) -> None:
            outcomes[campaign.deliver(job.recipient_id, send, claim_id=job.claim_id)] += 1

        campaign.dispatcher = CallableDispatcher(deliver_job, clock=campaign.clock)
    elif campaign.dispatcher is None:
        raise UsageError(
            "send-batch needs a way to send: pass --deliver module:function, or use --app "
            "with a campaign that has a dispatcher"
        )

    planner = BatchPlanner(
        slice_size=args.slice_size if args.slice_size is not None else campaign.planner.slice_size,
        interval=args.interval if args.interval is not None else campaign.planner.interval,
    )
    progress = Progress(sys.stderr, "send-batch", total=args.size)
    def announce_wait(plan: Plan) -> None:
        # A batch queued behind earlier ones can wait long before its first mail, so the
        # operator is told rather than left with a silent terminal.
        wait = plan.slices[0].due_at - campaign.clock.now()
        if wait >= 1:
            print(
                f"{campaign.name}: first slice due in {wait:,.0f} s, after the slices of "
                "earlier batches (the campaign's pace is shared by all batches)",
                file=sys.stderr,
            )

    result = campaign.send_batch(
        args.size,
        planner=planner,
        on_slice=lambda dispatched, claimed: progress.update(dispatched),
        on_plan=announce_wait,
    )
    if result.claimed:
        progress.finish(result.dispatched)

    if result.claimed == 0:
        counts = campaign.counts()
        print(f"{campaign.name}: no pending recipients; nothing to send")
        if counts.scheduled or counts.sending:
            # After a crash these wait for an operator, so the command must not look finished.
            print(
                f"{campaign.name}: {counts.scheduled:,} still scheduled and "
                f"{counts.sending:,} sending from earlier batches",
                file=sys.stderr,
            )
        return 0
    slices = _plural(result.slices, "slice")
    print(
        f"{campaign.name}: claimed {result.claimed:,} recipients in {slices} "
        f"of up to {planner.slice_size:,}, every {planner.interval:g} s; "
        f"dispatched {result.dispatched:,}"
    )
    if outcomes:
        summary = ", ".join(f"{count:,} {outcome.value}" for outcome, count in outcomes.items())
        print(f"{campaign.name}: deliveries: {summary}")
    return 0


def status(campaign: Campaign, args: argparse.Namespace) -> int:
    try:
        current = campaign.status()
    except CampaignNotFoundError as error:
        # Report the empty campaign without creating it, so that a mistyped name or path
        # leaves no file behind, and explain in a warning why everything is zero.
        print(f"throttlemail: warning: {error}", file=sys.stderr)
        current = CampaignStatus(campaign.name, CampaignState.RUNNING, Counts())
    if args.json:
        print(json.dumps(current.as_dict()))
        return 0

    counts = current.counts.as_dict()
    width = max(len(f"{current.counts.total:,}"), 5)
    print(f"campaign   {current.campaign} ({current.state.value})")
    for state, count in counts.items():
        print(f"{state:<10} {count:>{width},}")
    print(f"{'total':<10} {current.counts.total:>{width},}")
    return 0


def pause(campaign: Campaign, args: argparse.Namespace) -> int:
    campaign.pause()
    print(f"{campaign.name}: paused; queued jobs will send nothing until resume")
    return 0


def resume(campaign: Campaign, args: argparse.Namespace) -> int:
    campaign.resume()
    print(f"{campaign.name}: running")
    return 0


def cancel(campaign: Campaign, args: argparse.Namespace) -> int:
    campaign.cancel()
    print(f"{campaign.name}: cancelled; queued jobs will send nothing")
    return 0


def retry_failed(campaign: Campaign, args: argparse.Namespace) -> int:
    moved = campaign.retry_failed()
    print(f"{campaign.name}: {moved:,} failed recipients back to pending")
    return 0


def export(campaign: Campaign, args: argparse.Namespace) -> int:
    output = sys.stdout
    count = 0
    for recipient_id in campaign.export(args.state):
        output.write(recipient_id + "\n")
        count += 1
    output.flush()
    print(f"{campaign.name}: exported {count:,} {args.state} recipients", file=sys.stderr)
    return 0


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"
