"""B6: publishes and deliveries per status change, for a subject in R conversations, with the
routed message queue and the broadcast one side by side: one publish per worker that has an
audience for the change (never one per room), and no message at a worker without one."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.harness import Account, Stack, Worker, open_socket
from bench.report import Result
from tests.support.sio import Listener

KEY = "b06"
TITLE = "Publishes and deliveries per status change"
QUESTION = (
    "Four workers. A user in R conversations connects a socket on worker A, then disconnects "
    "(grace 0.3 s); a watcher sharing all R conversations listens on worker B (and, in the "
    "second audience, a second watcher on worker C); workers C and D hold sockets in rooms of "
    "their own. Every `PUBLISH` is recorded (`MONITOR`) and every worker's "
    "`presence_pubsub_received_total` read. Targets with the routed queue: one publish per "
    "worker with an audience, whatever R; one route read (`SUNION`) per transition; no message "
    "at a worker without an audience; no publish for the replies to one socket; each watcher "
    "hears each transition once. The broadcast queue (`PRESENCE_MESSAGE_QUEUE=broadcast`) runs "
    "the same cycles for comparison: one publish, received by every worker."
)
FANOUTS = (1, 10, 100)
QUICK_FANOUTS = (1, 100)  # CI: the bounds of the range
WORKERS = 4
QUEUES = ("routed", "broadcast")
RECEIVED = "presence_pubsub_received_total"
DECIDED = "presence_status_changes_total"


async def _heard(listener: Listener, user_id: str, count: int, timeout_s: float = 15.0) -> int:
    deadline = time.monotonic() + timeout_s
    while len(listener.statuses_of(user_id)) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.5)  # anything more would be a duplicate
    return len(listener.statuses_of(user_id))


async def _cycles(
    stack: Stack,
    workers: list[Worker],
    subject: Account,
    watchers: list[tuple[Account, Worker]],
    bystanders: list[tuple[Account, Worker]],
    cycles: int,
) -> list[dict[str, Any]]:
    """Per connect/disconnect cycle (two transitions): what was published and where it went."""
    ears = [await open_socket(w.url, a, f"watcher-{w.name}") for a, w in watchers]
    others = [await open_socket(w.url, a, f"bystander-{w.name}") for a, w in bystanders]
    await asyncio.sleep(1.0)  # the bystanders' own transitions are over
    samples = []
    try:
        for index in range(cycles):
            before = [w.metric(RECEIVED) for w in workers]
            decided_before = [w.metric(DECIDED) for w in workers]
            with stack.monitor() as log:
                actor = await open_socket(workers[0].url, subject, "subject")
                for ear in ears:
                    await _heard(ear, subject.id, 2 * index + 1)
                await actor.client.disconnect()
                heard = [await _heard(ear, subject.id, 2 * index + 2) for ear in ears]
            after = [w.metric(RECEIVED) for w in workers]
            # Who decided each transition: the subject's worker, or (for an offline) the
            # leader finishing the grace. A decider with an audience serves it locally.
            decided = [w.metric(DECIDED) - b for w, b in zip(workers, decided_before, strict=True)]
            names = {w.name for _, w in watchers}
            audience = [index for index, w in enumerate(workers) if w.name in names]
            addressed = sum(
                count * (len(audience) - (1 if index in audience else 0))
                for index, count in enumerate(decided)
            )
            status = log.status_publishes(subject.id)
            samples.append(
                {
                    "publishes_per_transition": status / 2,
                    "audience_workers_addressed_per_transition": addressed / 2,
                    "channels_per_transition": len(log.status_channels(subject.id)) / 2,
                    "route_reads_per_transition": log.count("sunion") / 2,
                    "other_publishes": sum(
                        1 for m in log.published() if m.get("event") not in (None, "user:status")
                    ),
                    "received_per_transition": [
                        (a - b) / 2 for a, b in zip(after, before, strict=True)
                    ],
                    "heard_per_transition": [(h - 2 * index) / 2 for h in heard],
                }
            )
    finally:
        for listener in (*ears, *others):
            await listener.client.disconnect()
    return samples


def run(stack: Stack, quick: bool) -> Result:
    cycles = 2 if quick else 5
    fanouts = QUICK_FANOUTS if quick else FANOUTS
    result = Result.begin(
        KEY,
        TITLE,
        QUESTION,
        quick,
        settings={
            "workers": WORKERS,
            "fanouts": list(fanouts),
            "cycles_per_fanout": cycles,
            "offline_grace_s": 0.3,
            "queues": list(QUEUES),
        },
    )
    for queue in QUEUES:
        workers = stack.start_workers(WORKERS, offline_grace_s=0.3, message_queue=queue)
        _, b, c, d = workers
        third, fourth = stack.seed_users(2, prefix=f"{queue}-bystander-")
        stack.conversation([third.id, fourth.id])
        for fanout in fanouts:
            for audience in (1, 2):
                subject, watcher, second, *others = stack.seed_users(
                    fanout + 3, prefix=f"{queue}-r{fanout}-a{audience}-"
                )
                ear_accounts = [watcher, second][:audience]
                for other in others:  # R conversations, each with a member of its own
                    stack.conversation([subject.id, *(e.id for e in ear_accounts), other.id])
                watchers = list(zip(ear_accounts, (b, c)[:audience], strict=True))
                samples = asyncio.run(
                    _cycles(stack, workers, subject, watchers, [(third, c), (fourth, d)], cycles)
                )
                _report(result, queue, fanout, audience, samples)
        stack.stop_workers()
    return result


def _report(
    result: Result, queue: str, fanout: int, audience: int, samples: list[dict[str, Any]]
) -> None:
    label = f"{queue}, R = {fanout}, audience on {audience} worker{'s' if audience > 1 else ''}"
    result.repetitions.append(
        {"queue": queue, "fanout": fanout, "audience_workers": audience, "samples": samples}
    )
    publishes = [s["publishes_per_transition"] for s in samples]
    if queue == "routed":
        met = all(
            s["publishes_per_transition"] == s["audience_workers_addressed_per_transition"]
            for s in samples
        )
        target = "one per worker with an audience, but the deciding one"
    else:
        met, target = all(p == 1 for p in publishes), "1"
    result.metric(
        f"{label}: publishes per transition", "count", publishes, kind="count",
        target=target, met=met, gate=True,
    )  # fmt: skip
    # Workers B (and C) hold the audience; A decides the change, D holds only bystanders.
    receivers = [sum(1 for r in s["received_per_transition"] if r > 0) for s in samples]
    idle = [
        sum(s["received_per_transition"]) - sum(s["received_per_transition"][1 : 1 + audience])
        for s in samples
    ]
    if queue == "routed":
        result.metric(
            f"{label}: route reads per transition",
            "count",
            [s["route_reads_per_transition"] for s in samples],
            kind="count",
            target="1",
            met=all(s["route_reads_per_transition"] == 1 for s in samples),
            gate=True,
        )
        result.metric(
            f"{label}: messages received by workers without an audience",
            "count",
            idle,
            kind="count",
            target="0",
            met=all(i == 0 for i in idle),
            gate=True,
        )
    if queue == "broadcast":
        result.metric(
            f"{label}: workers receiving each transition",
            "count",
            receivers,
            kind="count",
            target=f"{WORKERS} (every worker)",
            met=all(r == WORKERS for r in receivers),
            gate=True,
        )
    others = [s["other_publishes"] for s in samples]
    result.metric(
        f"{label}: other publishes per connect/disconnect",
        "count",
        others,
        kind="count",
        target="0 (replies stay local)",
        met=all(o == 0 for o in others),
        gate=True,
    )
    heard = [h for s in samples for h in s["heard_per_transition"]]
    result.metric(
        f"{label}: each watcher hears per transition",
        "count",
        heard,
        kind="count",
        target="1",
        met=all(h == 1 for h in heard),
        gate=True,
    )
