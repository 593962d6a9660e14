"""B11: fan-out cost per worker as workers are added, the broadcast message queue and the routed
one side by side in the same run; and the unit costs ``docs/CAPACITY.md`` is computed from."""

from __future__ import annotations

import asyncio
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from bench.harness import LOAD_CPU, WORKER_CPU, Account, Stack, Worker, open_socket, taskset
from bench.report import Result
from tests.support.sio import Listener

KEY = "b11"
TITLE = "Fan-out cost per worker, routed vs broadcast queue"
QUESTION = (
    "1, 2 and 4 workers. Actors change their status over REST on the first worker; each "
    "actor's only listener (a watcher sharing one conversation with it) is on the last worker; "
    "every worker also holds bystander sockets in conversations of their own. For each "
    "transition: messages received (`presence_pubsub_received_total`) and CPU seconds of "
    "every worker, per 1 000 transitions, with `PRESENCE_MESSAGE_QUEUE=broadcast` and "
    "`routed` interleaved. Targets: a worker without a listener receives 0 of those messages "
    "(routed); the messages received cluster-wide do not grow with the number of workers. "
    "The same runs give the unit costs of a transition, a connect and a REST call inside its "
    "window (CPU, Redis commands and bytes, database writes) and `redis-benchmark` gives what "
    "one Redis core serves."
)
WORKER_COUNTS = (1, 2, 4)
QUEUES = ("broadcast", "routed")
ACTORS = 20
BYSTANDERS_PER_WORKER = 40
STATUSES = ("away", "dnd", "online")
RECEIVED = "presence_pubsub_received_total"
REQUESTS_PER_ACTOR = 50


@dataclass
class Accounts:
    actors: list[Account]
    watchers: list[Account]
    bystanders: list[Account]


def _seed(stack: Stack) -> Accounts:
    actors = stack.seed_users(ACTORS, prefix="actor-")
    watchers = stack.seed_users(ACTORS, prefix="watcher-")
    for actor, watcher in zip(actors, watchers, strict=True):
        stack.conversation([actor.id, watcher.id])
    bystanders = stack.seed_users(BYSTANDERS_PER_WORKER * max(WORKER_COUNTS), prefix="by-")
    for start in range(0, len(bystanders), 2):
        stack.conversation([b.id for b in bystanders[start : start + 2]])
    return Accounts(actors, watchers, bystanders)


@dataclass
class Reading:
    cpu: list[float]
    received: list[float]
    commands: int
    net_bytes: int
    db_writes: int

    @classmethod
    def take(cls, stack: Stack, workers: list[Worker]) -> Reading:
        stats = stack.redis().info("stats")
        return cls(
            cpu=[w.cpu_seconds() for w in workers],
            received=[w.metric(RECEIVED) for w in workers],
            commands=sum(stack.commandstats().values()),
            net_bytes=int(stats["total_net_input_bytes"]) + int(stats["total_net_output_bytes"]),
            db_writes=stack.database_updates(),
        )

    def since(self, before: Reading) -> dict[str, Any]:
        return {
            "cpu_s": [a - b for a, b in zip(self.cpu, before.cpu, strict=True)],
            "received": [a - b for a, b in zip(self.received, before.received, strict=True)],
            "redis_commands": self.commands - before.commands,
            "redis_bytes": self.net_bytes - before.net_bytes,
            "db_writes": self.db_writes - before.db_writes,
        }


async def _act(url: str, actor: Account, count: int, session: aiohttp.ClientSession) -> None:
    headers = {"Authorization": f"Bearer {actor.token}"}
    for index in range(count):
        body = {"status": STATUSES[index % len(STATUSES)]}
        async with session.put(f"{url}/api/users/me/status", json=body, headers=headers) as resp:
            assert resp.status == 200, await resp.text()


async def _request(url: str, actor: Account, count: int, session: aiohttp.ClientSession) -> None:
    headers = {"Authorization": f"Bearer {actor.token}"}
    for _ in range(count):
        # The heartbeat endpoint does nothing but the activity (B1 and B2 measure it too).
        async with session.post(f"{url}/api/presence/heartbeat", headers=headers) as resp:
            assert resp.status == 200, await resp.text()


