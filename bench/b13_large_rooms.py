"""B13: what a transition costs in a large conversation as it grows (SPEC §11): the count is
kept incrementally and the room is not pushed to, so the cost per transition must not follow
the number of members."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from bench.b15_directory_import import _call
from bench.harness import Account, Stack, Worker, open_socket
from bench.report import Result
from tests.support.sio import Listener

KEY = "b13"
TITLE = "Transitions in large conversations"
QUESTION = (
    "Two workers, `PRESENCE_ROOM_FANOUT_LIMIT` 500 (the default). A subject belongs to one "
    "conversation of N members (1 000, 10 000, 100 000, imported through the directory API); "
    "a watcher, another member on the other worker, subscribed to it and sits in the room. The "
    "subject's socket connects and closes (grace 0), sizes interleaved. Measured per "
    "transition: both workers' CPU time, Redis commands, and the time until the watcher hears "
    "`user:status`. Target: at 100 000 members the CPU per transition within 1.5× of 1 000 "
    "(flat), and the room never pushed the transition (only its count)."
)
SIZES = (1000, 10_000, 100_000)


async def _transitions(
    act: Worker, subject: Account, watcher: Listener, rounds: int
) -> list[float]:
    """Heard delays (s) of ``rounds`` online + offline pairs of the subject."""
    delays = []
    for _ in range(rounds):
        for online in (True, False):
            began = time.time()
            if online:
                actor = Listener("subject")
                await actor.connect(
                    act.url, auth={"token": subject.token}, transports=["websocket"]
                )
            else:
                await actor.client.disconnect()
            while not any(
                h.event == "user:status"
                and h.at >= began
                and h.data.get("userId") == subject.id
                and h.data.get("isOnline") is online
                for h in watcher.heard
            ):
                if time.time() - began > 15:
                    raise RuntimeError(f"the watcher never heard {subject.id} online={online}")
                await asyncio.sleep(0.005)
            heard = next(
                h.at for h in watcher.heard
                if h.event == "user:status" and h.at >= began
                and h.data.get("userId") == subject.id and h.data.get("isOnline") is online
            )  # fmt: skip
            delays.append(heard - began)
            await asyncio.sleep(0.05)
    return delays


def _commands(stack: Stack) -> dict[str, int]:
    return stack.commandstats()


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def run(stack: Stack, quick: bool) -> Result:
    rounds = 10 if quick else 30
    repetitions = 1 if quick else 2
    result = Result.begin(
        KEY, TITLE, QUESTION, quick, {"sizes": list(SIZES), "rounds": rounds,
                                      "repetitions": repetitions}
    )  # fmt: skip
    workers = stack.start_workers(2, offline_grace_s=0, service_rate_limit=1000)
    token = stack.service_token("b13", "directory:write")
    accounts = stack.seed_users(2 * len(SIZES), prefix="b13")
    pairs: dict[int, tuple[Account, Account]] = {}
    for index, size in enumerate(SIZES):
        subject, watcher = accounts[2 * index], accounts[2 * index + 1]
        members = [subject.id, watcher.id, *(f"b13-{size}-{i}" for i in range(size - 2))]
        _call(workers[0], token, "PUT", f"/api/service/conversations/b13-{size}",
              {"title": f"{size} members", "memberIds": members})  # fmt: skip
        pairs[size] = (subject, watcher)

    async def measure() -> None:
        watchers: dict[int, Listener] = {}
        for size, (subject, watcher) in pairs.items():
            listener = await open_socket(workers[1].url, watcher, f"watcher-{size}", 120)
            await listener.client.emit("presence:subscribe", {"ids": [subject.id]})
            await listener.wait_for("presence:subscribed", timeout_s=30)
            watchers[size] = listener
            await _transitions(workers[0], subject, listener, 1)  # warm: the room is counted
        for listener in watchers.values():
            # The first count of each room (read from every member's live state) is sent
            # before any measurement starts: it is once per room and COUNT_TTL_S, not per
            # transition.
            await listener.wait_for("presence:count", timeout_s=120)
        try:
            for repetition in range(repetitions):
                order = SIZES if repetition % 2 == 0 else SIZES[::-1]
                for size in order:
                    subject, _ = pairs[size]
                    cpu = sum(w.cpu_seconds() for w in workers)
                    commands = _commands(stack)
                    delays = await _transitions(workers[0], subject, watchers[size], rounds)
                    transitions = 2 * rounds
                    spent = _delta(_commands(stack), commands)
                    result.repetitions.append({
                        "repetition": repetition, "size": size,
                        "cpu_ms": (sum(w.cpu_seconds() for w in workers) - cpu) * 1000
                        / transitions,
                        "redis_commands": sum(spent.values()) / transitions,
                        "commands": spent,
                        "heard_ms_p50": statistics.median(delays) * 1000,
                    })  # fmt: skip
            for size, listener in watchers.items():
                counts = listener.events("presence:count")
                subject, _ = pairs[size]
                pushed: list[Any] = [h for h in listener.heard if h.event == "presence:state"]
                result.notes.append(
                    f"{size} members: {len(counts)} presence:count heard by the watcher, "
                    f"last {counts[-1] if counts else None}; presence:state {len(pushed)}"
                )
        finally:
            for listener in watchers.values():
                await listener.close()

    asyncio.run(measure())
    for size in SIZES:
        reps = [r for r in result.repetitions if r["size"] == size]
        result.metric(f"CPU per transition, {size} members", "ms", [r["cpu_ms"] for r in reps])
        result.metric(f"Redis commands per transition, {size} members", "1",
                      [r["redis_commands"] for r in reps])  # fmt: skip
        result.metric(f"heard after, p50, {size} members", "ms",
                      [r["heard_ms_p50"] for r in reps])  # fmt: skip
    small = [r["cpu_ms"] for r in result.repetitions if r["size"] == SIZES[0]]
    large = [r["cpu_ms"] for r in result.repetitions if r["size"] == SIZES[-1]]
    ratio = statistics.median(large) / statistics.median(small)
    result.metric(f"CPU per transition, {SIZES[-1]} / {SIZES[0]} members", "×", [ratio],
                  target="≤ 1.5", met=ratio <= 1.5)  # fmt: skip
    return result
