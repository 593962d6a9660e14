"""B4: the throttle race. Four workers get the same users' requests at the same instant (each
user hits all four at once), and again just after the window expires: one write per user per
window, never two."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from bench.harness import Account, Stack, Worker
from bench.report import Result

KEY = "b04"
TITLE = "Throttle race between workers"
QUESTION = (
    "U users; for each, one request to each of 4 workers, all fired together (4 × U requests "
    "in flight). Credentials are cached beforehand so the requests meet at the throttle, not at "
    "the database. Then the same just after the window (2 s here) expires, and once more inside "
    "the new window. Writes counted at the database; target: exactly U per window, 0 duplicates."
)
WINDOW_S = 4.0


async def _warm(
    session: aiohttp.ClientSession, workers: list[Worker], users: list[Account]
) -> None:
    """Each user's credentials checked on every worker, a few at a time: that first request
    reads the database, and the race below is about the throttle, not the database."""
    gate = asyncio.Semaphore(20)

    async def one(worker: Worker, account: Account) -> None:
        async with (
            gate,
            session.post(
                worker.url + "/api/presence/heartbeat",
                headers={"Authorization": f"Bearer {account.token}"},
            ) as resp,
        ):
            await resp.read()

    await asyncio.gather(*(one(w, a) for a in users for w in workers))


async def _burst(
    session: aiohttp.ClientSession, workers: list[Worker], users: list[Account]
) -> tuple[int, float]:
    async def one(worker: Worker, account: Account) -> int:
        async with session.post(
            worker.url + "/api/presence/heartbeat",
            headers={"Authorization": f"Bearer {account.token}"},
        ) as resp:
            await resp.read()
            return resp.status

    statuses = await asyncio.gather(*(one(w, a) for a in users for w in workers))
    return sum(1 for s in statuses if s != 200), time.monotonic()


def run(stack: Stack, quick: bool) -> Result:
    users = 100 if quick else 200
    result = Result.begin(
        KEY,
        TITLE,
        QUESTION,
        quick,
        settings={"workers": 4, "users": users, "throttle_interval_s": WINDOW_S},
    )
    accounts = stack.seed_users(users)
    workers = stack.start_workers(4, throttle_interval_s=WINDOW_S)

    async def scenario() -> None:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            await _warm(session, workers, accounts)
            await asyncio.sleep(WINDOW_S + 1.0)
            for case in (
                "at the same instant",
                "just after the window expired",
                "inside the window",
            ):
                before = stack.database_updates()
                with stack.monitor() as log:
                    failed, ended = await _burst(session, workers, accounts)
                    await asyncio.sleep(1.0)  # writes leave the request path
                writes = stack.database_updates() - before
                calls = log.activity_calls()
                result.repetitions.append(
                    {"case": case, "writes": writes, "redis_calls": calls, "failed": failed}
                )
                expected = 0 if case == "inside the window" else users
                result.metric(
                    f"{case}: writes",
                    "count",
                    [writes],
                    kind="count",
                    target=f"exactly {expected}",
                    met=writes == expected,
                    gate=True,
                )
                result.metric(
                    f"{case}: request-path Redis calls",
                    "count",
                    [calls],
                    kind="count",
                    target=f"≤ 4 × U = {4 * users}",
                    met=calls <= 4 * users,
                    gate=True,
                )
                result.metric(
                    f"{case}: failed requests",
                    "count",
                    [failed],
                    kind="count",
                    target="0",
                    met=failed == 0,
                    gate=True,
                )
                if case == "at the same instant":
                    # Just past the expiry of the windows this burst opened.
                    await asyncio.sleep(max(0.0, ended + WINDOW_S + 0.05 - time.monotonic()))
                # After the second burst: straight on, inside the window it just opened.

    asyncio.run(scenario())
    return result
