"""How fast the test database is on this machine: ``python -m devstack.probe``.

Starts the test database of the tests (``mongod``, else FerretDB on PostgreSQL), writes 5 000
user documents and times the store's hot operations the way the service sends them: an
update by ``_id`` (``$max`` + ``$set``) at concurrency 1, 16 and 64, and a lookup by ``_id``
and by ``email``. The README's figures for the test database come from this command.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pymongo import AsyncMongoClient

from devstack.database import DatabaseHost, mongo_url_of

DOCUMENTS = 5000
OPERATIONS = 600


async def _timed(
    operation: Callable[[int], Awaitable[Any]], concurrency: int
) -> tuple[float, float]:
    """(operations per second, p50 latency in ms)."""
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one(i: int) -> None:
        async with gate:
            started = time.perf_counter()
            await operation(i)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(OPERATIONS)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return OPERATIONS / elapsed, latencies[len(latencies) // 2] * 1000


async def _measure(url: str) -> list[str]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url, tz_aware=True)
    try:
        users = client["probe"]["users"]
        await users.create_index("email", unique=True)
        ids = [f"{i:024x}" for i in range(DOCUMENTS)]
        await users.insert_many([{"_id": u, "email": f"{u}@probe.test"} for u in ids])

        async def update(i: int) -> None:
            await users.update_one(
                {"_id": ids[i % DOCUMENTS]}, {"$max": {"lastActiveAt": i}, "$set": {"on": True}}
            )

        async def by_id(i: int) -> None:
            await users.find_one({"_id": ids[(i * 7) % DOCUMENTS]})

        async def by_email(i: int) -> None:
            await users.find_one({"email": f"{ids[(i * 11) % DOCUMENTS]}@probe.test"})

        lines = []
        for name, operation, levels in (
            ("update_one by _id ($max + $set)", update, (1, 16, 64)),
            ("find_one by _id", by_id, (1, 16)),
            ("find_one by email", by_email, (1,)),
        ):
            for concurrency in levels:
                rate, p50 = await _timed(operation, concurrency)
                lines.append(f"{name}, concurrency {concurrency}: {rate:.0f}/s, p50 {p50:.1f} ms")
        return lines
    finally:
        await client.close()


def main() -> None:
    host = DatabaseHost()
    host.start()
    server = host.mongo_server()
    try:
        server.start()
        kind = "mongod" if server.kind == "mongod" else "FerretDB on PostgreSQL"
        print(f"test database: {kind}, {DOCUMENTS} documents, {OPERATIONS} operations each")
        for line in asyncio.run(_measure(mongo_url_of(server))):
            print("  " + line)
    finally:
        server.cleanup()
        host.stop()


if __name__ == "__main__":
    main()
