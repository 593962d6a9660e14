"""Proof that refused attempts leave no trace: every command Redis executes is watched with
``MONITOR`` (any write to a presence key is a side effect), and the database's users and guests
are compared before and after, document by document."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from presence.lua import COUNT_ONLINE
from tests.fault.stack import Stack

# Keys that hold presence: every key of a bucket (presence/keys.py, ``<prefix>{<n>}:...``);
# worker liveness, the lease, the message queue and the failed-attempt counters are not.
PRESENCE_KEY = r"\{\d+\}:"
READS = {
    "GET", "MGET", "EXISTS", "PTTL", "TTL", "TYPE",
    "HGET", "HMGET", "HGETALL", "HLEN", "HKEYS", "HVALS",
    "SISMEMBER", "SMISMEMBER", "SMEMBERS", "SCARD", "SSCAN",
    "ZSCORE", "ZMSCORE", "ZCARD", "ZCOUNT", "ZRANGE", "ZRANGEBYSCORE", "ZREVRANGE", "ZSCAN",
    "SCAN",
}  # fmt: skip
# Scripts that only read (checked by reading them): the online gauge counts, writes nothing.
READ_ONLY_SCRIPTS = {hashlib.sha1(COUNT_ONLINE.encode()).hexdigest()}


@dataclass
class Watch:
    stack: Stack
    commands: list[list[str]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _before: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    async def _collections(self) -> dict[str, list[dict[str, Any]]]:
        client = self.stack.mongo_client()
        try:
            db = client[self.stack.db_name]
            return {
                name: await db[name].find({}).sort("_id").to_list(None)
                for name in ("users", "anonymous_participants")
            }
        finally:
            await client.close()

    async def __aenter__(self) -> Watch:
        self._before = await self._collections()
        redis = self.stack.redis_client()
        started = asyncio.Event()

        async def listen() -> None:
            try:
                async with redis.monitor() as monitor:
                    started.set()
                    async for entry in monitor.listen():
                        self.commands.append(str(entry["command"]).split())
            finally:
                await redis.aclose()

        self._task = asyncio.create_task(listen())
        await asyncio.wait_for(started.wait(), timeout=5)
        await asyncio.sleep(0.2)
        return self

    def presence_writes(self) -> list[str]:
        prefix = self.stack.prefix
        found = []
        for command in self.commands:
            if not command or command[0].upper() in READS:
                continue
            if command[0].upper() == "ZREMRANGEBYSCORE" and command[2:3] == ["-inf"]:
                continue  # housekeeping: windows that already ended are dropped on a timer
            if command[0].upper() == "EVALSHA" and command[1].strip("'\"") in READ_ONLY_SCRIPTS:
                continue
            touched = [a.strip("'\"") for a in command[1:]]
            bucket_key = re.compile(re.escape(prefix) + PRESENCE_KEY)
            if any(bucket_key.match(a) for a in touched):
                found.append(" ".join(command)[:200])
        return found

    async def database_changes(self) -> list[str]:
        after = await self._collections()
        return [name for name in after if after[name] != self._before.get(name)]

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.sleep(0.3)  # let the last commands reach the monitor
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
