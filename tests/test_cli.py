"""The command line, run as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from throttlemail import SqliteLedger

SENDER = '''
sent = []

def send(recipient_id):
    with open("sent.log", "a") as log:
        log.write(recipient_id + "\\n")
'''


def run(
    cwd: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("THROTTLEMAIL_")
    }
    environment["PYTHONPATH"] = str(cwd)
    return subprocess.run(
        [sys.executable, "-m", "throttlemail", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
    )


def status(cwd: Path, *options: str) -> dict[str, object]:
    result = run(cwd, *options, "--campaign", "news", "status", "--json")
    assert result.returncode == 0, result.stderr
    parsed: dict[str, object] = json.loads(result.stdout)
    return parsed


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "sender.py").write_text(SENDER)
    return tmp_path


def test_status_json_shape(workdir: Path) -> None:
    result = run(workdir, "--ledger", "sqlite:///x.db", "--campaign", "C", "status", "--json")

    assert result.returncode == 0
    assert json.loads(result.stdout) == {
        "campaign": "C",
        "state": "running",
        "counts": {
            "pending": 0, "scheduled": 0, "sending": 0, "sent": 0, "failed": 0, "skipped": 0,
        },
    }
    assert not (workdir / "x.db").exists()
    assert "'x.db' not found" in result.stderr


def test_populate_then_send_batch(workdir: Path) -> None:
    (workdir / "ids.txt").write_text("".join(f"u{n}\n" for n in range(30)))

    populated = run(workdir, "--campaign", "news", "populate", "ids.txt")
    sent = run(
        workdir, "--campaign", "news", "send-batch", "12",
        "--slice-size", "5", "--interval", "0", "--deliver", "sender:send",
    )

    assert populated.returncode == 0, populated.stderr
    assert "30 recipients added, 0 already present, 0 invalid" in populated.stdout
    assert sent.returncode == 0, sent.stderr
    assert "claimed 12 recipients in 3 slices" in sent.stdout
    assert "12 sent" in sent.stdout
    assert (workdir / "sent.log").read_text().split() == [f"u{n}" for n in range(12)]
    assert status(workdir)["counts"] == {
        "pending": 18, "scheduled": 0, "sending": 0, "sent": 12, "failed": 0, "skipped": 0,
    }


def test_populate_again_keeps_states(workdir: Path) -> None:
    (workdir / "ids.txt").write_text("a\nb\nc\n")
    run(workdir, "--campaign", "news", "populate", "ids.txt")
    run(workdir, "--campaign", "news", "send-batch", "2", "--interval", "0",
        "--deliver", "sender:send")

    again = run(workdir, "--campaign", "news", "populate", "ids.txt")

    assert again.returncode == 0
    assert "0 recipients added, 3 already present" in again.stdout
    counts = status(workdir)["counts"]
    assert counts["sent"] == 2  # type: ignore[index]
    assert counts["pending"] == 1  # type: ignore[index]


def test_populate_csv_column(workdir: Path) -> None:
    (workdir / "r.csv").write_text("\ufeffid,email\n1,a@example.com\n2,b@example.com\n1,x\n")

    result = run(workdir, "--campaign", "news", "populate", "r.csv", "--column", "id")

    assert result.returncode == 0, result.stderr
    assert "2 recipients added, 1 already present" in result.stdout


def test_populate_from_stdin(workdir: Path) -> None:
    result = run(workdir, "--campaign", "news", "populate", "-", stdin="x\ny\n")

    assert result.returncode == 0, result.stderr
    assert status(workdir)["counts"]["pending"] == 2  # type: ignore[index]


def test_populate_bad_rows_imports_good_ones(workdir: Path) -> None:
    lines = ["good1", "", "has space", "x" * 300, "good2", "tab\there", "good3"]
    (workdir / "ids.txt").write_text("\n".join(lines) + "\n")

    result = run(workdir, "--campaign", "news", "populate", "ids.txt")

    assert result.returncode == 1
    assert "3 recipients added" in result.stdout
    assert "4 invalid rows in ids.txt" in result.stderr
    assert "line 2: invalid recipient id ''" in result.stderr
    assert "line 3: invalid recipient id 'has space'" in result.stderr
    assert "line 4: invalid recipient id" in result.stderr
    assert "the maximum is 256" in result.stderr
    assert "line 6:" in result.stderr
    assert "Traceback" not in result.stderr
    assert status(workdir)["counts"]["pending"] == 3  # type: ignore[index]


def test_populate_lists_first_bad_rows_only(workdir: Path) -> None:
    (workdir / "ids.txt").write_text("ok\n" + "bad id\n" * 25)

    result = run(workdir, "--campaign", "news", "populate", "ids.txt")

    assert result.returncode == 1
    assert result.stderr.count("invalid recipient id 'bad id'") == 10
    assert "... and 15 more" in result.stderr


def test_populate_bad_rows_change_nothing_present(workdir: Path) -> None:
    (workdir / "ids.txt").write_text("a\nb\n")
    run(workdir, "--campaign", "news", "populate", "ids.txt")
    run(workdir, "--campaign", "news", "send-batch", "1", "--interval", "0",
        "--deliver", "sender:send")
    (workdir / "ids.txt").write_text("a\n \nb\nc\n")

    result = run(workdir, "--campaign", "news", "populate", "ids.txt")

    assert result.returncode == 1
    assert status(workdir)["counts"] == {
        "pending": 2, "scheduled": 0, "sending": 0, "sent": 1, "failed": 0, "skipped": 0,
    }


def test_populate_csv_missing_column(workdir: Path) -> None:
    (workdir / "r.csv").write_text("user_id,email\n1,a@example.com\n")

    result = run(workdir, "--campaign", "news", "populate", "r.csv", "--column", "id")

    assert result.returncode == 1
    assert "column 'id' not found in the header of 'r.csv'" in result.stderr
    assert "'user_id'" in result.stderr


def test_populate_missing_file(workdir: Path) -> None:
    result = run(workdir, "--campaign", "news", "populate", "nope.txt")

    assert result.returncode == 1
    assert "recipient file 'nope.txt' not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_populate_unreadable_file(workdir: Path) -> None:
    (workdir / "latin1.txt").write_bytes(b"caf\xe9\n")

    result = run(workdir, "--campaign", "news", "populate", "latin1.txt")

    assert result.returncode == 1
    assert "not valid UTF-8 at line 1" in result.stderr


def test_populate_decode_error_exact_line(workdir: Path) -> None:
    lines = [f"u{n}".encode() for n in range(25_000)] + [b"caf\xe9"]
    (workdir / "late.txt").write_bytes(b"\n".join(lines) + b"\n")

    result = run(workdir, "--campaign", "news", "populate", "late.txt")

    assert result.returncode == 1
    assert "not valid UTF-8 at line 25001" in result.stderr
    assert "the rows before it were imported" in result.stderr
    assert "25,000 recipients added" in result.stdout
    assert status(workdir)["counts"]["pending"] == 25_000  # type: ignore[index]


def test_populate_crlf_and_bom(workdir: Path) -> None:
    (workdir / "dos.txt").write_bytes(b"\xef\xbb\xbfa\r\nb\r\n")
    (workdir / "dos.csv").write_bytes(b"\xef\xbb\xbfid,email\r\nc,x@example.com\r\n")

    lines = run(workdir, "--campaign", "news", "populate", "dos.txt")
    rows = run(workdir, "--campaign", "news", "populate", "dos.csv", "--column", "id")

    assert lines.returncode == 0, lines.stderr
    assert rows.returncode == 0, rows.stderr
    exported = run(workdir, "--campaign", "news", "export", "--state", "pending")
    assert exported.stdout.split("\n") == ["a", "b", "c", ""]


def test_populate_directory(workdir: Path) -> None:
    result = run(workdir, "--campaign", "news", "populate", ".")

    assert result.returncode == 1
    assert "is a directory" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["send-batch", "0"], "expected a positive integer, got '0'"),
        (["send-batch", "-5"], "expected a positive integer"),
        (["send-batch", "ten"], "expected a positive integer, got 'ten'"),
        (["send-batch", "10", "--slice-size", "0"], "expected a positive integer, got '0'"),
        (["send-batch", "10", "--interval", "-1"], "expected zero or more seconds, got '-1'"),
        (["send-batch", "10", "--interval", "nan"], "expected zero or more seconds"),
        (["send-batch", "10", "--interval", "1e308"], "expected at most 86,400 seconds"),
        (["send-batch", "1000000001"], "expected at most 1,000,000,000"),
        (["send-batch", "10"], "send-batch needs a way to send"),
        (["send-batch", "10", "--deliver", "nosuchmodule:send"], "cannot import module"),
        (["send-batch", "10", "--deliver", "sender"], "expected module:attribute"),
        (["send-batch", "10", "--deliver", "sender:missing"], "has no attribute 'missing'"),
        (["export"], "--state"),
        (["export", "--state", "done"], "invalid choice: 'done'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_usage_errors_exit_2(workdir: Path, args: list[str], message: str) -> None:
    result = run(workdir, "--campaign", "news", *args)

    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--ledger", "postgres://db/x", "--campaign", "news"], "unknown ledger URL scheme"),
        (["--ledger", "sqlite://", "--campaign", "news"], "invalid SQLite ledger URL"),
        (["--campaign", "bad name"], "invalid campaign name 'bad name'"),
        ([], "no campaign given"),
        (["--app", "nosuchapp:campaign"], "cannot import module 'nosuchapp'"),
        (["--app", "sender:sent"], "is a list, not a throttlemail.Campaign"),
    ],
)
def test_bad_campaign_options_exit_2(
    workdir: Path, options: list[str], message: str
) -> None:
    result = run(workdir, *options, "status")

    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_pause_resume_cancel(workdir: Path) -> None:
    (workdir / "ids.txt").write_text("a\n")
    run(workdir, "--campaign", "news", "populate", "ids.txt")
    assert run(workdir, "--campaign", "news", "pause").returncode == 0
    assert status(workdir)["state"] == "paused"

    blocked = run(workdir, "--campaign", "news", "send-batch", "1", "--deliver", "sender:send")
    assert blocked.returncode == 1
    assert "campaign 'news' is paused; resume it first" in blocked.stderr

    assert run(workdir, "--campaign", "news", "resume").returncode == 0
    assert status(workdir)["state"] == "running"
    assert run(workdir, "--campaign", "news", "cancel").returncode == 0
    resumed = run(workdir, "--campaign", "news", "resume")
    assert resumed.returncode == 1
    assert "cannot be paused or resumed" in resumed.stderr
    assert status(workdir)["state"] == "cancelled"


def test_retry_failed_and_export(workdir: Path) -> None:
    (workdir / "failing.py").write_text(
        "def send(recipient_id):\n    raise RuntimeError('template broke for ' + recipient_id)\n"
    )
    (workdir / "ids.txt").write_text("a\nb\nc\n")
    run(workdir, "--campaign", "news", "populate", "ids.txt")
    sent = run(workdir, "--campaign", "news", "send-batch", "2", "--interval", "0",
               "--deliver", "failing:send")

    exported = run(workdir, "--campaign", "news", "export", "--state", "failed")
    retried = run(workdir, "--campaign", "news", "retry-failed")

    assert "2 failed" in sent.stdout
    assert exported.stdout.split() == ["a", "b"]
    assert "2 failed recipients back to pending" in retried.stdout
    assert status(workdir)["counts"]["pending"] == 3  # type: ignore[index]


def test_app_campaign(workdir: Path) -> None:
    (workdir / "myapp.py").write_text(
        "from throttlemail import BatchPlanner, CallableDispatcher, Campaign, SqliteLedger\n"
        "sent = []\n"
        "def handle(job):\n"
        "    campaign.deliver(job.recipient_id, sent.append, claim_id=job.claim_id)\n"
        "campaign = Campaign('launch', ledger=SqliteLedger('app.db', 'launch'),\n"
        "                    planner=BatchPlanner(slice_size=2, interval=0),\n"
        "                    dispatcher=CallableDispatcher(handle))\n"
    )
    (workdir / "ids.txt").write_text("1\n2\n3\n")

    populated = run(workdir, "--app", "myapp:campaign", "populate", "ids.txt")
    sent = run(workdir, "--app", "myapp:campaign", "send-batch", "3")
    shown = run(workdir, "--app", "myapp:campaign", "status")

    assert populated.returncode == 0, populated.stderr
    assert sent.returncode == 0, sent.stderr
    assert "claimed 3 recipients in 2 slices" in sent.stdout
    assert "campaign   launch (running)" in shown.stdout
    assert "sent           3" in shown.stdout


def test_pause_unknown_campaign_fails(workdir: Path) -> None:
    (workdir / "ids.txt").write_text("a\n")
    run(workdir, "--campaign", "news", "populate", "ids.txt")

    result = run(workdir, "--campaign", "newz", "pause")

    assert result.returncode == 1
    assert "campaign 'newz' not found" in result.stderr
    assert "'news'" in result.stderr
    assert status(workdir)["state"] == "running"


def test_pause_missing_ledger_file_fails(workdir: Path) -> None:
    result = run(workdir, "--ledger", "sqlite:///elsewhere.db", "--campaign", "news", "pause")

    assert result.returncode == 1
    assert "'elsewhere.db' not found" in result.stderr
    assert not (workdir / "elsewhere.db").exists()


def test_populate_csv_without_column(workdir: Path) -> None:
    (workdir / "r.csv").write_text("id,email\n1,a@example.com\n")

    result = run(workdir, "--campaign", "news", "populate", "r.csv")

    assert result.returncode == 1
    assert "looks like a CSV file; pass --column NAME" in result.stderr


def test_app_with_campaign_is_usage_error(workdir: Path) -> None:
    result = run(workdir, "--app", "sender:send", "--campaign", "news", "status")

    assert result.returncode == 2
    assert "must not be given with it" in result.stderr


def test_send_batch_reports_stranded_claims(workdir: Path) -> None:
    (workdir / "ids.txt").write_text("a\nb\n")
    run(workdir, "--campaign", "news", "populate", "ids.txt")
    # A batcher that died after claiming leaves its recipients scheduled.
    ledger = SqliteLedger(workdir / "throttlemail.db", "news")
    ledger.claim(2, now=0.0)
    ledger.close()

    result = run(workdir, "--campaign", "news", "send-batch", "5", "--deliver", "sender:send")

    assert result.returncode == 0
    assert "no pending recipients" in result.stdout
    assert "2 still scheduled and 0 sending" in result.stderr


def test_send_batch_announces_queued_wait(workdir: Path) -> None:
    (workdir / "ids.txt").write_text("a\nb\n")
    run(workdir, "--campaign", "news", "populate", "ids.txt")
    # An earlier batch reserved the next two minutes of the campaign's pace.
    ledger = SqliteLedger(workdir / "throttlemail.db", "news")
    ledger.reserve_pace(120.0, now=time.time())
    ledger.close()

    with subprocess.Popen(
        [sys.executable, "-m", "throttlemail", "--campaign", "news", "send-batch", "1",
         "--deliver", "sender:send"],
        cwd=workdir, env={**os.environ, "PYTHONPATH": str(workdir)},
        stderr=subprocess.PIPE, text=True,
    ) as process:
        try:
            assert process.stderr is not None
            first_line = process.stderr.readline()
        finally:
            # SIGTERM, as a deploy would send: the claimed recipient must go back.
            process.terminate()
            process.wait(timeout=30)

    assert "first slice due in 1" in first_line
    assert process.returncode == 130
    assert status(workdir)["counts"]["pending"] == 2  # type: ignore[index]
