"""What every benchmark needs: the real servers, worker processes pinned to a core, seeded
accounts, and the counters read at Redis and at the database.

The servers are the ones the tests use (a local Redis, ``mongod`` or the FerretDB build); one
:class:`Stack` is shared by a whole run and emptied between benchmarks.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import resource
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from pymongo import AsyncMongoClient, MongoClient

from devstack.balancer import spawn_nginx
from devstack.database import DatabaseHost, mongo_url_of
from devstack.metrics import metric_sum
from devstack.servers import Server, free_port, redis_server, redis_url_of, stop_process
from devstack.workers import clean_env, settings_env, spawn_worker
from presence.auth.tokens import JwtCodec
from presence.clock import SystemClock
from presence.domain import Role, from_epoch
from presence.lua import ACTIVITY, USER_INPUT
from presence.realtime.delivery import EXACT_VIEW, VIEWS
from presence.store.mongo import MongoStore
from tests.support.sio import Listener

ROOT = Path(__file__).resolve().parents[1]
# Source addresses for load through the address-sticky load balancer: enough of them that
# every worker gets some.
SOURCES = [f"127.0.0.{i}" for i in range(2, 62)]
# A worker on one core, load generators and servers on the other: the layout the ratios assume.
WORKER_CPU = "1"
LOAD_CPU = "0"
MONGO_DB = "presence_bench"


def taskset(cpu: str) -> list[str]:
    binary = shutil.which("taskset")
    if binary is None or (os.cpu_count() or 1) < 2:
        return []
    return [binary, "-c", cpu]


def raise_open_files_limit() -> int:
    """Thousands of sockets per process: children inherit the raised limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)
    if soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):
            return soft
    return wanted


