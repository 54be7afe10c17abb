"""Redis servers for the tests: fakeredis, a real redis-server, and a 3-master Redis Cluster.

Every real server listens on 127.0.0.1 on a free port, keeps its files in a temporary
directory, and is stopped by its pid when its fixture ends. Without ``redis-server`` on
PATH the tests that need it are skipped, unless ``THROTTLEMAIL_REQUIRE_REDIS=1`` is set
(CI sets it), in which case they fail.

Fixtures: ``redis_server`` (one server for the session), ``redis_url``, ``redis_client``,
``redis_cluster`` (three masters for the session). Register them with
``pytest_plugins = ["redis_support"]`` in conftest.py.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from throttlemail import RecipientLedger, RedisLedger

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


def require_binary(name: str) -> str:
    """Return the path of ``name``, or skip (fail under THROTTLEMAIL_REQUIRE_REDIS=1)."""
    path = shutil.which(name)
    if path is not None:
        return path
    reason = f"{name} is not on PATH; install the redis-server package to run this test"
    if os.environ.get("THROTTLEMAIL_REQUIRE_REDIS") == "1":
        pytest.fail(f"{reason} (THROTTLEMAIL_REQUIRE_REDIS=1 forbids skipping it)")
    pytest.skip(reason)


def free_port() -> int:
    """Return a loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def free_cluster_port() -> int:
    """Return a free loopback port whose cluster bus port, 10,000 higher, is free too."""
    for _ in range(100):
        port = free_port()
        if port > 55535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((LOOPBACK, port + 10_000))
            except OSError:
                continue
        return port
    raise RuntimeError("found no free port pair for a Redis Cluster node")


@dataclass
class RedisServer:
    """One redis-server process on 127.0.0.1 with its own directory.

    ``extra_args`` are passed on the command line, for example
    ``["--appendonly", "yes"]``. :meth:`restart` keeps the port and the directory, so an
    append-only file written before the restart is loaded after it.
    """

    directory: Path
    port: int = field(default_factory=free_port)
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def client(self, **options: object) -> redis.Redis:
        return redis.Redis(host=LOOPBACK, port=self.port, **options)

    def start(self) -> None:
        binary = require_binary("redis-server")
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [
            binary,
            "--bind", LOOPBACK,
            "--port", str(self.port),
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "yes",
            *self.extra_args,
        ]
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self._wait_until_ready()

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def _wait_until_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        client = self.client(socket_timeout=1.0)
        try:
            while True:
                if self.process.poll() is not None:
                    log = (self.directory / "redis.log").read_text(errors="replace")
                    raise RuntimeError(f"redis-server on port {self.port} exited:\n{log}")
                try:
                    # While loading its append-only file the server replies to PING with a
                    # LOADING error, so a successful PING means the data is loaded.
                    if client.ping():
                        return
                except redis.RedisError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"redis-server on port {self.port} did not start within "
                        f"{START_TIMEOUT} s; see {self.directory / 'redis.log'}"
                    )
                time.sleep(0.05)
        finally:
            client.close()


@dataclass
class RedisClusterNodes:
    """Three redis-server masters on 127.0.0.1 joined into one cluster."""

    servers: list[RedisServer]

    @property
    def ports(self) -> list[int]:
        return [server.port for server in self.servers]

    def client(self, **options: object) -> redis.RedisCluster:
        return redis.RedisCluster(
            startup_nodes=[redis.cluster.ClusterNode(LOOPBACK, port) for port in self.ports],
            **options,
        )

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def start_cluster(directory: Path, masters: int = 3) -> RedisClusterNodes:
    """Start ``masters`` cluster-enabled servers and join them with ``redis-cli --cluster``."""
    cli = require_binary("redis-cli")
    servers = []
    for number in range(masters):
        node_directory = directory / f"node-{number}"
        server = RedisServer(node_directory, port=free_cluster_port())
        server.extra_args = [
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(node_directory / "nodes.conf"),
            "--cluster-node-timeout", "5000",
        ]
        servers.append(server)
    nodes = RedisClusterNodes(servers)
    try:
        for server in servers:
            server.start()
        subprocess.run(
            [cli, "--cluster", "create",
             *(f"{LOOPBACK}:{port}" for port in nodes.ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )
        _wait_for_cluster_ok(nodes)
    except BaseException:
        nodes.stop()
        raise
    return nodes


def _wait_for_cluster_ok(nodes: RedisClusterNodes) -> None:
    deadline = time.monotonic() + START_TIMEOUT * 3
    for server in nodes.servers:
        client = server.client(decode_responses=True)
        try:
            # redis-py parses the CLUSTER INFO reply into a dict.
            while client.execute_command("CLUSTER INFO").get("cluster_state") != "ok":
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"cluster node on port {server.port} did not reach cluster_state:ok "
                        f"within {START_TIMEOUT * 3} s; see {server.directory / 'redis.log'}"
                    )
                time.sleep(0.1)
        finally:
            client.close()


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the whole session, without persistence."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of the session's redis-server (database 0, shared by every test)."""
    return redis_server.url


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    """A Redis Cluster of three masters and no replicas for the whole session."""
    nodes = start_cluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield nodes
    finally:
        nodes.stop()


def ledger_factory(
    request: pytest.FixtureRequest, kind: str
) -> Iterator[Callable[[str], RecipientLedger]]:
    """Yield a function that opens a Redis ledger of ``kind`` for a campaign name.

    ``kind`` is ``"fakeredis"`` (one fake server per test, shared by every handle) or
    ``"redis"`` (the session's redis-server). Each call opens a new client, as a separate
    process would.
    """
    clients: list[redis.Redis] = []
    if kind == "fakeredis":
        fakeredis = pytest.importorskip("fakeredis")
        fake_server = fakeredis.FakeServer()

        def connect() -> redis.Redis:
            return fakeredis.FakeRedis(server=fake_server)
    elif kind == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")

        def connect() -> redis.Redis:
            return server.client()
    else:
        raise ValueError(f"unknown Redis ledger kind {kind!r}")

    def open_ledger(campaign: str) -> RecipientLedger:
        client = connect()
        clients.append(client)
        return RedisLedger(client, campaign)

    try:
        yield open_ledger
    finally:
        for client in clients:
            client.close()