async def _config(
    stack: Stack, workers: list[Worker], accounts: Accounts, transitions: int
) -> dict[str, Any]:
    """Bystanders connect everywhere, watchers on the last worker; then the actors change
    status on the first worker until ``transitions`` changes were heard."""
    sockets: list[Listener] = []
    try:
        before = Reading.take(stack, workers)
        for index, worker in enumerate(workers):
            start = index * BYSTANDERS_PER_WORKER
            for account in accounts.bystanders[start : start + BYSTANDERS_PER_WORKER]:
                sockets.append(await open_socket(worker.url, account, "bystander"))
        connected = Reading.take(stack, workers)
        connects = len(sockets)
        watchers = [await open_socket(workers[-1].url, w, "watcher") for w in accounts.watchers]
        sockets.extend(watchers)
        await asyncio.sleep(1.0)  # every connect's transition is announced and over
        per_actor = transitions // ACTORS
        start_heard = sum(
            len(w.statuses_of(a.id)) for w, a in zip(watchers, accounts.actors, strict=True)
        )
        quiet = Reading.take(stack, workers)
        started = time.monotonic()
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(
                *(_act(workers[0].url, a, per_actor, session) for a in accounts.actors)
            )
        deadline = time.monotonic() + 60
        heard = 0
        while time.monotonic() < deadline:
            heard = (
                sum(
                    len(w.statuses_of(a.id)) for w, a in zip(watchers, accounts.actors, strict=True)
                )
                - start_heard
            )
            if heard >= per_actor * ACTORS:
                break
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - started
        await asyncio.sleep(0.5)
        done = Reading.take(stack, workers)
        # REST activity of subjects already inside their window (the common case).
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(
                *(_request(workers[0].url, a, REQUESTS_PER_ACTOR, session) for a in accounts.actors)
            )
        await asyncio.sleep(0.5)
        requested = Reading.take(stack, workers)
        return {
            "connects": connects,
            "connect": connected.since(before),
            "transitions": heard,
            "transition_seconds": elapsed,
            "transition": done.since(quiet),
            "requests": REQUESTS_PER_ACTOR * ACTORS,
            "request": requested.since(done),
        }
    finally:
        for socket in sockets:
            await socket.client.disconnect()


