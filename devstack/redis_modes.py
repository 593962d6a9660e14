"""Redis in every mode presence supports, as real ``redis-server`` processes on loopback:
standalone, Sentinel (a master, a replica, three sentinels) and Cluster (three masters, three
replicas, made with ``redis-cli --cluster create``). Each topology gives the URL a worker is
started with, exactly as an operator writes it."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from devstack.servers import Server, free_port, redis_server

SERVICE = "mymaster"
# How fast the sentinels call a master dead and how long a failover may take: seconds, so a
# failover test finishes in seconds (production defaults are 30 s and 3 min).
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 4000
# A cluster node is taken for failed after this long without answering.
CLUSTER_NODE_TIMEOUT_MS = 1500
READY_TIMEOUT_S = 30.0
CLUSTER_NODE_OPTIONS = [
    "--cluster-enabled", "yes",
    "--cluster-config-file", "nodes.conf",
    "--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS),
    # A replica with a stale link still takes over: the tests kill a master on purpose.
    "--cluster-replica-validity-factor", "0",
]  # fmt: skip


def _until(check: str, condition: Callable[[], bool], timeout_s: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except (redis.RedisError, OSError) as exc:
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"{check} not true after {timeout_s} s (last error: {last})")


def _client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, decode_responses=True)


def _command(port: int, *args: str) -> Any:
    """The server's own answer, not redis-py's parsed version of it (which differs by
    command and version)."""
    with _client(port) as client:
        client.response_callbacks.clear()
        return client.execute_command(*args)


def _fields(text: str) -> dict[str, str]:
    """``INFO`` and ``CLUSTER INFO`` answers: ``name:value`` lines."""
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {name.strip(): value.strip() for name, value in pairs}


def _replication(port: int) -> dict[str, str]:
    return _fields(_command(port, "INFO", "replication"))


def _master_addr(sentinel_port: int) -> int:
    _, port = _command(sentinel_port, "SENTINEL", "get-master-addr-by-name", SERVICE)
    return int(port)


@dataclass
class Standalone:
    server: Server = field(default_factory=redis_server)
    mode: str = "standalone"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.server.port}/0"

    @property
    def servers(self) -> list[Server]:
        return [self.server]

    def start(self) -> None:
        self.server.start()

    def cleanup(self) -> None:
        self.server.cleanup()


@dataclass
class SentinelTopology:
    """A master, one replica of it, and three sentinels watching it as ``mymaster``."""

    master: Server = field(default_factory=redis_server)
    replica: Server = field(init=False)
    sentinels: list[Server] = field(init=False)
    mode: str = "sentinel"

    def __post_init__(self) -> None:
        self.replica = redis_server(extra=["--replicaof", "127.0.0.1", str(self.master.port)])
        self.sentinels = [self._sentinel() for _ in range(3)]

    def _sentinel(self) -> Server:
        binary = shutil.which("redis-server")
        assert binary is not None
        port = free_port()
        workdir = Path(tempfile.mkdtemp(prefix="presence-sentinel-"))
        conf = workdir / "sentinel.conf"  # the sentinel rewrites it with what it learns
        conf.write_text(
            f"port {port}\n"
            "bind 127.0.0.1\n"
            f"dir {workdir}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.master.port} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        return Server(
            [binary, str(conf), "--sentinel"], port, workdir, workdir / "sentinel.log",
            kind="sentinel",
        )  # fmt: skip

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    @property
    def servers(self) -> list[Server]:
        return [self.master, self.replica, *self.sentinels]

    def start(self) -> None:
        self.master.start()
        self.replica.start()
        _until("the replica in sync", lambda: self._in_sync(self.replica.port))
        for sentinel in self.sentinels:
            sentinel.start()
        _until("every sentinel sees the master, its replica and the others", self._settled)

    def _in_sync(self, port: int) -> bool:
        return _replication(port).get("master_link_status") == "up"

    def _settled(self) -> bool:
        for sentinel in self.sentinels:
            found = _command(sentinel.port, "SENTINEL", "master", SERVICE)
            # A map under RESP3, a flat list of names and values under RESP2.
            state = found if isinstance(found, dict) else dict(zip(*[iter(found)] * 2, strict=True))
            if int(state["num-slaves"]) < 1 or int(state["num-other-sentinels"]) < 2:
                return False
        return True

    def master_port(self) -> int:
        """The port of the master the sentinels name now."""
        return _master_addr(self.sentinels[0].port)

    def data_node(self, port: int) -> Server:
        return next(s for s in (self.master, self.replica) if s.port == port)

    def wait_promoted(self, old_port: int, timeout_s: float = READY_TIMEOUT_S) -> float:
        """Wait until every sentinel names a master other than ``old_port`` and it accepts
        writes; returns the seconds it took."""
        started = time.monotonic()

        def promoted() -> bool:
            if any(_master_addr(s.port) == old_port for s in self.sentinels):
                return False
            return _replication(self.master_port()).get("role") == "master"

        _until("a replica promoted", promoted, timeout_s)
        return time.monotonic() - started

    def cleanup(self) -> None:
        for server in reversed(self.servers):
            server.cleanup()


@dataclass
class ClusterTopology:
    """Three masters and one replica each, on loopback."""

    nodes: list[Server] = field(init=False)
    mode: str = "cluster"

    def __post_init__(self) -> None:
        # The bus port is given, not derived (port + 10000 overflows for high free ports).
        self.nodes = [
            redis_server(extra=[*CLUSTER_NODE_OPTIONS, "--cluster-port", str(free_port())])
            for _ in range(6)
        ]

    @property
    def url(self) -> str:
        # Seed nodes: any of them; the client discovers the rest.
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:3])

    @property
    def servers(self) -> list[Server]:
        return list(self.nodes)

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not installed: run scripts/test-services.sh")
        created = subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
             "--cluster-replicas", "1", "--cluster-yes"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{created.stdout}")
        _until("the cluster ok on every node", self._healthy)

    def _healthy(self) -> bool:
        for node in self.nodes:
            if node.process is None:
                continue
            info = _fields(_command(node.port, "CLUSTER", "INFO"))
            if info["cluster_state"] != "ok" or int(info["cluster_slots_assigned"]) != 16384:
                return False
        return True

    def masters(self) -> list[Server]:
        ports = {
            port
            for port, flags in self._flags().items()
            if "master" in flags and "fail" not in flags
        }
        return [n for n in self.nodes if n.port in ports]

    def _flags(self) -> dict[int, str]:
        """Port -> flags of every node, as a live node sees them."""
        live = next(n for n in self.nodes if n.process is not None)
        found = {}
        for line in str(_command(live.port, "CLUSTER", "NODES")).splitlines():
            _, address, flags, *_ = line.split()
            found[int(address.split("@")[0].rsplit(":", 1)[1])] = flags
        return found

    def wait_failed_over(self, killed_port: int, timeout_s: float = READY_TIMEOUT_S) -> float:
        """After a master was killed: wait until the cluster marked it failed, promoted its
        replica and is ok on every live node; returns the seconds."""
        started = time.monotonic()

        def failed_over() -> bool:
            flags = self._flags()
            return "fail" in flags.get(killed_port, "fail") and self._healthy()

        _until("the killed master's replica promoted", failed_over, timeout_s)
        return time.monotonic() - started

    def cleanup(self) -> None:
        for node in self.nodes:
            node.cleanup()


RedisTopology = Standalone | SentinelTopology | ClusterTopology
MODES = ("standalone", "sentinel", "cluster")


def redis_topology(mode: str) -> RedisTopology:
    if mode == "standalone":
        return Standalone()
    if mode == "sentinel":
        return SentinelTopology()
    if mode == "cluster":
        return ClusterTopology()
    raise ValueError(f"unknown Redis mode {mode!r}: one of {', '.join(MODES)}")
