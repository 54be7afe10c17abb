"""Many claimers at once never receive the same recipient."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from throttlemail import Counts, RecipientLedger, SqliteLedger

from conftest import LedgerFactory

NOW = 1_700_000_000.0


def test_threads_claim_each_once(ledger_factory: LedgerFactory, campaign_name: str) -> None:
    total = 4_000
    ledger_factory(campaign_name).add([f"r{n}" for n in range(total)], now=NOW)
    claimed: list[list[str]] = [[] for _ in range(8)]
    barrier = threading.Barrier(8)

    def claimer(slot: int) -> None:
        ledger: RecipientLedger = ledger_factory(campaign_name)
        barrier.wait()
        while batch := ledger.claim(37, now=NOW):
            claimed[slot].extend(claim.recipient_id for claim in batch)
            # Let the other threads in, as a claimer that dispatches its batch would.
            time.sleep(0)

    threads = [threading.Thread(target=claimer, args=(slot,)) for slot in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    every_claim = Counter(rid for ids in claimed for rid in ids)
    assert len(every_claim) == total
    assert max(every_claim.values()) == 1
    assert sum(1 for ids in claimed if ids) > 1
    assert ledger_factory(campaign_name).counts() == Counts(scheduled=total)


def _claim_in_process(
    path: str, campaign: str, ready: Any, results: Any
) -> None:
    ledger = SqliteLedger(path, campaign)
    ledger.counts()
    # Start claiming only once every process has opened the ledger.
    ready.wait(timeout=120)
    claimed: list[str] = []
    while batch := ledger.claim(25, now=NOW):
        claimed.extend(claim.recipient_id for claim in batch)
        time.sleep(0.001)
    results.put(claimed)


def test_processes_claim_each_once_sqlite(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    total = 3_000
    SqliteLedger(path, "shared").add([f"r{n}" for n in range(total)], now=NOW)
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(4)
    results = context.Queue()

    processes = [
        context.Process(target=_claim_in_process, args=(path, "shared", ready, results))
        for _ in range(4)
    ]
    for process in processes:
        process.start()
    claimed = [results.get(timeout=180) for _ in processes]
    for process in processes:
        process.join(timeout=60)

    every_claim = Counter(rid for ids in claimed for rid in ids)
    assert [process.exitcode for process in processes] == [0, 0, 0, 0]
    assert len(every_claim) == total
    assert max(every_claim.values()) == 1
    assert sum(1 for ids in claimed if ids) > 1
    assert SqliteLedger(path, "shared").counts() == Counts(scheduled=total)
