"""A deployment of its own for one fault scenario: Redis and the MongoDB-compatible server
started for this test only (so they can be killed), and ``presence serve`` worker processes."""

from __future__ import annotations

import signal
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from devstack.database import DatabaseHost, mongo_url_of
from devstack.redis_modes import RedisTopology, Standalone, redis_topology
from devstack.servers import Server
from tests.conftest import JWT_SECRET
from tests.support.processes import (
    WorkerProcess,
    clean_env,
    scrape,
    start_worker,
    until_healthy,
)

# Shrunk timers (SPEC §7 names): failure detection in seconds, as in Phoenix's NodeCase.
FAST_TIMERS = {
    "PRESENCE_THROTTLE_INTERVAL_S": "2",
    "PRESENCE_OFFLINE_THRESHOLD_S": "6",
    "PRESENCE_OFFLINE_GRACE_S": "2",
    "PRESENCE_MAINTENANCE_INTERVAL_S": "0.5",
    "PRESENCE_LEADER_TTL_S": "1.5",
    "PRESENCE_WORKER_TTL_S": "1.5",
    "PRESENCE_PING_INTERVAL_S": "1",
    "PRESENCE_PING_TIMEOUT_S": "2",
    "PRESENCE_CACHE_MAX_AGE_S": "10",
    "PRESENCE_LOG_FORMAT": "text",
}


@dataclass
class Stack:
    log_dir: Path
    topology: RedisTopology
    mongo: Server
    settings: dict[str, str]
    workers: dict[str, WorkerProcess] = field(default_factory=dict)
    # Taken out of the pool before a graceful stop, as a load balancer drains a backend.
    draining: set[str] = field(default_factory=set)
    prefix: str = field(default_factory=lambda: f"f{uuid.uuid4().hex[:8]}:")
    db_name: str = field(default_factory=lambda: f"fault_{uuid.uuid4().hex[:8]}")

    @property
    def redis(self) -> Server:
        """The one Redis server of a standalone stack (the scenarios that kill "Redis")."""
        assert isinstance(self.topology, Standalone)
        return self.topology.server

    @property
    def env(self) -> dict[str, str]:
        return clean_env(
            PRESENCE_REDIS_URL=self.topology.url,
            PRESENCE_MONGO_URL=mongo_url_of(self.mongo),
            PRESENCE_MONGO_DB=self.db_name,
            PRESENCE_REDIS_PREFIX=self.prefix,
            PRESENCE_JWT_SECRET=JWT_SECRET,
            **{**FAST_TIMERS, **self.settings},
        )

    async def start_worker(self, name: str) -> WorkerProcess:
        """Start a worker; it joins the pool once healthy, as behind a health-checking balancer.
        The load the test runs meanwhile keeps running."""
        self.draining.add(name)
        worker = start_worker(self.env, self.log_dir, name)
        self.workers[name] = worker
        await until_healthy(worker)
        self.draining.discard(name)
        return worker

    async def start_workers(self, count: int) -> list[WorkerProcess]:
        return [await self.start_worker(f"w{i}") for i in range(count)]

    def urls(self) -> list[str]:
        return [
            w.url
            for name, w in self.workers.items()
            if w.process.poll() is None and name not in self.draining
        ]

    def pids(self) -> dict[str, int]:
        return {name: w.process.pid for name, w in self.workers.items()}

    def crashed(self) -> list[str]:
        """Workers that exited without being told to."""
        return [name for name, w in self.workers.items() if w.process.poll() is not None]

    def kill(self, name: str) -> None:
        worker = self.workers[name]
        worker.process.send_signal(signal.SIGKILL)
        worker.process.wait()

    def terminate(self, name: str) -> float:
        """Drain, SIGTERM and wait; seconds the graceful shutdown took. (Blocking: async tests
        run it in a thread.)"""
        self.draining.add(name)
        started = time.monotonic()
        self.workers[name].stop()
        self.draining.discard(name)
        return time.monotonic() - started

    def rss_kib(self, name: str) -> int:
        status = Path(f"/proc/{self.workers[name].process.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def redis_client(self) -> Redis:
        return Redis.from_url(self.topology.url, decode_responses=True)

    def mongo_client(self) -> AsyncMongoClient[dict[str, Any]]:
        return AsyncMongoClient(mongo_url_of(self.mongo))

    async def users(self) -> dict[str, dict[str, Any]]:
        """Every user document, by id (read straight from the database)."""
        client = self.mongo_client()
        try:
            found = await client[self.db_name]["users"].find({}).to_list(None)
        finally:
            await client.close()
        return {str(doc["_id"]): doc for doc in found}

    async def metric(self, url: str, name: str, **labels: str) -> float:
        return await scrape(url, name, **labels)

    async def readiness(self, url: str) -> int:
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session,
                session.get(url + "/readyz") as resp,
            ):
                return resp.status
        except (TimeoutError, aiohttp.ClientError):
            return 0

    def close(self) -> None:
        for worker in self.workers.values():
            worker.stop()
        self.topology.cleanup()
        self.mongo.cleanup()


def start_stack(
    log_dir: Path, database: DatabaseHost, redis_mode: str = "standalone", **settings: str
) -> Stack:
    topology, mongo = redis_topology(redis_mode), database.mongo_server()
    try:
        topology.start()
        mongo.start()
    except BaseException:
        topology.cleanup()
        mongo.cleanup()
        raise
    extra = {f"PRESENCE_{k.upper()}": v for k, v in settings.items()}
    return Stack(log_dir, topology, mongo, extra)