def _redis_capacity(stack: Stack) -> float:
    """GET and SET per second one Redis core serves (``redis-benchmark``, 50 clients, no
    pipelining), with the benchmark on the other core."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        raise RuntimeError("redis-benchmark is not installed (Debian: redis-tools)")
    out = subprocess.run(
        [*taskset(WORKER_CPU), binary, "-p", str(stack.redis_server.port), "-q", "-n", "200000",
         "-c", "50", "-t", "get,set", "--csv"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    rates = []
    for line in out.splitlines():
        cells = [c.strip('"') for c in line.split(",")]
        if len(cells) >= 2 and cells[0] in ("GET", "SET"):
            rates.append(float(cells[1]))
    return statistics.mean(rates)


def run(stack: Stack, quick: bool) -> Result:
    reps = 1 if quick else 2
    transitions = 300 if quick else 1000
    result = Result.begin(
        KEY,
        TITLE,
        QUESTION,
        quick,
        settings={
            "worker_counts": list(WORKER_COUNTS),
            "queues": list(QUEUES),
            "repetitions": reps,
            "transitions_per_run": transitions,
            "actors": ACTORS,
            "bystanders_per_worker": BYSTANDERS_PER_WORKER,
            "worker_cpu": WORKER_CPU,
            "load_cpu": LOAD_CPU,
        },
    )
    accounts = _seed(stack)
    for rep in range(reps):
        for count in WORKER_COUNTS:
            # Interleaved, the order flipped every repetition: drift hits both queues alike.
            for queue in QUEUES if rep % 2 == 0 else tuple(reversed(QUEUES)):
                workers = stack.start_workers(count, message_queue=queue)
                try:
                    run_result = asyncio.run(_config(stack, workers, accounts, transitions))
                finally:
                    stack.stop_workers()
                result.repetitions.append(
                    {"workers": count, "queue": queue, "rep": rep, **run_result}
                )
    _report(result)
    result.repetitions.append({"redis_get_set_per_second": _redis_capacity(stack)})
    result.metric(
        "Redis GET/SET per second on one core (redis-benchmark, 50 clients)",
        "commands/s",
        [result.repetitions[-1]["redis_get_set_per_second"]],
    )
    return result


def _runs(result: Result, count: int, queue: str) -> list[dict[str, Any]]:
    return [r for r in result.repetitions if r.get("workers") == count and r.get("queue") == queue]


def _per_1000(run: dict[str, Any], values: list[float]) -> list[float]:
    return [1000 * v / max(1, run["transitions"]) for v in values]


def _report(result: Result) -> None:
    totals: dict[tuple[int, str], list[float]] = {}
    for count in WORKER_COUNTS:
        for queue in QUEUES:
            runs = _runs(result, count, queue)
            label = f"{count} worker{'s' if count > 1 else ''}, {queue}"
            received = [_per_1000(r, r["transition"]["received"]) for r in runs]
            cpu = [_per_1000(r, r["transition"]["cpu_s"]) for r in runs]
            totals[(count, queue)] = [sum(x) for x in received]
            result.metric(
                f"{label}: messages received, all workers, per 1000 transitions",
                "messages", totals[(count, queue)],
            )  # fmt: skip
            if count > 1:
                # Workers 0 .. count-2 hold no listener of the actors.
                idle = [sum(x[:-1]) for x in received]
                routed = queue == "routed"
                result.metric(
                    f"{label}: received by workers without a listener, per 1000 transitions",
                    "messages", idle, kind="count" if routed else "absolute",
                    target="0" if routed else "", met=all(i == 0 for i in idle) if routed else None,
                    gate=routed,
                )  # fmt: skip
                middle = [1000 * statistics.mean(x[1:-1]) for x in cpu] if count > 2 else []
                if middle:
                    result.metric(
                        f"{label}: CPU of a worker with bystanders only, per 1000 transitions",
                        "ms", middle,
                    )  # fmt: skip
            result.metric(
                f"{label}: CPU of the listeners' worker, per 1000 transitions",
                "ms", [1000 * x[-1] for x in cpu],
            )  # fmt: skip
            result.metric(
                f"{label}: CPU of the actors' worker, per 1000 transitions",
                "ms", [1000 * x[0] for x in cpu],
            )  # fmt: skip
            result.metric(
                f"{label}: CPU of all workers, per 1000 transitions",
                "ms", [1000 * sum(x) for x in cpu],
            )  # fmt: skip
    for queue in QUEUES:
        growth = [
            four / two
            for four, two in zip(totals[(4, queue)], totals[(2, queue)], strict=True)
            if two
        ]
        routed = queue == "routed"
        result.metric(
            f"{queue}: messages received cluster-wide, 4 workers ÷ 2 workers",
            "ratio", growth, kind="ratio",
            target="1 (independent of the number of workers)" if routed else "",
            met=all(abs(g - 1) < 0.02 for g in growth) if routed else None, gate=routed,
        )  # fmt: skip
    _unit_costs(result)


def _unit_costs(result: Result) -> None:
    """Per transition, per REST call and per connect, from the routed runs on two workers
    (the actors' and the listeners')."""
    runs = _runs(result, 2, "routed")
    # (name, unit, phase, count of that phase, the cost read from the phase's deltas)
    table: list[tuple[str, str, str, str, Callable[[dict[str, Any]], float]]] = [
        ("CPU per transition on the deciding worker (REST status change)", "ms",
         "transition", "transitions", lambda d: 1000 * d["cpu_s"][0]),
        ("CPU per delivered event on the listeners' worker", "ms",
         "transition", "transitions", lambda d: 1000 * d["cpu_s"][1]),
        ("Redis commands per transition", "commands",
         "transition", "transitions", lambda d: d["redis_commands"]),
        ("Redis bytes per transition (in + out)", "bytes",
         "transition", "transitions", lambda d: d["redis_bytes"]),
        ("database writes per transition", "writes",
         "transition", "transitions", lambda d: d["db_writes"]),
        ("Redis commands per REST call (within the window, background included)", "commands",
         "request", "requests", lambda d: d["redis_commands"]),
        ("Redis bytes per REST call (in + out, background included)", "bytes",
         "request", "requests", lambda d: d["redis_bytes"]),
        ("database writes per REST call (within the window)", "writes",
         "request", "requests", lambda d: d["db_writes"]),
        ("CPU per connect (all workers)", "ms",
         "connect", "connects", lambda d: 1000 * sum(d["cpu_s"])),
        ("Redis commands per connect", "commands",
         "connect", "connects", lambda d: d["redis_commands"]),
        ("Redis bytes per connect (in + out)", "bytes",
         "connect", "connects", lambda d: d["redis_bytes"]),
        ("database writes per connect", "writes",
         "connect", "connects", lambda d: d["db_writes"]),
    ]  # fmt: skip
    for name, unit, phase, count, cost in table:
        result.metric(f"unit: {name}", unit, [cost(r[phase]) / r[count] for r in runs])
