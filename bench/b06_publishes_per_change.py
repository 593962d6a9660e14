"""B6: Redis publishes per status change, for a subject in R conversations: one emit to the
list of rooms, so one publish, whatever R; and a watcher sharing all R conversations hears the
change once."""

from __future__ import annotations

import asyncio
import time

from bench.harness import Account, Stack
from bench.report import Result
from tests.support.sio import Listener

KEY = "b06"
TITLE = "Redis publishes per status change"
QUESTION = (
    "A user in R conversations (each with another member, and all with one watcher) connects "
    "a socket on worker A, then disconnects (grace 0.3 s). The watcher listens on worker B. "
    "Every `PUBLISH` is recorded (`MONITOR`). Target: 1 publish per transition whatever R, no "
    "publish for the replies to one socket (`authenticated`, `presence:snapshot`), and the "
    "watcher hears each transition once."
)
FANOUTS = (1, 10, 100)


async def _heard(listener: Listener, user_id: str, count: int, timeout_s: float = 15.0) -> int:
    deadline = time.monotonic() + timeout_s

    def about() -> int:
        return sum(
            1
            for h in listener.heard
            if h.event == "user:status"
            and isinstance(h.data, dict)
            and h.data.get("userId") == user_id
        )

    while about() < count and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.5)  # anything more would be a duplicate
    return about()


async def _cycles(
    stack: Stack, url_a: str, url_b: str, subject: Account, watcher: Account, cycles: int
) -> tuple[list[float], list[float], list[float]]:
    """Per connect/disconnect cycle: status publishes per transition, other publishes, and
    what the watcher heard per transition."""
    publishes: list[float] = []
    others: list[float] = []
    heard: list[float] = []
    listener = Listener("watcher")
    await listener.connect(url_b, auth={"token": watcher.token}, transports=["websocket"])
    try:
        for index in range(cycles):
            with stack.monitor() as log:
                actor = Listener("subject")
                await actor.connect(url_a, auth={"token": subject.token}, transports=["websocket"])
                await _heard(listener, subject.id, 2 * index + 1)
                await actor.client.disconnect()
                got = await _heard(listener, subject.id, 2 * index + 2)
            publishes.append(log.status_publishes(subject.id) / 2)
            others.append(
                sum(1 for m in log.published() if m.get("event") not in (None, "user:status"))
            )
            heard.append((got - 2 * index) / 2)
    finally:
        await listener.client.disconnect()
    return publishes, others, heard


def run(stack: Stack, quick: bool) -> Result:
    cycles = 2 if quick else 5
    result = Result.begin(
        KEY,
        TITLE,
        QUESTION,
        quick,
        settings={
            "workers": 2,
            "fanouts": list(FANOUTS),
            "cycles_per_fanout": cycles,
            "offline_grace_s": 0.3,
        },
    )
    a, b = stack.start_workers(2, offline_grace_s=0.3)
    for fanout in FANOUTS:
        subject, watcher, *others = stack.seed_users(fanout + 2, prefix=f"r{fanout}-")
        for other in others:
            stack.conversation([subject.id, other.id, watcher.id])
        publishes, others_published, heard = asyncio.run(
            _cycles(stack, a.url, b.url, subject, watcher, cycles)
        )
        result.repetitions.append(
            {"fanout": fanout, "publishes_per_transition": publishes, "heard_per_transition": heard}
        )
        result.metric(
            f"R = {fanout}: publishes per transition",
            "count",
            publishes,
            kind="count",
            target="1",
            met=all(p == 1 for p in publishes),
            gate=True,
        )
        result.metric(
            f"R = {fanout}: other publishes per connect/disconnect",
            "count",
            others_published,
            kind="count",
            target="0 (replies stay local)",
            met=all(o == 0 for o in others_published),
            gate=True,
        )
        result.metric(
            f"R = {fanout}: watcher hears per transition",
            "count",
            heard,
            kind="count",
            target="1",
            met=all(h == 1 for h in heard),
            gate=True,
        )
    return result