@dataclass
class Worker:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def metric(self, name: str) -> float:
        """Sum of one Prometheus series (all label sets) from ``/metrics``."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as resp:
            return metric_sum(resp.read().decode(), name)

    def stop(self, kill: bool = False) -> None:
        if self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Account:
    id: str
    token: str


async def open_socket(url: str, account: Account, name: str, timeout_s: float = 30) -> Listener:
    """A websocket of ``account`` on one worker, returned once its snapshot arrived."""
    listener = Listener(name)
    await listener.connect(url, auth={"token": account.token}, transports=["websocket"])
    await listener.wait_for("presence:snapshot", timeout_s=timeout_s)
    return listener


@dataclass
class Stack:
    run_dir: Path
    redis_server: Server
    mongo_server: Server
    database: DatabaseHost
    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))
    workers: list[Worker] = field(default_factory=list)
    nginx: subprocess.Popen[bytes] | None = None

    @property
    def redis_url(self) -> str:
        return redis_url_of(self.redis_server)

    @property
    def mongo_url(self) -> str:
        return mongo_url_of(self.mongo_server)

    # -- processes ---------------------------------------------------------------------------

    def worker_env(self, settings: dict[str, Any]) -> dict[str, str]:
        return clean_env(
            **settings_env(
                redis_url=self.redis_url,
                mongo_url=self.mongo_url,
                mongo_db=MONGO_DB,
                jwt_secret=self.jwt_secret,
                log_level="WARNING",
                **settings,
            )
        )

    def start_worker(self, name: str, cpu: str | None = WORKER_CPU, **settings: Any) -> Worker:
        port = free_port()
        log_path = self.run_dir / f"{name}.log"
        prefix = taskset(cpu) if cpu else []
        process = spawn_worker(name, self.worker_env(settings), log_path, port=port, prefix=prefix)
        worker = Worker(name, port, process, log_path)
        self.workers.append(worker)
        return worker

    def start_workers(
        self, count: int, cpu: str | None = WORKER_CPU, **settings: Any
    ) -> list[Worker]:
        started = [self.start_worker(f"w{i}", cpu, **settings) for i in range(count)]
        for worker in started:
            self.wait_ready(worker)
        return started

    def wait_ready(self, worker: Worker, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if worker.process.poll() is not None:
                raise RuntimeError(f"{worker.name} exited:\n{worker.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(worker.url + "/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{worker.name} not ready after {timeout_s} s")

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers.clear()
        if self.nginx is not None:
            stop_process(self.nginx)
            self.nginx = None

    def start_nginx(self, workers: list[Worker]) -> str:
        """The deployment's load balancer (address-sticky) in front of ``workers``."""
        port = free_port()
        conf_dir = self.run_dir / f"nginx-{port}"
        conf_dir.mkdir()
        self.nginx = spawn_nginx(
            conf_dir, port, [w.port for w in workers], prefix=taskset(LOAD_CPU)
        )
        return f"http://127.0.0.1:{port}"

    def reset(self) -> None:
        """Stop every worker and empty both stores: each benchmark starts from nothing."""
        self.stop_workers()
        self.redis().flushall()
        client: MongoClient[dict[str, Any]]
        with MongoClient(self.mongo_url) as client:
            client.drop_database(MONGO_DB)

    def close(self) -> None:
        self.stop_workers()
        self.redis_server.cleanup()
        self.mongo_server.cleanup()
        self.database.stop()

    # -- counters ----------------------------------------------------------------------------

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def commandstats(self) -> dict[str, int]:
        stats = self.redis().info("commandstats")
        return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}

    def database_updates(self) -> int:
        """Update commands the database executed: FerretDB's request metrics, or the update
        operation counter of a mongod."""
        debug = self.mongo_server.extra_ports.get("debug")
        if debug is not None:
            url = f"http://127.0.0.1:{debug}/debug/metrics"
            with urllib.request.urlopen(url, timeout=10) as resp:
                text = resp.read().decode()
            pattern = re.compile(
                r'^ferretdb_client_requests_total\{[^}]*command="update"[^}]*\} (\S+)$'
            )
            return sum(int(float(m.group(1))) for m in map(pattern.match, text.splitlines()) if m)
        client: MongoClient[dict[str, Any]]
        with MongoClient(self.mongo_url) as client:
            status = client.admin.command("serverStatus")
            return int(status["opcounters"]["update"])

    @contextmanager
    def monitor(self) -> Iterator[MonitorLog]:
        """Every command Redis executes meanwhile (``MONITOR``), to tell the request path's
        calls from the background's. Costs throughput: only for counting benchmarks."""
        path = self.run_dir / f"monitor-{time.monotonic_ns()}.log"
        cli = shutil.which("redis-cli") or "redis-cli"
        with path.open("wb") as out:
            process = subprocess.Popen(
                [cli, "-p", str(self.redis_server.port), "monitor"], stdout=out
            )
        time.sleep(0.3)
        log = MonitorLog(path)
        try:
            yield log
        finally:
            time.sleep(0.3)
            process.terminate()
            process.wait()
            log.load()
            path.unlink(missing_ok=True)

    # -- accounts ----------------------------------------------------------------------------

    def service_token(self, name: str, *scopes: str) -> str:
        """A service token made as an operator makes one (``presence service-token create``)."""
        made = subprocess.run(
            [sys.executable, "-m", "presence", "service-token", "create", "--name", name,
             "--scopes", ",".join(scopes)],
            env=self.worker_env({}),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )  # fmt: skip
        return made.stdout.strip()

    def seed_users(self, count: int, prefix: str = "u") -> list[Account]:
        """Users written through the store, with tokens signed by the workers' secret (no
        password hashing: 10 000 argon2 hashes would take minutes)."""
        return asyncio.run(self._seed_users(count, prefix))

    async def _seed_users(self, count: int, prefix: str) -> list[Account]:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(self.mongo_url, tz_aware=True)
        store = MongoStore(client, MONGO_DB)
        clock = SystemClock()
        codec = JwtCodec(self.jwt_secret, 6 * 3600, clock)
        tag = secrets.token_hex(3)
        try:
            # No index creation here (the workers create them at start-up): a
            # MongoDB-compatible server checking a unique index on every insert would make
            # seeding thousands of users the slowest part of a benchmark.
            accounts: list[Account] = []
            for start in range(0, count, 200):
                users = await asyncio.gather(
                    *(
                        store.create_user(
                            username=f"{prefix}{i}",
                            email=f"{prefix}{i}-{tag}@bench.test",
                            password_hash="-",
                            role=Role.USER,
                            now=from_epoch(clock.now()),
                        )
                        for i in range(start, min(count, start + 200))
                    )
                )
                accounts.extend(Account(u.id, codec.issue(u.id)) for u in users)
            return accounts
        finally:
            await client.close()

    def conversation(self, members: list[str], title: str = "bench") -> str:
        return asyncio.run(self._conversation(members, title))

    async def _conversation(self, members: list[str], title: str) -> str:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(self.mongo_url, tz_aware=True)
        try:
            store = MongoStore(client, MONGO_DB)
            record = await store.create_conversation(
                title=title,
                member_ids=members,
                created_by=members[0],
                now=from_epoch(time.time()),
            )
            return record.id
        finally:
            await client.close()


