"""B9: what one maintenance sweep costs with many online subjects and many of them stale: the
sweep runs in this process against the real Redis and database, with every database command
counted by a driver listener."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from pymongo import AsyncMongoClient, monitoring

from bench.harness import MONGO_DB, Stack
from bench.report import Result
from presence.app import MAINTENANCE, create_app
from presence.config import load_settings
from presence.domain import Role, from_epoch
from presence.keys import Keys
from presence.maintenance.sweeper import BATCH
from presence.store.memory import MemoryStore
from presence.store.mongo import MongoStore

KEY = "b09"
TITLE = "Sweep cost"
QUESTION = (
    "N subjects online in Redis and in the database (REST-only: no connection), S of them "
    "quiet past the offline threshold. One sweep by the maintenance leader: wall time, and "
    "database commands by kind (a driver command listener). Target: the sweep takes well under "
    "its 15 s interval, and the database work grows with S (the stale), not with N."
)
THRESHOLD_S = 300.0


class _Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.by_name: dict[str, int] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.by_name[event.command_name] = self.by_name.get(event.command_name, 0) + 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def _seed_database(stack: Stack, total: int, now: float) -> list[str]:
    """Online users' documents, in bulk (the store's shape)."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_url, tz_aware=True)
    ids = [f"{i:024x}" for i in range(total)]
    try:
        # No secondary indexes: the sweep reads and writes by _id, and a MongoDB-compatible
        # server checking a unique index on every bulk insert would make seeding the benchmark.
        users = client[MONGO_DB]["users"]
        for start in range(0, total, 5000):
            await users.insert_many(
                [
                    {
                        "_id": uid,
                        "username": f"s{uid[-6:]}",
                        "email": f"{uid}@bench.test",
                        "passwordHash": "-",
                        "role": "user",
                        "isActive": True,
                        "createdAt": from_epoch(now),
                        "isOnline": True,
                        "manualStatus": "online",
                        "lastActiveAt": from_epoch(now - 30),
                        "lastSeen": None,
                    }
                    for uid in ids[start : start + 5000]
                ],
                ordered=False,
            )
    finally:
        await client.close()
    return ids


async def _seed_memory(store: MemoryStore, total: int, now: float) -> list[str]:
    ids = []
    for i in range(total):
        user = await store.create_user(
            username=f"s{i}",
            email=f"s{i}@bench.test",
            password_hash="-",
            role=Role.USER,
            now=from_epoch(now),
        )
        ids.append(user.id)
    return ids


def _seed_redis(stack: Stack, ids: list[str], stale: int, now: float) -> None:
    """The Redis state of online REST-only subjects, the first ``stale`` of them quiet."""
    total = len(ids)
    bucket = Keys("presence:").bucket("")  # the one bucket of a standalone Redis
    redis = stack.redis()
    for start in range(0, total, 5000):
        chunk = ids[start : start + 5000]
        pipe = redis.pipeline(transaction=False)
        pipe.sadd(bucket.online, *(f"user:{uid}" for uid in chunk))
        pipe.zadd(
            bucket.last_activity,
            {
                f"user:{uid}": int(
                    (now - THRESHOLD_S - 60 if i + start < stale else now - 30) * 1000
                )
                for i, uid in enumerate(chunk)
            },
        )
        pipe.execute()


async def _sweep(stack: Stack, memory: MemoryStore | None = None) -> dict[str, Any]:
    listener = _Commands()
    env = stack.worker_env({"worker_id": "sweeper", "offline_threshold_s": str(THRESHOLD_S)})
    settings = load_settings({k: v for k, v in env.items() if k.startswith("PRESENCE_")})
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        stack.mongo_url, tz_aware=True, event_listeners=[listener]
    )
    store = memory if memory is not None else MongoStore(client, MONGO_DB)
    app = create_app(settings, store=store)
    maintenance = app[MAINTENANCE]
    election = asyncio.create_task(maintenance.lease.run())  # renews while the sweep runs
    try:
        while not maintenance.lease.valid():
            await asyncio.sleep(0.05)
        listener.by_name.clear()
        started = time.perf_counter()
        report = await maintenance.sweeper.sweep()
        elapsed = time.perf_counter() - started
        commands = dict(listener.by_name)
    finally:
        election.cancel()
        await maintenance.lease.release()
        await client.close()
    return {"seconds": elapsed, "taken": report.quiet_offline, "commands": commands}


