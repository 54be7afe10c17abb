"""The ``throttlemail`` command line: rake-style tasks an operator runs during a send."""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
from collections.abc import Callable, Sequence

from .. import __version__
from .._states import RecipientState
from ..campaign import Campaign
from ..errors import ThrottlemailError
from ..planner import MAX_INTERVAL
from . import _commands
from ._loading import UsageError, campaign_from_app, campaign_from_url

__all__ = ["build_parser", "main"]

DEFAULT_LEDGER_URL = "sqlite:///throttlemail.db"
# A batch or slice of over a billion recipients is a typo, and above 2**63 SQLite cannot
# even take the number as a LIMIT.
MAX_COUNT = 1_000_000_000

Command = Callable[[Campaign, argparse.Namespace], int]


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if value > MAX_COUNT:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_COUNT:,}, got {text!r}")
    return value


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds, got {text!r}"
        ) from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected zero or more seconds, got {text!r}")
    if value > MAX_INTERVAL:
        raise argparse.ArgumentTypeError(
            f"expected at most {MAX_INTERVAL:,.0f} seconds (one day), got {text!r}"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="throttlemail",
        description="Send one e-mail to many recipients, paced and resumable.",
        epilog="Global options go before the command: throttlemail --campaign news status",
    )
    parser.add_argument("--version", action="version", version=f"throttlemail {__version__}")
    where = parser.add_argument_group("which campaign")
    where.add_argument(
        "--app",
        default=os.environ.get("THROTTLEMAIL_APP"),
        metavar="MODULE:ATTRIBUTE",
        help="the application's Campaign object, or a function returning one "
        "(default: $THROTTLEMAIL_APP)",
    )
    where.add_argument(
        "--ledger",
        metavar="URL",
        help="ledger URL when there is no --app: sqlite:///FILE (relative to the current "
        "directory), sqlite:////ABSOLUTE/FILE, redis://HOST:PORT/DB or memory:// "
        f"(default: $THROTTLEMAIL_LEDGER or {DEFAULT_LEDGER_URL})",
    )
    where.add_argument(
        "--campaign",
        metavar="NAME",
        help="campaign name when there is no --app (default: $THROTTLEMAIL_CAMPAIGN)",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0,
        help="log more: -v for each import and batch, -vv for each recipient",
    )

    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_populate(commands)
    _add_send_batch(commands)
    status = commands.add_parser("status", help="show the campaign's state and counts")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(handler=_commands.status)
    for name, handler, text in [
        ("pause", _commands.pause, "stop sending; queued jobs put recipients back to pending"),
        ("resume", _commands.resume, "allow sending again after pause"),
        ("cancel", _commands.cancel, "stop sending for good"),
        ("retry-failed", _commands.retry_failed, "put every failed recipient back to pending"),
    ]:
        commands.add_parser(name, help=text).set_defaults(handler=handler)
    export = commands.add_parser("export", help="print the ids in one state, one per line")
    export.add_argument(
        "--state", required=True, choices=[state.value for state in RecipientState]
    )
    export.set_defaults(handler=_commands.export)
    return parser


def _add_populate(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    populate = commands.add_parser(
        "populate",
        help="import recipient ids; ids already present keep their state",
        description="Import recipient ids as pending. Safe to run again on the same file.",
    )
    populate.add_argument("file", metavar="FILE", help="one id per line, or CSV; - for stdin")
    populate.add_argument(
        "--column", metavar="NAME", help="read ids from this column of a CSV file with a header"
    )
    populate.set_defaults(handler=_commands.populate)


def _add_send_batch(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    send = commands.add_parser(
        "send-batch",
        help="claim N pending recipients and dispatch them at the campaign's pace",
    )
    send.add_argument("size", metavar="N", type=positive_int, help="how many recipients")
    send.add_argument(
        "--slice-size", type=positive_int, metavar="N",
        help="recipients per slice (default: the campaign's, 100 unless set)",
    )
    send.add_argument(
        "--interval", type=seconds, metavar="SECONDS",
        help="seconds between slices (default: the campaign's, 30 unless set)",
    )
    send.add_argument(
        "--deliver", metavar="MODULE:FUNCTION",
        help="send in this process by calling FUNCTION(recipient_id) for each recipient",
    )
    send.set_defaults(handler=_commands.send_batch)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit status: 0 on success, 2 on a usage error,
    1 on any other failure."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose)
    _stop_on_termination_signals()

    try:
        campaign = _find_campaign(args)
        handler: Command = args.handler
        return handler(campaign, args)
    except UsageError as exc:
        parser.print_usage(sys.stderr)
        print(f"throttlemail: error: {exc}", file=sys.stderr)
        return 2
    except ThrottlemailError as exc:
        print(f"throttlemail: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "throttlemail: interrupted; recipients not handed over went back to pending "
            "(a recipient whose send was cut off stays sending; check status)",
            file=sys.stderr,
        )
        return 130
    except BrokenPipeError:
        # The reader of our output went away (export | head); nothing is wrong with us.
        sys.stderr.close()
        return 1
    except Exception as exc:
        # One line for the operator; -v adds the traceback for a bug report.
        print(f"throttlemail: unexpected error: {type(exc).__name__}: {exc}", file=sys.stderr)
        if args.verbose:
            raise
        return 1


def _find_campaign(args: argparse.Namespace) -> Campaign:
    if args.app:
        if args.ledger is not None or args.campaign is not None:
            raise UsageError(
                "--app (or $THROTTLEMAIL_APP) names the campaign, so --ledger and --campaign "
                "must not be given with it; use one or the other"
            )
        return campaign_from_app(args.app)

    url = args.ledger or os.environ.get("THROTTLEMAIL_LEDGER") or DEFAULT_LEDGER_URL
    campaign = args.campaign or os.environ.get("THROTTLEMAIL_CAMPAIGN")
    # Only an import may create a ledger file or campaign: any other command on a
    # mistyped name must fail rather than report success on an empty new campaign.
    return campaign_from_url(url, campaign, create=args.command == "populate")


def _stop_on_termination_signals() -> None:
    # A deploy sends SIGTERM and a closed ssh session SIGHUP. Treating them as Ctrl-C puts
    # the recipients not yet handed over back to pending instead of stranding them. After
    # the first signal the others are ignored, because a second Ctrl-C during the release
    # would roll it back; kill -9 still stops the process at once.
    names = [name for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)]

    def interrupt(signal_number: int, frame: object) -> None:
        for name in names:
            signal.signal(getattr(signal, name), signal.SIG_IGN)
        raise KeyboardInterrupt

    for name in names:
        signal.signal(getattr(signal, name), interrupt)


def _configure_logging(verbosity: int) -> None:
    # The command line is an application, so it may set up logging; the library never does.
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
