"""Measure the Redis ledger against the classic sorted-set recipe and redis-cli --pipe.

Starts its own redis-server on 127.0.0.1 (a free port, a temporary directory, no
persistence), runs every measurement side by side against it, prints each figure with its
reference and their ratio, and stops the server by its pid. Run from the repository root:

    python benchmarks/redis_ledger.py            # 1,500,000 recipients
    python benchmarks/redis_ledger.py --quick    # 100,000 recipients, a few seconds

Figures:

- import: ``RedisLedger.add`` in calls of 100,000 ids, against the recipe (MULTI/EXEC
  transactions of 100 single-member ZADDs) and against ``redis-cli --pipe`` sending
  pre-encoded commands, which is the server's own speed. The redis-cli input holds either
  the same 5,000-member ``ZADD NX`` commands the ledger sends or one ``ZADD`` per id.
- claim: every recipient in batches of 10,000, ``RedisLedger.claim`` against the recipe's
  read-then-write (``ZRANGEBYSCORE key 0 0 LIMIT 0 10000``, then one ``ZADD XX`` per id in
  a pipeline), which is not atomic;
- memory per pending recipient: ``MEMORY USAGE`` of the sorted set, and the growth of
  ``used_memory``, each divided by the count.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import redis

from throttlemail import RedisLedger

LOOPBACK = "127.0.0.1"
CAMPAIGN = "bench"
IMPORT_CALL_SIZE = 100_000
RECIPE_TRANSACTION_SIZE = 100
PIPE_COMMAND_SIZE = 5_000


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_arguments(argv)
    count = 100_000 if options.quick else options.count
    recipient_ids = [str(number) for number in range(1, count + 1)]

    with redis_server(options.redis_server) as port:
        client = redis.Redis(host=LOOPBACK, port=port)
        print_environment(client, count)
        ledger = RedisLedger(client, CAMPAIGN)

        memory_before = used_memory(client)
        ours_import = timed(lambda: import_with_ledger(ledger, recipient_ids))
        memory_growth = used_memory(client) - memory_before
        zset_bytes = client.memory_usage(f"throttlemail:{{{CAMPAIGN}}}:recipients", samples=0)

        recipe_import = timed(lambda: import_with_recipe(client, "recipe", recipient_ids))
        pipe_same = timed_pipe(port, encode_ledger_commands("pipe-nx", recipient_ids))
        pipe_single = timed_pipe(port, encode_single_commands("pipe-single", recipient_ids))
        client.unlink("pipe-nx", "pipe-single")

        ours_claim = timed(lambda: claim_with_ledger(ledger, count, options.batch))
        recipe_claim = timed(lambda: claim_with_recipe(client, "recipe", count, options.batch))
        client.close()

    print_table(
        "import",
        count,
        [
            ("RedisLedger.add", ours_import),
            ("recipe: MULTI/EXEC of 100 ZADDs", recipe_import),
            ("redis-cli --pipe, same ZADD NX commands", pipe_same),
            ("redis-cli --pipe, one ZADD per id", pipe_single),
        ],
    )
    print_table(
        f"claim in batches of {options.batch:,}",
        count,
        [
            ("RedisLedger.claim (atomic)", ours_claim),
            ("recipe: ZRANGEBYSCORE + ZADD XX per id", recipe_claim),
        ],
    )
    print("\nmemory per pending recipient")
    print(f"  MEMORY USAGE of the sorted set    {zset_bytes / count:8.1f} bytes")
    print(f"  used_memory growth during import  {memory_growth / count:8.1f} bytes")

    print("\nratios (above 1 means ours is faster)")
    print(f"  import vs recipe                     {recipe_import / ours_import:5.2f}x")
    print(f"  import vs redis-cli --pipe (same)    {pipe_same / ours_import:5.2f}x")
    print(f"  import vs redis-cli --pipe (single)  {pipe_single / ours_import:5.2f}x")
    print(f"  claim vs recipe                      {recipe_claim / ours_claim:5.2f}x")
    return 0


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--count", type=int, default=1_500_000, help="number of recipients (default 1,500,000)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="use 100,000 recipients, for a fast check"
    )
    parser.add_argument(
        "--batch", type=int, default=10_000, help="recipients per claim (default 10,000)"
    )
    parser.add_argument(
        "--redis-server", default="redis-server", help="redis-server program to start"
    )
    return parser.parse_args(argv)


# -- what is measured -------------------------------------------------------------------


def import_with_ledger(ledger: RedisLedger, recipient_ids: list[str]) -> None:
    for offset in range(0, len(recipient_ids), IMPORT_CALL_SIZE):
        ledger.add(recipient_ids[offset : offset + IMPORT_CALL_SIZE], now=0.0)


def import_with_recipe(client: redis.Redis, key: str, recipient_ids: list[str]) -> None:
    for offset in range(0, len(recipient_ids), RECIPE_TRANSACTION_SIZE):
        transaction = client.pipeline(transaction=True)
        for recipient_id in recipient_ids[offset : offset + RECIPE_TRANSACTION_SIZE]:
            transaction.zadd(key, {recipient_id: 0})
        transaction.execute()


def claim_with_ledger(ledger: RedisLedger, count: int, batch: int) -> None:
    claimed = 0
    while claims := ledger.claim(batch, now=0.0):
        claimed += len(claims)
    check_count("RedisLedger.claim", claimed, count)


def claim_with_recipe(client: redis.Redis, key: str, count: int, batch: int) -> None:
    claimed = 0
    while recipient_ids := client.zrangebyscore(key, 0, 0, start=0, num=batch):
        pipe = client.pipeline(transaction=False)
        for recipient_id in recipient_ids:
            pipe.zadd(key, {recipient_id: 1}, xx=True)
        pipe.execute()
        claimed += len(recipient_ids)
    check_count("the recipe's claim", claimed, count)


def timed_pipe(port: int, commands: Iterator[bytes]) -> float:
    """Write ``commands`` to a file, then time ``redis-cli --pipe`` sending it."""
    cli = shutil.which("redis-cli")
    if cli is None:
        sys.exit("redis-cli is not on PATH; install the redis-tools package")
    with tempfile.TemporaryFile() as data:
        for command in commands:
            data.write(command)
        data.seek(0)
        start = time.perf_counter()
        subprocess.run(
            [cli, "-h", LOOPBACK, "-p", str(port), "--pipe"],
            stdin=data, stdout=subprocess.DEVNULL, check=True,
        )
        return time.perf_counter() - start


def encode_ledger_commands(key: str, recipient_ids: list[str]) -> Iterator[bytes]:
    """Yield ``ZADD key NX score id ...`` commands of 5,000 members, as the ledger sends."""
    for offset in range(0, len(recipient_ids), PIPE_COMMAND_SIZE):
        chunk = recipient_ids[offset : offset + PIPE_COMMAND_SIZE]
        arguments = ["ZADD", key, "NX"]
        for position, recipient_id in enumerate(chunk, start=offset):
            arguments += (str(position), recipient_id)
        yield encode_command(arguments)


def encode_single_commands(key: str, recipient_ids: list[str]) -> Iterator[bytes]:
    """Yield one ``ZADD key 0 id`` command per id, the usual mass-insertion input."""
    for recipient_id in recipient_ids:
        yield encode_command(["ZADD", key, "0", recipient_id])


def encode_command(arguments: list[str]) -> bytes:
    parts = [f"*{len(arguments)}\r\n"]
    for argument in arguments:
        parts.append(f"${len(argument.encode())}\r\n{argument}\r\n")
    return "".join(parts).encode()


# -- the server and the report ----------------------------------------------------------


@contextmanager
def redis_server(program: str) -> Iterator[int]:
    """Run a throwaway redis-server on 127.0.0.1 and yield its port."""
    binary = shutil.which(program)
    if binary is None:
        sys.exit(f"{program} is not on PATH; install the redis-server package")
    with tempfile.TemporaryDirectory(prefix="throttlemail-bench-") as directory:
        port = free_port()
        log = (Path(directory) / "redis.log").open("wb")
        process = subprocess.Popen(
            [binary, "--bind", LOOPBACK, "--port", str(port), "--dir", directory,
             "--save", "", "--appendonly", "no"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            wait_until_ready(port, process)
            yield port
        finally:
            process.terminate()
            process.wait(timeout=30)
            log.close()


def wait_until_ready(port: int, process: subprocess.Popen[bytes]) -> None:
    client = redis.Redis(host=LOOPBACK, port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            client.close()
            return
        except redis.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"redis-server on port {port} did not start")
            time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def timed(operation: Callable[[], None]) -> float:
    start = time.perf_counter()
    operation()
    return time.perf_counter() - start


def check_count(what: str, actual: int, expected: int) -> None:
    if actual != expected:
        sys.exit(f"{what} handled {actual:,} recipients, expected {expected:,}")


def print_environment(client: redis.Redis, count: int) -> None:
    server = client.info("server")
    parser = "hiredis" if redis.utils.HIREDIS_AVAILABLE else "pure Python"
    print(
        f"{count:,} recipients; Redis {server['redis_version']}; redis-py {redis.__version__} "
        f"with the {parser} parser; Python {platform.python_version()}; "
        f"{os.cpu_count()} CPUs shared by client and server",
        flush=True,
    )


def print_table(title: str, count: int, rows: list[tuple[str, float]]) -> None:
    print(f"\n{title}")
    for name, seconds in rows:
        print(f"  {name:<42} {seconds:7.2f} s  {count / seconds:11,.0f} ids/s")


if __name__ == "__main__":
    sys.exit(main())
