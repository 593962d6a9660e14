"""Scenario 12: the webhook receiver down for 30 s while transitions keep coming, and a worker
holding undelivered events killed with SIGKILL meanwhile; every event of the feed still
arrives, signed, with few duplicates (delivery is at least once)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import aiohttp
import pytest

from presence.keys import Keys
from tests.fault.report import Row
from tests.fault.stack import Stack
from tests.fault.truth import accounts
from tests.support.receiver import Receiver, group_exists
from tests.support.waiting import until

SECRET = "fault-webhook-secret-" + "x" * 20
OUTAGE_S = 30.0


async def active(urls: list[str], tokens: list[str]) -> None:
    """One request each, round robin over the workers: an online transition each."""
    async with aiohttp.ClientSession() as session:
        for i, token in enumerate(tokens):
            headers = {"Authorization": f"Bearer {token}"}
            async with session.get(urls[i % len(urls)] + "/api/users/me", headers=headers) as r:
                assert r.status == 200


async def feed_ids(stack: Stack) -> set[str]:
    redis = stack.redis_client()
    try:
        entries: Any = await redis.xrange(Keys(stack.prefix).events)
    finally:
        await redis.aclose()
    return {entry_id for entry_id, _ in entries}


@pytest.mark.scenario(12)
async def test_webhook_receiver_down_30_s_and_a_delivering_worker_killed(
    stack: Stack, row: Row
) -> None:
    row.done = (
        "2 workers deliver the feed to a real HTTP receiver; 20 users come online; the "
        f"receiver is stopped for {OUTAGE_S:.0f} s while 30 more come online (and REST-only "
        "users go offline); 5 s into the outage w0, retrying its events, is SIGKILLed; the "
        "receiver comes back"
    )
    row.checked = (
        "every event of the feed reaches the receiver, each signature verifies, nothing is left "
        "pending in the group, duplicates are at most 2"
    )
    receiver = Receiver(SECRET.encode())
    await receiver.start()
    stack.settings.update(
        {
            "PRESENCE_WEBHOOK_URL": receiver.url,
            "PRESENCE_WEBHOOK_SECRET": SECRET,
            "PRESENCE_WEBHOOK_MAX_BACKOFF_S": "2",
            "PRESENCE_WEBHOOK_CLAIM_AFTER_S": "3",
        }
    )
    try:
        await stack.start_workers(2)
        redis = stack.redis_client()
        try:  # the group is made at the end of the stream by the workers' delivery loops
            await until(lambda: group_exists(redis, Keys(stack.prefix).events))
        finally:
            await redis.aclose()
        users = await accounts(stack.urls()[0], 50, "hook")
        await active(stack.urls(), [u.token for u in users[:20]])
        before = await feed_ids(stack)
        await until(lambda: set(receiver.event_ids()) >= before, timeout_s=15)

        await receiver.stop()
        down_at = time.monotonic()
        await active(stack.urls(), [u.token for u in users[20:]])
        await asyncio.sleep(5.0)
        failed_w0 = await stack.metric(stack.workers["w0"].url, "presence_webhook_failed_total")
        stack.kill("w0")
        await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
        await receiver.start()
        back_at = time.monotonic()

        async def everything_delivered() -> bool:
            return set(receiver.event_ids()) >= await feed_ids(stack)

        await until(everything_delivered, timeout_s=30, interval_s=0.5)
        caught_up_s = time.monotonic() - back_at
        every = await feed_ids(stack)
        duplicates = sum(n - 1 for n in Counter(receiver.event_ids()).values())
        redis = stack.redis_client()
        try:
            pending = await redis.xpending(Keys(stack.prefix).events, "webhooks")
        finally:
            await redis.aclose()
        row.measure(f"{len(every)} events in the feed, all delivered")
        row.measure(f"w0 had failed {failed_w0:.0f} deliveries before its SIGKILL")
        row.measure(f"all delivered {caught_up_s:.1f} s after the receiver came back")
        row.measure(f"{duplicates} duplicates")
        assert all(receiver.verified(d) for d in receiver.deliveries)
        assert failed_w0 >= 1, "w0 held no event when it was killed: the scenario proved nothing"
        assert pending["pending"] == 0
        assert duplicates <= 2
    finally:
        await receiver.stop()
