"""B9: what one maintenance sweep costs with many online subjects and many of them stale: the
sweep runs in this process against the real Redis and database, with every database command
counted by a driver listener."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pymongo import AsyncMongoClient, monitoring

from bench.harness import MONGO_DB, Stack
from bench.report import Result
from presence.app import MAINTENANCE, create_app
from presence.config import load_settings
from presence.domain import from_epoch
from presence.keys import Keys
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


async def _seed(stack: Stack, total: int, stale: int, now: float) -> list[str]:
    """Documents in bulk (the store's shape), and the Redis state of online REST subjects."""
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
    keys = Keys("presence:")
    redis = stack.redis()
    for start in range(0, total, 5000):
        chunk = ids[start : start + 5000]
        pipe = redis.pipeline(transaction=False)
        pipe.sadd(keys.online, *(f"user:{uid}" for uid in chunk))
        pipe.zadd(
            keys.last_activity,
            {
                f"user:{uid}": int((now - THRESHOLD_S - 60 if i + start < stale else now - 30) * 1000)
                for i, uid in enumerate(chunk)
            },
        )
        pipe.execute()
    return ids


async def _sweep(stack: Stack) -> dict[str, Any]:
    listener = _Commands()
    env = stack.worker_env({"worker_id": "sweeper", "offline_threshold_s": str(THRESHOLD_S)})
    settings = load_settings({k: v for k, v in env.items() if k.startswith("PRESENCE_")})
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        stack.mongo_url, tz_aware=True, event_listeners=[listener]
    )
    app = create_app(settings, store=MongoStore(client, MONGO_DB))
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
    total, stale = (20_000, 2_000) if quick else (100_000, 10_000)
    result = Result(
        KEY, TITLE, QUESTION, "quick" if quick else "full",
        "make bench-quick" if quick else "make bench",
        settings={"online_subjects": total, "stale": stale, "offline_threshold_s": THRESHOLD_S},
    )
    asyncio.run(_seed(stack, total, stale, time.time()))
    first = asyncio.run(_sweep(stack))
    second = asyncio.run(_sweep(stack))  # nothing stale left: the cost of a routine sweep
    result.repetitions += [{"sweep": "with stale subjects", **first},
                           {"sweep": "nothing stale", **second}]
    result.metric("subjects taken offline", "count", [first["taken"]], kind="count",
                  target=f"exactly {stale}", met=first["taken"] == stale, gate=True)
    result.metric("sweep with stale subjects", "s", [first["seconds"]],
                  target="< 15 s (the interval)", met=first["seconds"] < 15)
    writes = first["commands"].get("update", 0) + first["commands"].get("bulkWrite", 0)
    result.metric("database write commands", "count", [writes])
    result.metric("database commands, all kinds", "count", [sum(first["commands"].values())])
    result.metric("routine sweep (nothing stale)", "s", [second["seconds"]])
    result.metric("routine sweep: database commands", "count",
                  [sum(second["commands"].values())])
    result.notes.append(f"Commands by kind, first sweep: {first['commands']}; second: {second['commands']}.")
    return result