class MonitorLog:
    """The commands clients sent during a ``MONITOR`` session (not those scripts ran), each as
    its list of arguments."""

    _ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')

    def __init__(self, path: Path) -> None:
        self._path = path
        self.commands: list[list[str]] = []

    def load(self) -> None:
        for line in self._path.read_text(errors="replace").splitlines():
            if " lua]" in line.split('"', 1)[0]:
                continue  # run by a script: not a round trip
            args = self._ARG.findall(line)
            if args:
                self.commands.append(args)

    def count(
        self,
        name: str,
        *,
        first_arg: str | None = None,
        containing: tuple[str, ...] = (),
        excluding: tuple[str, ...] = (),
    ) -> int:
        """Commands called ``name`` whose arguments contain every one of ``containing`` and
        none of ``excluding``."""
        total = 0
        for args in self.commands:
            if args[0].upper() != name.upper():
                continue
            if first_arg is not None and (len(args) < 2 or args[1] != first_arg):
                continue
            text = " ".join(args[1:])
            if all(c in text for c in containing) and not any(e in text for e in excluding):
                total += 1
        return total

    def publishes(self) -> list[tuple[str, dict[str, Any]]]:
        """Every JSON message published (``PUBLISH`` or ``SPUBLISH``: the Socket.IO queue's
        messages and the probes), with its channel."""
        found = []
        for args in self.commands:
            if args[0].upper() in ("PUBLISH", "SPUBLISH") and len(args) >= 3:
                raw = args[2].encode("latin-1", "backslashreplace").decode("unicode_escape")
                try:
                    found.append((args[1], json.loads(raw)))
                except ValueError:
                    continue
        return found

    def published(self) -> list[dict[str, Any]]:
        return [message for _, message in self.publishes()]

    def _status_channels(self, user_id: str) -> list[str]:
        return [
            channel
            for channel, m in self.publishes()
            if m.get("event") == "user:status" and _subject_of(m["data"][0]) == user_id
        ]

    def status_publishes(self, user_id: str) -> int:
        return len(self._status_channels(user_id))

    def status_channels(self, user_id: str) -> set[str]:
        """The channels (with the routed queue: the workers) a subject's changes went to."""
        return set(self._status_channels(user_id))

    def activity_calls(self) -> int:
        """Calls of the activity script: one of the two Redis round trips on the request path."""
        return self.script_calls(ACTIVITY)

    def input_calls(self) -> int:
        """Calls of the user-input script (automatic away): the other one."""
        return self.script_calls(USER_INPUT)

    def script_calls(self, source: str) -> int:
        return self.count("evalsha", first_arg=script_sha(source)) + self.count(
            "eval", first_arg=source
        )


def _subject_of(payload: dict[str, Any]) -> Any:
    """Whom a published user:status is about, whether it carries one record or one per view
    (presence.realtime.delivery)."""
    views = payload.get(VIEWS)
    record = views[EXACT_VIEW] if isinstance(views, dict) else payload
    return record.get("userId")


def script_sha(source: str) -> str:
    import hashlib

    return hashlib.sha1(source.encode()).hexdigest()  # Redis names scripts by SHA-1


def start_stack(run_dir: Path) -> Stack:
    run_dir.mkdir(parents=True, exist_ok=True)
    raise_open_files_limit()
    database = DatabaseHost(prefix=taskset(LOAD_CPU))
    database.start()
    redis_srv = redis_server()
    mongo_srv = database.mongo_server()
    try:
        for server in (redis_srv, mongo_srv):
            server.log_path = run_dir / server.log_path.name
            server.argv = [*taskset(LOAD_CPU), *server.argv]
            server.start()
    except BaseException:
        for server in (redis_srv, mongo_srv):
            server.cleanup()
        database.stop()
        raise
    return Stack(run_dir, redis_srv, mongo_srv, database)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True)


def run_rest_load(run_dir: Path, plan: dict[str, Any], timeout_s: float = 600) -> dict[str, Any]:
    """The open-loop generator in its own process (on the load core)."""
    tag = time.monotonic_ns()
    plan_path = run_dir / f"plan-{tag}.json"
    out_path = run_dir / f"load-{tag}.json"
    plan_path.write_text(json.dumps(plan))
    subprocess.run(
        [*taskset(LOAD_CPU), sys.executable, "-m", "bench.restload", str(plan_path), str(out_path)],
        cwd=ROOT,
        check=True,
        timeout=timeout_s,
    )
    result: dict[str, Any] = json.loads(out_path.read_text())
    plan_path.unlink()
    out_path.unlink()
    return result