def run(stack: Stack, quick: bool) -> Result:
    db_total, db_stale = (1_000, 100) if quick else (20_000, 2_000)
    total, stale = (20_000, 2_000) if quick else (100_000, 10_000)
    result = Result.begin(
        KEY,
        TITLE,
        QUESTION,
        quick,
        settings={
            "scale_online": total,
            "scale_stale": stale,
            "database_online": db_total,
            "database_stale": db_stale,
            "offline_threshold_s": THRESHOLD_S,
        },
    )
    logging.getLogger("presence").setLevel(logging.ERROR)  # the in-process app's chatter
    now = time.time()
    # 1. Against the real database: what a sweep asks of it.
    ids = asyncio.run(_seed_database(stack, db_total, now))
    _seed_redis(stack, ids, db_stale, now)
    first = asyncio.run(_sweep(stack))
    second = asyncio.run(_sweep(stack))  # nothing stale left: a routine sweep
    # 2. At scale, with the in-memory store: the sweep's own work and Redis's.
    stack.redis().flushall()
    memory = MemoryStore()
    ids = asyncio.run(_seed_memory(memory, total, now))
    _seed_redis(stack, ids, stale, now)
    scale = asyncio.run(_sweep(stack, memory))
    result.repetitions += [
        {"sweep": f"database, {db_stale} of {db_total} stale", **first},
        {"sweep": f"database, nothing stale of {db_total}", **second},
        {"sweep": f"in-memory store, {stale} of {total} stale", **scale},
    ]
    writes = first["commands"].get("update", 0)
    # One bulk per collection per scanned batch, each chunked into bulks of at most
    # PRESENCE_MONGO_MAX_BATCH (SSCAN's COUNT is a hint: a batch more at most).
    max_batch = load_settings({}).mongo_max_batch
    batches = -(-db_total // BATCH) + 1
    bound = batches + -(-db_stale // max_batch)
    result.metric(
        f"database: {db_stale} of {db_total} stale, subjects taken offline",
        "count",
        [first["taken"]],
        kind="count",
        target=f"exactly {db_stale}",
        met=first["taken"] == db_stale,
        gate=True,
    )
    result.metric(
        "database: write commands",
        "count",
        [writes],
        kind="count",
        target=f"≤ {bound} (per scanned batch of ~{BATCH}, bulks of ≤ {max_batch})",
        met=writes <= bound,
        gate=True,
    )
    result.metric("database: commands, all kinds", "count", [sum(first["commands"].values())])
    result.metric("database: sweep time", "s", [first["seconds"]])
    result.metric("database: routine sweep, commands", "count", [sum(second["commands"].values())])
    result.metric(
        f"scale: {stale} of {total} stale, subjects taken offline",
        "count",
        [scale["taken"]],
        kind="count",
        target=f"exactly {stale}",
        met=scale["taken"] == stale,
        gate=True,
    )
    result.metric(
        "scale: sweep time",
        "s",
        [scale["seconds"]],
        target="< 15 s (the interval)",
        met=scale["seconds"] < 15,
    )
    result.notes.append(
        f"Database commands by kind: {first['commands']} (with stale subjects), "
        f"{second['commands']} (routine). The reads are the announcements' (one presence read "
        "and one conversation lookup per subject going offline) and the fence checks."
    )
    result.notes.append(
        "The scale run uses the in-memory store: the sweep's own work and Redis's at 100 000, "
        "without the test database's write rate (FerretDB on PostgreSQL, a few hundred updates "
        "per second, which say nothing about MongoDB's). The database run gives the commands "
        "and the test database's time."
    )
    return result
