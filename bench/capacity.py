"""The capacity model: ``docs/CAPACITY.md`` recomputed from the measured unit costs in
``docs/bench/*.json``, so the model cannot drift from the measurements.

    python -m bench.capacity           # write docs/CAPACITY.md
    python -m bench.capacity --check   # fail when docs/CAPACITY.md is not what the numbers give

Measured figures come from the benchmarks (named beside each); assumptions are the constants
below, stated in the document. Change an assumption here, never a number in the document.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from typing import Any

from bench.report import DOCS, RESULTS

OUTPUT = DOCS / "CAPACITY.md"
SCALES = (100_000, 1_000_000, 10_000_000)

# -- assumptions (each one is printed in the document) -------------------------------------------
TABS_PER_USER = 1.5  # connections per online user (phones, a laptop tab or two)
REQUESTS_PER_USER_HOUR = 120  # REST calls through the activity middleware
TRANSITIONS_PER_USER_HOUR = 6  # online/offline and status changes announced
CONNECTS_PER_USER_HOUR = 2  # new sockets: page loads, network changes, worker restarts
AUDIENCE_SOCKETS = 30  # sockets hearing one transition (20 watchers, 1.5 tabs each)
WORKER_CPU_BUDGET = 0.6  # of one core per worker process, the rest is headroom for storms
CONNECTIONS_PER_WORKER = 20_000  # PRESENCE_MAX_CONNECTIONS
REDIS_SHARD_BUDGET = 0.5  # of the commands/s one Redis core served in B11
REDIS_BUCKETS = 16  # PRESENCE_REDIS_BUCKETS in Cluster mode
MONGO_WRITES_PER_SECOND = 10_000  # one replica-set primary, small updates by _id: to be measured
THROTTLE_WINDOW_S = 60  # PRESENCE_THROTTLE_INTERVAL_S


@dataclass(frozen=True)
class Units:
    """The measured unit costs, each with where it comes from."""

    cpu_request_ms: float
    redis_per_request: float
    redis_bytes_per_request: float
    db_per_request: float
    cpu_transition_ms: float
    cpu_event_ms: float
    redis_per_transition: float
    redis_bytes_per_transition: float
    db_per_transition: float
    cpu_connect_ms: float
    redis_per_connect: float
    redis_bytes_per_connect: float
    db_per_connect: float
    kib_per_connection: float
    worker_base_mib: float
    redis_core_commands: float
    sources: dict[str, str]


def _load(key: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((RESULTS / f"{key}.json").read_text())
    return data


def _median(result: dict[str, Any], name: str) -> float:
    for metric in result["metrics"]:
        if metric["name"] == name:
            return float(metric["median"])
    raise SystemExit(f"capacity: {result['key']} has no metric {name!r}")


def measured_units() -> Units:
    b01, b02, b08, b11 = (_load(k) for k in ("b01", "b02", "b08", "b11"))

    def unit(name: str) -> float:
        return _median(b11, f"unit: {name}")

    return Units(
        cpu_request_ms=_median(b01, "tracking-on: CPU per request") / 1000,
        redis_per_request=_median(b02, "all Redis round trips (incl. background) per request"),
        redis_bytes_per_request=unit("Redis bytes per REST call (in + out, background included)"),
        db_per_request=unit("database writes per REST call (within the window)"),
        cpu_transition_ms=unit("CPU per transition on the deciding worker (REST status change)"),
        cpu_event_ms=unit("CPU per delivered event on the listeners' worker"),
        redis_per_transition=unit("Redis commands per transition"),
        redis_bytes_per_transition=unit("Redis bytes per transition (in + out)"),
        db_per_transition=unit("database writes per transition"),
        cpu_connect_ms=unit("CPU per connect (all workers)"),
        redis_per_connect=unit("Redis commands per connect"),
        redis_bytes_per_connect=unit("Redis bytes per connect (in + out)"),
        db_per_connect=unit("database writes per connect"),
        kib_per_connection=_median(b08, "memory per connection (slope)"),
        worker_base_mib=_median(b08, "worker RSS with no connection"),
        redis_core_commands=_median(
            b11, "Redis GET/SET per second on one core (redis-benchmark, 50 clients)"
        ),
        sources={
            k: f"`{_load(k)['command']}` ({_load(k)['mode']} run)"
            for k in ("b01", "b02", "b08", "b11")
        },
    )


def distinct_workers(workers: int, sockets: int) -> float:
    """Workers an audience of ``sockets`` spread at random over ``workers`` lands on."""
    return workers * (1 - (1 - 1 / workers) ** sockets) if workers > 1 else 1.0


@dataclass(frozen=True)
class Scale:
    users: int
    connections: float
    worker_cores: float
    workers: int
    memory_gib: float
    redis_commands: float
    redis_mib_s: float
    redis_shards: int
    pubsub_routed: float  # messages per second, all shards
    pubsub_broadcast_one_shard: float  # the broadcast queue's one channel lives on one shard
    shard_capacity: float
    mongo_writes: float
    bottleneck: str
    remedy: str
    next_bottleneck: str


def model(units: Units, users: int) -> Scale:
    per_s = users / 3600
    connections = users * TABS_PER_USER
    requests, transitions, connects = (
        per_s * REQUESTS_PER_USER_HOUR,
        per_s * TRANSITIONS_PER_USER_HOUR,
        per_s * CONNECTS_PER_USER_HOUR,
    )
    cpu_ms = (
        requests * units.cpu_request_ms
        + transitions * (units.cpu_transition_ms + AUDIENCE_SOCKETS * units.cpu_event_ms)
        + connects * units.cpu_connect_ms
    )
    cores = cpu_ms / 1000
    workers = max(
        math.ceil(cores / WORKER_CPU_BUDGET), math.ceil(connections / CONNECTIONS_PER_WORKER), 1
    )
    memory_gib = (
        connections * units.kib_per_connection / 1024 + workers * units.worker_base_mib
    ) / 1024
    routed_per_transition = distinct_workers(workers, AUDIENCE_SOCKETS)
    # B11 measured one publish per transition (one listening worker); a wider audience adds
    # one publish per further worker it lands on.
    commands = (
        requests * units.redis_per_request
        + transitions * (units.redis_per_transition + max(0.0, routed_per_transition - 1))
        + connects * units.redis_per_connect
    )
    redis_bytes = (
        requests * units.redis_bytes_per_request
        + transitions * units.redis_bytes_per_transition
        + connects * units.redis_bytes_per_connect
    )
    shard_capacity = units.redis_core_commands * REDIS_SHARD_BUDGET
    shards = max(1, math.ceil(commands / shard_capacity))
    routed = transitions * routed_per_transition
    broadcast = transitions * workers
    # Active users write lastActiveAt at most once per throttle window.
    mongo = (
        users / THROTTLE_WINDOW_S
        + transitions * units.db_per_transition
        + connects * units.db_per_connect
    )
    # The first thing that stops scaling out: each load against what one unit of it can take.
    loads = {
        "MongoDB primary writes": mongo / MONGO_WRITES_PER_SECOND,
        "Redis: one bucket's slot (the busiest shard cannot be split further)": (
            commands / REDIS_BUCKETS / units.redis_core_commands
        ),
        "pub/sub messages on one shard": routed / shards / shard_capacity,
    }
    ranked = sorted(loads, key=lambda name: loads[name], reverse=True)
    bottleneck, following = ranked[0], ranked[1]
    return Scale(
        users=users,
        connections=connections,
        worker_cores=cores,
        workers=workers,
        memory_gib=memory_gib,
        redis_commands=commands,
        redis_mib_s=redis_bytes / 2**20,
        redis_shards=shards,
        pubsub_routed=routed,
        pubsub_broadcast_one_shard=broadcast,
        shard_capacity=shard_capacity,
        mongo_writes=mongo,
        bottleneck=f"{bottleneck} ({loads[bottleneck]:.0%} of one unit)",
        remedy=REMEDIES[bottleneck],
        next_bottleneck=f"{following} ({loads[following]:.0%} of one unit)",
    )


REMEDIES = {
    "MongoDB primary writes": (
        "a longer throttle window (`PRESENCE_THROTTLE_INTERVAL_S`: writes fall in proportion), "
        "then write-behind batches (one bulk per flush) and a sharded `users` collection"
    ),
    "Redis: one bucket's slot (the busiest shard cannot be split further)": (
        "more buckets (`PRESENCE_REDIS_BUCKETS`, then re-shard): the cluster-wide "
        "collections spread over more slots"
    ),
    "pub/sub messages on one shard": (
        "more shards: each worker's channel has a slot of its own, so the messages spread "
        "over every shard"
    ),
}


def _n(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:,.1f}" if value >= 10 else f"{value:,.2f}"


def _unit_rows(u: Units) -> list[tuple[str, str, str]]:
    return [
        ("CPU per REST activity call (cache hit, the common case)",
         f"{_n(u.cpu_request_ms * 1000)} µs", "B1"),
        ("Redis round trips per REST call (all, background included)",
         _n(u.redis_per_request), "B2"),
        ("Redis bytes per REST call inside its window (in + out, background included)",
         f"{_n(u.redis_bytes_per_request)} B", "B11"),
        ("database writes per REST call inside its window (one per subject per window, B3)",
         _n(u.db_per_request), "B11"),
        ("CPU per transition on the deciding worker (a REST status change, its database "
         "write, its route read and publish)", f"{_n(u.cpu_transition_ms)} ms", "B11"),
        ("CPU per delivered event (received, decoded, sent to one socket)",
         f"{_n(u.cpu_event_ms)} ms", "B11"),
        ("Redis commands / bytes per transition",
         f"{_n(u.redis_per_transition)} / {_n(u.redis_bytes_per_transition)} B", "B11"),
        ("database writes per transition", _n(u.db_per_transition), "B11"),
        ("CPU per connect (handshake, token, registration, rooms, snapshot, announcement)",
         f"{_n(u.cpu_connect_ms)} ms", "B11"),
        ("Redis commands / bytes per connect",
         f"{_n(u.redis_per_connect)} / {_n(u.redis_bytes_per_connect)} B", "B11"),
        ("database writes per connect", _n(u.db_per_connect), "B11"),
        ("memory per idle connection", f"{_n(u.kib_per_connection)} KiB", "B8"),
        ("worker memory with no connection", f"{_n(u.worker_base_mib)} MiB", "B8"),
        ("Redis commands per second on one core (GET/SET, 50 clients)",
         _n(u.redis_core_commands), "B11"),
    ]  # fmt: skip


def render(units: Units) -> str:
    scales = [model(units, n) for n in SCALES]
    lines = [
        "# Capacity",
        "",
        "Generated by `python -m bench.capacity` from the measurements in `docs/bench/*.json` "
        "(`make bench` runs it; CI checks this file is what the numbers give). Edit the "
        "assumptions in `bench/capacity.py`, never the figures here.",
        "",
        "## Measured unit costs",
        "",
        "| unit | cost | measured by |",
        "|---|---|---|",
        *(f"| {name} | {cost} | {by} |" for name, cost, by in _unit_rows(units)),
        "",
        "Sources: " + "; ".join(f"{k.upper()} {v}" for k, v in units.sources.items()) + ". "
        "All on the benchmark machine (two cores, workers on one, load and servers on the "
        "other); the test database is FerretDB on PostgreSQL, not MongoDB.",
        "",
        "## Assumptions",
        "",
        f"- {TABS_PER_USER} connections per online user; {REQUESTS_PER_USER_HOUR} REST calls, "
        f"{TRANSITIONS_PER_USER_HOUR} announced transitions and {CONNECTS_PER_USER_HOUR} new "
        "sockets per online user per hour.",
        f"- Each transition is heard by {AUDIENCE_SOCKETS} sockets spread at random over the "
        "workers (conversations of about 20 online members).",
        f"- A worker may use {WORKER_CPU_BUDGET:.0%} of its core and holds at most "
        f"{CONNECTIONS_PER_WORKER:,} connections; a Redis shard may use "
        f"{REDIS_SHARD_BUDGET:.0%} of what one core served; {REDIS_BUCKETS} buckets.",
        f"- A MongoDB primary takes {MONGO_WRITES_PER_SECOND:,} small updates per second (an "
        "assumption: this machine has no MongoDB server; measure yours). Every online user "
        f"is active, so each writes `lastActiveAt` once per {THROTTLE_WINDOW_S} s window.",
        "",
        "## Arithmetic",
        "",
        "| online users | " + " | ".join(f"{s.users:,}" for s in scales) + " |",
        "|---|" + "---|" * len(scales),
    ]
    rows: list[tuple[str, list[str]]] = [
        ("connections", [f"{s.connections:,.0f}" for s in scales]),
        ("worker CPU (cores)", [_n(s.worker_cores) for s in scales]),
        ("workers (CPU or connections, whichever needs more)", [str(s.workers) for s in scales]),
        ("worker memory (GiB, all workers)", [_n(s.memory_gib) for s in scales]),
        ("Redis commands/s", [_n(s.redis_commands) for s in scales]),
        ("Redis traffic (MiB/s)", [_n(s.redis_mib_s) for s in scales]),
        ("Redis Cluster shards (masters)", [str(s.redis_shards) for s in scales]),
        ("pub/sub messages/s, routed queue (all shards)", [_n(s.pubsub_routed) for s in scales]),
        (
            "pub/sub messages/s per shard, routed",
            [_n(s.pubsub_routed / s.redis_shards) for s in scales],
        ),
        (
            "with `PRESENCE_MESSAGE_QUEUE=broadcast` instead: messages/s, all on one shard",
            [
                f"{_n(s.pubsub_broadcast_one_shard)} "
                f"({s.pubsub_broadcast_one_shard / s.shard_capacity:.0%} of a shard)"
                for s in scales
            ],
        ),
        ("MongoDB writes/s", [_n(s.mongo_writes) for s in scales]),
        ("first bottleneck", [s.bottleneck for s in scales]),
        ("what removes it", [s.remedy for s in scales]),
        ("the next one", [s.next_bottleneck for s in scales]),
    ]
    lines += [f"| {name} | " + " | ".join(values) + " |" for name, values in rows]
    lines += [
        "",
        "Workers, Redis shards and memory scale out; what does not is a single writer (the "
        "MongoDB primary), a single slot (one bucket of the cluster-wide collections) and, "
        "with the broadcast queue, a single channel that every worker reads. The bottleneck "
        "row names, for the default configuration (routed queue), the one closest to its "
        "limit at each scale; the broadcast row shows why the routed queue is the default.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the file would change")
    args = parser.parse_args()
    text = render(measured_units())
    if args.check:
        current = OUTPUT.read_text() if OUTPUT.exists() else ""
        if current != text:
            print(
                f"capacity: {OUTPUT.relative_to(DOCS.parent)} is not what docs/bench/*.json "
                "gives; run `python -m bench.capacity`",
                file=sys.stderr,
            )
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"capacity: {OUTPUT.relative_to(DOCS.parent)} written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
