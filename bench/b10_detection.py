"""B10: how long until the others hear that a subject went offline: after its last socket
closes, after its worker is killed, and after a REST-only subject goes quiet."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import aiohttp

from bench.harness import Account, Stack, Worker
from bench.report import Result
from tests.support.sio import Listener

KEY = "b10"
TITLE = "Offline detection"
QUESTION = (
    "A watcher on another worker shares a conversation with the subject and times the "
    "`user:status` offline event. (a) The subject's last socket disconnects: SPEC §9 bound "
    "grace + 1 s. (b) The subject's worker is killed with SIGKILL: bound worker TTL + "
    "maintenance interval + grace (60 s with the defaults; the original took 5 min 15 s). (c) A "
    "REST-only subject stops: bound offline threshold + maintenance interval after its last "
    "request."
)


async def _offline_heard(listener: Listener, user_id: str, since: float, limit_s: float) -> float:
    """Seconds from ``since`` until the watcher heard the subject go offline."""
    deadline = time.time() + limit_s
    while time.time() < deadline:
        for h in listener.heard:
            if (
                h.event == "user:status"
                and h.at >= since
                and isinstance(h.data, dict)
                and h.data.get("userId") == user_id
                and h.data.get("isOnline") is False
            ):
                return h.at - since
        await asyncio.sleep(0.01)
    return float("inf")


async def _online(listener: Listener, user_id: str, since: float) -> None:
    deadline = time.time() + 15
    while time.time() < deadline:
        if any(
            h.event == "user:status"
            and h.at >= since
            and isinstance(h.data, dict)
            and h.data.get("userId") == user_id
            and h.data.get("isOnline") is True
            for h in listener.heard
        ):
            return
        await asyncio.sleep(0.01)
    raise RuntimeError("the subject never came online")


async def _socket_close(
    watch: Worker, act: Worker, watcher: Account, subject: Account, samples: int, grace: float
) -> list[float]:
    listener = Listener("watcher")
    await listener.connect(watch.url, auth={"token": watcher.token}, transports=["websocket"])
    delays = []
    try:
        for _ in range(samples):
            began = time.time()
            actor = Listener("subject")
            await actor.connect(act.url, auth={"token": subject.token}, transports=["websocket"])
            await _online(listener, subject.id, began)
            closed = time.time()
            await actor.client.disconnect()
            delays.append(await _offline_heard(listener, subject.id, closed, grace + 10))
            await asyncio.sleep(0.2)
    finally:
        await listener.client.disconnect()
    return delays


async def _rest_quiet(
    watch: Worker, act: Worker, watcher: Account, subject: Account, samples: int, bound: float
) -> list[float]:
    listener = Listener("watcher")
    await listener.connect(watch.url, auth={"token": watcher.token}, transports=["websocket"])
    delays = []
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(samples):
                last = time.time()
                async with session.post(
                    act.url + "/api/presence/heartbeat",
                    headers={"Authorization": f"Bearer {subject.token}"},
                ) as resp:
                    assert resp.status == 200
                delays.append(await _offline_heard(listener, subject.id, last, bound + 10))
    finally:
        await listener.client.disconnect()
    return delays


def _crash(
    stack: Stack,
    settings: dict[str, Any],
    watcher: Account,
    subject: Account,
    samples: int,
    bound: float,
) -> list[float]:
    delays = []
    for index in range(samples):
        stack.stop_workers()
        stack.redis().flushall()
        # The watcher's worker first: it holds the maintenance lease, so the leader survives.
        watch = stack.start_worker(f"watch-{index}", **settings)
        stack.wait_ready(watch)
        victim = stack.start_worker(f"victim-{index}", **settings)
        stack.wait_ready(victim)

        async def one(watch: Worker = watch, victim: Worker = victim) -> float:
            listener = Listener("watcher")
            await listener.connect(
                watch.url, auth={"token": watcher.token}, transports=["websocket"]
            )
            try:
                began = time.time()
                actor = Listener("subject")
                await actor.connect(
                    victim.url, auth={"token": subject.token}, transports=["websocket"]
                )
                await _online(listener, subject.id, began)
                killed = time.time()
                victim.stop(kill=True)
                await actor.client.disconnect()  # its HTTP session; the server is gone
                return await _offline_heard(listener, subject.id, killed, bound + 30)
            finally:
                await listener.client.disconnect()

        delays.append(asyncio.run(one()))
    return delays


def _summary(result: Result, label: str, delays: list[float], bound: float) -> None:
    result.metric(f"{label}: median", "s", [statistics.median(delays)])
    result.metric(
        f"{label}: each sample",
        "s",
        delays,
        target=f"≤ {bound:g} s",
        met=max(delays) <= bound,
        gate=True,
    )


def run(stack: Stack, quick: bool) -> Result:
    grace = 1.0
    samples = 3 if quick else 10
    quiet: dict[str, Any] = {
        "throttle_interval_s": 1.0,
        "offline_threshold_s": 2.0,
        "maintenance_interval_s": 0.5,
    }
    crash: dict[str, Any] = (
        {
            "worker_ttl_s": 1.5,
            "leader_ttl_s": 1.5,
            "maintenance_interval_s": 0.5,
            "offline_grace_s": 0.5,
        }
        if quick
        else {}  # the defaults: worker TTL 15 s, maintenance 15 s, grace 5 s
    )
    crash_bound = (1.5 + 0.5 + 0.5 + 1.0) if quick else 60.0
    result = Result.begin(
        KEY,
        TITLE,
        QUESTION,
        quick,
        settings={
            "grace_s": grace,
            "quiet_timers": quiet,
            "crash_timers": crash or "defaults (15 s / 15 s / 5 s)",
            "samples": samples,
        },
    )
    watcher, subject = stack.seed_users(2)
    stack.conversation([watcher.id, subject.id])

    a, b = stack.start_workers(2, offline_grace_s=grace)
    closes = asyncio.run(_socket_close(a, b, watcher, subject, samples, grace))
    _summary(result, "(a) last socket closed → offline heard", closes, grace + 1)

    # Each phase starts from an empty Redis: phase (a)'s 60 s throttle windows would otherwise
    # outlive the shorter timers of the next phase.
    stack.stop_workers()
    stack.redis().flushall()
    a, b = stack.start_workers(2, **quiet)
    # The sweep's decision, then its announcement's delivery.
    bound = quiet["offline_threshold_s"] + quiet["maintenance_interval_s"] + 0.25
    quiets = asyncio.run(_rest_quiet(a, b, watcher, subject, samples, bound))
    _summary(result, "(c) REST-only subject quiet → offline heard", quiets, bound)

    crashes = _crash(stack, crash, watcher, subject, 2, crash_bound)
    _summary(result, "(b) worker killed → offline heard", crashes, crash_bound)
    result.repetitions.append({"socket_close": closes, "rest_quiet": quiets, "crash": crashes})
    return result
