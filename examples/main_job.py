"""Run the newsletter example end to end on this machine, in a few seconds.

The script starts an SMTP server (aiosmtpd) on 127.0.0.1, then drives the real
``throttlemail`` command line the way an operator would:

1. ``populate``: import the 10,000 recipients of ``examples/data/recipients.csv`` into a
   fresh SQLite ledger, ``examples/out/newsletter.db``;
2. ``send-batch 1000``: send the first 1,000 in slices of 100, half a second apart. This
   demo pace takes most of the run time. The application's own default is 100 every 30
   seconds;
3. ``status``: show 1,000 sent and 9,000 pending.

Every message the server receives is saved under ``examples/out/mail/``; ``--output``
puts the ledger and the mail in another directory. The exit status is 0 only if the
server received exactly 1,000 messages and the ledger counts 1,000 sent and 9,000
pending. Run it from anywhere, after ``pip install -e '.[examples]'``::

    python examples/main_job.py
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

try:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import SMTP, Envelope, Session
except ImportError:
    sys.exit("main_job.py needs the aiosmtpd SMTP server: pip install -e '.[examples]'")

REPOSITORY = Path(__file__).resolve().parent.parent
EXAMPLES = REPOSITORY / "examples"
RECIPIENTS = EXAMPLES / "data" / "recipients.csv"
DEFAULT_OUTPUT = EXAMPLES / "out"

APP = "newsletter.app:campaign"
BATCH_SIZE = 1000
EXPECTED_SENT = 1000
EXPECTED_PENDING = 9000
# Generous for a command that takes a few seconds, but still ends a hung run.
COMMAND_TIMEOUT_SECONDS = 120


class SavingHandler:
    """An aiosmtpd handler that saves each message as a numbered ``.eml`` file."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.received = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        # aiosmtpd calls this on its event loop thread, one message at a time.
        self.received += 1
        path = self.directory / f"{self.received:05d}.eml"
        path.write_bytes(envelope.original_content or b"")
        return "250 Message accepted for delivery"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="directory for the ledger and the received mail (default: examples/out); "
        "its ledger and mail/ are deleted first",
    )
    output = parser.parse_args().output.resolve()

    started = time.monotonic()
    executable = find_throttlemail()
    mail_directory, ledger = reset_output(output)

    handler = SavingHandler(mail_directory)
    # server_hostname is set because aiosmtpd's default comes from socket.getfqdn(),
    # which may query DNS.
    controller = Controller(
        handler, hostname="127.0.0.1", port=free_port(), server_hostname="localhost"
    )
    controller.start()
    print(f"SMTP server listening on 127.0.0.1:{controller.port}", flush=True)
    try:
        status = run_operator_commands(
            executable, command_environment(smtp_port=controller.port, ledger=ledger)
        )
    finally:
        controller.stop()

    problems = check_results(handler.received, status)
    elapsed = time.monotonic() - started
    print(
        f"\nThe SMTP server received {handler.received} messages, saved in "
        f"{mail_directory} ({elapsed:.1f} s in all)."
    )
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


def run_operator_commands(executable: str, environment: dict[str, str]) -> dict[str, object]:
    """Run populate, send-batch and status, and return the status that ``--json`` printed."""
    recipients = str(RECIPIENTS.relative_to(REPOSITORY))
    batch = [str(BATCH_SIZE), "--slice-size", "100", "--interval", "0.5"]

    run(executable, ["--app", APP, "populate", recipients, "--column", "id"], environment)
    run(executable, ["--app", APP, "send-batch", *batch], environment)
    run(executable, ["--app", APP, "status"], environment)
    output = run(executable, ["--app", APP, "status", "--json"], environment, capture=True)
    status: dict[str, object] = json.loads(output)
    return status


def check_results(received: int, status: dict[str, object]) -> list[str]:
    """Return each difference from the expected outcome as a sentence (none if all match)."""
    problems = []
    if received != EXPECTED_SENT:
        problems.append(f"the SMTP server received {received} messages, expected {EXPECTED_SENT}")

    counts = status.get("counts")
    if not isinstance(counts, dict):
        return [*problems, f"status --json printed no counts: {status!r}"]
    if counts.get("sent") != EXPECTED_SENT:
        problems.append(f"the ledger counts {counts.get('sent')} sent, expected {EXPECTED_SENT}")
    if counts.get("pending") != EXPECTED_PENDING:
        problems.append(
            f"the ledger counts {counts.get('pending')} pending, expected {EXPECTED_PENDING}"
        )
    return problems


def run(
    executable: str, arguments: list[str], environment: dict[str, str], *, capture: bool = False
) -> str:
    """Run ``throttlemail`` with ``arguments`` from the repository root.

    The command is echoed unless its output is captured, and this script exits if it fails.
    """
    displayed = shlex.join(["throttlemail", *arguments])
    if not capture:
        print(f"\n$ {displayed}", flush=True)
    try:
        completed = subprocess.run(
            [executable, *arguments],
            cwd=REPOSITORY,
            env=environment,
            stdout=subprocess.PIPE if capture else None,
            text=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        sys.exit(f"FAILED: {displayed} timed out after {COMMAND_TIMEOUT_SECONDS} s")
    if completed.returncode != 0:
        sys.exit(f"FAILED: {displayed} exited with status {completed.returncode}")
    return completed.stdout if capture else ""


def command_environment(*, smtp_port: int, ledger: Path) -> dict[str, str]:
    """Return this process's environment plus the settings of the example application."""
    environment = dict(os.environ)
    search_path = [str(EXAMPLES), environment.get("PYTHONPATH", "")]
    environment["PYTHONPATH"] = os.pathsep.join(part for part in search_path if part)
    environment["NEWSLETTER_SMTP_HOST"] = "127.0.0.1"
    environment["NEWSLETTER_SMTP_PORT"] = str(smtp_port)
    environment["NEWSLETTER_LEDGER"] = str(ledger)
    environment["NEWSLETTER_RECIPIENTS"] = str(RECIPIENTS)
    return environment


def find_throttlemail() -> str:
    """Return the ``throttlemail`` console script of this Python, else the one on PATH."""
    scripts = Path(sysconfig.get_path("scripts"))
    for name in ("throttlemail", "throttlemail.exe"):
        if (scripts / name).is_file():
            return str(scripts / name)
    found = shutil.which("throttlemail")
    if found is None:
        sys.exit("the throttlemail command was not found; install the project: pip install -e .")
    return found


def reset_output(output: Path) -> tuple[Path, Path]:
    """Delete the ledger and the saved mail of an earlier run in ``output``.

    Returns the empty mail directory and the path of the ledger file.
    """
    mail_directory = output / "mail"
    ledger = output / "newsletter.db"
    shutil.rmtree(mail_directory, ignore_errors=True)
    mail_directory.mkdir(parents=True)
    for suffix in ("", "-wal", "-shm"):
        ledger.with_name(ledger.name + suffix).unlink(missing_ok=True)
    return mail_directory, ledger


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    # NOTE: another process could take the port before the server binds it. aiosmtpd's
    # Controller connects to its own port to check that the server started, so it cannot
    # be given port 0 and asked afterwards.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


if __name__ == "__main__":
    sys.exit(main())
