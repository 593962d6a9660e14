"""Fan-out that scales with workers (SPEC §10): with the routed message queue a worker receives
only the messages addressed to rooms in which it has a local socket. Four real workers, an
audience on one of them, sockets on the others in rooms of their own; standalone Redis and
Cluster."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from presence.clients import redis_from_url
from presence.keys import Keys, decoded
from tests.e2e.conftest import WorkersFactory
from tests.support.accounts import Account, call, conversation, register
from tests.support.processes import WorkerProcess, scrape
from tests.support.sio import Listener
from tests.support.waiting import until

RECEIVED = "presence_pubsub_received_total"
TRANSITIONS = 6
# Manual statuses cycled by the actor: each one is a transition announced to its audience.
STATUSES = ("away", "dnd", "online")
# Routing is the same code on a standalone Redis and behind Sentinel (one master); Cluster
# mode adds the shards (sharded pub/sub, a channel and route sets per slot).
STANDALONE_AND_CLUSTER = pytest.mark.parametrize(
    "redis_mode", ["standalone", "cluster"], indirect=True
)
TIMERS = {"worker_ttl_s": "2", "leader_ttl_s": "2", "maintenance_interval_s": "1"}


@dataclass
class Layout:
    workers: list[WorkerProcess]
    actor: Account
    watcher: Account
    listener: Listener  # the actor's whole audience, on workers[1]
    bystanders: list[Listener]  # on workers[2] and workers[3], in a conversation of their own
    elsewhere: str  # the bystanders' conversation


async def layout(start_workers: WorkersFactory, **settings: str) -> Layout:
    workers = await start_workers(4, **TIMERS, **settings)
    base = workers[0].url
    actor, watcher = await register(base, "actor"), await register(base, "watcher")
    for index in range(2):  # the watcher's socket is in two of the actor's rooms
        await conversation(base, watcher, [actor], f"shared-{index}")
    third, fourth = await register(base, "third"), await register(base, "fourth")
    elsewhere = await conversation(base, third, [fourth], "elsewhere")
    listener = Listener("watcher")
    await listener.connect(workers[1].url, auth={"token": watcher.token})
    await listener.wait_for("presence:snapshot")
    bystanders = []
    for account, worker in ((third, workers[2]), (fourth, workers[3])):
        socket = Listener(account.name)
        await socket.connect(worker.url, auth={"token": account.token})
        await socket.wait_for("presence:snapshot")
        bystanders.append(socket)
    # The first bystander hears the second one come online: their own traffic is over.
    await bystanders[0].wait_status(fourth.id, 1)
    return Layout(workers, actor, watcher, listener, bystanders, elsewhere)


async def received(workers: list[WorkerProcess]) -> list[float]:
    return [await scrape(w.url, RECEIVED) for w in workers]


async def act(shape: Layout) -> None:
    """The actor comes online over REST on workers[0], then changes its status: every one
    of these is heard by the watcher exactly once."""
    status, _ = await call(
        "GET", f"{shape.workers[0].url}/api/users/me", headers=shape.actor.bearer
    )
    assert status == 200
    for index in range(TRANSITIONS - 1):
        status, body = await call(
            "PUT",
            f"{shape.workers[0].url}/api/users/me/status",
            {"status": STATUSES[index % len(STATUSES)]},
            shape.actor.bearer,
        )
        assert status == 200, body
    heard = await shape.listener.wait_status(shape.actor.id, TRANSITIONS)
    assert len(heard) == TRANSITIONS
    await asyncio.sleep(0.5)  # a duplicate or a stray delivery would arrive by now
    assert len(shape.listener.statuses_of(shape.actor.id)) == TRANSITIONS


@STANDALONE_AND_CLUSTER
async def test_workers_without_an_audience_receive_none_of_its_messages(
    start_workers: WorkersFactory,
) -> None:
    shape = await layout(start_workers)
    before = await received(shape.workers)
    await act(shape)
    after = await received(shape.workers)
    got = [a - b for a, b in zip(after, before, strict=True)]
    assert got == [0, TRANSITIONS, 0, 0], got
    for worker in shape.workers:
        assert await scrape(worker.url, "presence_pubsub_channels") == 1
    # the watcher's socket, its own room and its two conversations
    assert await scrape(shape.workers[1].url, "presence_pubsub_subscribed_rooms") == 4


async def test_with_the_broadcast_queue_every_worker_receives_every_message(
    start_workers: WorkersFactory,
) -> None:
    """The same layout on the shared channel: what the routed queue saves is real, and the
    counter counts it."""
    shape = await layout(start_workers, message_queue="broadcast")

    async def settled() -> bool:
        # On one shared channel every worker receives every message: once the bystanders'
        # announcements have reached all four, the four counts are equal.
        return len(set(await received(shape.workers))) == 1

    await until(settled, 10, 0.1)
    before = await received(shape.workers)
    await act(shape)
    after = await received(shape.workers)
    got = [a - b for a, b in zip(after, before, strict=True)]
    # Each worker's own publishes are received back too on a shared channel.
    assert got == [TRANSITIONS] * 4, got


def route_keys(keys: Keys, rooms: list[str]) -> list[str]:
    return [keys.bucket(room).route(room) for room in rooms]


async def routed_workers(redis: Redis, keys: Keys, rooms: list[str]) -> set[str]:
    found: set[str] = set()
    for key in route_keys(keys, rooms):
        found.update(decoded(m) for m in await redis.smembers(key))
    return found


@STANDALONE_AND_CLUSTER
async def test_routes_follow_workers_that_stop_die_and_lose_their_routes(
    start_workers: WorkersFactory, mode_url: str, redis_mode: str
) -> None:
    """A stopped worker leaves its routes at once, a killed one when the leader forgets it;
    a worker whose routes Redis lost routes its rooms again when it finds itself forgotten,
    and hears the next transition."""
    shape = await layout(start_workers)
    prefix = shape.workers[0].env["PRESENCE_REDIS_PREFIX"]
    keys = Keys(prefix, 16 if redis_mode == "cluster" else 1)
    rooms = ["/#user:" + a.id for a in (shape.actor, shape.watcher)]
    status, body = await call(
        "GET", f"{shape.workers[0].url}/api/conversations", headers=shape.watcher.bearer
    )
    assert status == 200
    rooms += ["/#conversation:" + c["id"] for c in body["data"]]
    redis = redis_from_url(mode_url)
    try:
        bystander_rooms = ["/#conversation:" + shape.elsewhere]
        assert await routed_workers(redis, keys, rooms) == {"w1"}
        assert await routed_workers(redis, keys, bystander_rooms) == {"w2", "w3"}

        shape.workers[2].stop()
        assert await routed_workers(redis, keys, bystander_rooms) == {"w3"}

        shape.workers[3].process.send_signal(signal.SIGKILL)
        shape.workers[3].process.wait()

        async def forgotten() -> bool:
            return not await routed_workers(redis, keys, bystander_rooms)

        await until(forgotten, 20, 0.2)

        # Redis forgets everything (what a restart without persistence or a flush does):
        # w1's heartbeat finds it forgotten, and it routes its rooms again.
        # The workers' own keys go last: a worker that finds itself forgotten routes its rooms
        # again, and nothing may be deleted after that.
        every = [key async for key in redis.scan_iter(match=f"{prefix}*", count=1000)]
        for key in sorted(every, key=lambda k: "{workers}" in decoded(k)):
            await redis.delete(key)

        async def routed_again() -> bool:
            return await routed_workers(redis, keys, rooms) == {"w1"}

        await until(routed_again, 15, 0.2)
        status, _ = await call(
            "PUT",
            f"{shape.workers[0].url}/api/users/me/status",
            {"status": "dnd"},
            shape.actor.bearer,
        )
        assert status == 200
        heard = await shape.listener.wait_status(shape.actor.id, 2)
        assert heard[-1]["status"] == "dnd"
    finally:
        await redis.aclose()
