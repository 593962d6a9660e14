"""B1: what presence tracking costs an authenticated endpoint, and what the verified-credential
cache saves. Three workers on the same core, identical but for one setting, loaded in turn by
wrk with a pool of one token per user: tracking on and off at the same moment, the credential
cache on and off in turn (A B B A …)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import wrk
from bench.harness import Stack, Worker, run_rest_load
from bench.report import Result

KEY = "b01"
TITLE = "REST overhead of presence tracking"
QUESTION = (
    "`POST /api/presence/heartbeat` (authenticate + activity) served by a worker with request "
    "tracking on, against the same endpoint on an identical worker with "
    "`PRESENCE_TRACK_REQUESTS=false`, and against one with `PRESENCE_AUTH_CACHE_SIZE=0` "
    "(every request verifies its JWT and reads its user). Throughput from wrk (closed loop, 64 "
    "connections), CPU time per request from the worker's own accounting. Tracking on and off "
    "are loaded at the same moment (two wrk, the two workers sharing one core), so the "
    "machine's moods slow both alike; the credential cache is compared in turn."
)
PATH = "/api/presence/heartbeat"


def _measure(worker: Worker, lua_path: Path, seconds: float) -> dict[str, float]:
    return _measure_together([worker], lua_path, seconds)[worker.name]


def _measure_together(
    workers: list[Worker], lua_path: Path, seconds: float
) -> dict[str, dict[str, float]]:
    """Each worker loaded by its own wrk, all at the same moment: the workers share one core,
    so whatever else the machine does then (a neighbour's burst, a slower spell) slows them
    alike, and the ratio of their throughputs is the ratio of their costs per request."""
    time.sleep(1.0)  # whatever the previous run left behind settles first
    cpu = {w.name: w.cpu_seconds() for w in workers}
    with ThreadPoolExecutor(len(workers)) as pool:
        runs = dict(
            zip(
                [w.name for w in workers],
                pool.map(lambda w: wrk.run(w.url + PATH, lua_path, seconds), workers),
                strict=True,
            )
        )
    measured = {}
    for worker in workers:
        run, used = runs[worker.name], worker.cpu_seconds() - cpu[worker.name]
        measured[worker.name] = {
            "rps": run.rps,
            "p50_ms": run.p50_ms,
            "p99_ms": run.p99_ms,
            "failures": run.failures,
            "cpu_us_per_request": used / max(1, run.requests) * 1e6,
        }
    return measured


def _first_requests(stack: Stack, worker: Worker, tokens: list[str]) -> None:
    """Every user's first request, then until each is written and announced: that cold path
    runs at the database's pace (once per user), and this benchmark is about the hot path."""
    run_rest_load(
        stack.run_dir,
        {"targets": [worker.url], "tokens": tokens, "rate_per_token": 1, "duration_s": 1},
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if worker.metric("presence_status_changes_total") >= len(tokens):
            return
        time.sleep(0.5)
    raise RuntimeError("the users' first requests were not all announced within 300 s")


def _warm_up(worker: Worker, lua_path: Path) -> None:
    """Until every user's first request (credential check, window, write, online announcement:
    the database's pace) is behind us, which shows as a p99 without stragglers."""
    for _ in range(10):
        if wrk.run(worker.url + PATH, lua_path, 2.0).p99_ms < 50:
            return


def run(stack: Stack, quick: bool) -> Result:
    users = 100 if quick else 500
    seconds = 2.0 if quick else 8.0
    reps = 3 if quick else 5
    result = Result.begin(
        KEY,
        TITLE,
        QUESTION,
        quick,
        settings={"users": users, "seconds_per_run": seconds, "repetitions": reps},
    )
    accounts = stack.seed_users(users)
    lua = wrk.script(stack.run_dir, [a.token for a in accounts], "POST", PATH)
    on = stack.start_worker("tracking-on")
    off = stack.start_worker("tracking-off", track_requests="false")
    uncached = stack.start_worker("no-cache", auth_cache_size="0")
    for worker in (on, off):
        stack.wait_ready(worker)
    _first_requests(stack, on, [a.token for a in accounts])
    for worker in (on, off):
        _warm_up(worker, lua)
    stack.wait_ready(uncached)
    wrk.run(uncached.url + PATH, lua, 2.0)  # every request reads the database anyway

    # Tracking on and off loaded at the same moment, on the same core (a run measured after
    # the other met another machine: the ratio of runs in turn spread from 0.5 to 2.3). The
    # credential-cache pairs come after, in turn (A B B A), so the uncached worker's database
    # load (which shares the load core) never overlaps a tracking measurement.
    tracking, caching = [], []
    for _ in range(reps):
        runs = _measure_together([on, off], lua, seconds)
        result.repetitions.append(runs)
        tracking.append(runs["tracking-on"]["rps"] / runs["tracking-off"]["rps"])
    for rep in range(1 if quick else 3):
        pair = (on, uncached) if rep % 2 == 0 else (uncached, on)
        runs = {w.name: _measure(w, lua, seconds) for w in pair}
        runs = {("cache-pair " + k if k == "tracking-on" else k): v for k, v in runs.items()}
        result.repetitions.append(runs)
        caching.append(runs["cache-pair tracking-on"]["rps"] / runs["no-cache"]["rps"])

    def series(name: str, field: str) -> list[float]:
        return [r[name][field] for r in result.repetitions if name in r]

    floor = 0.75 if quick else 0.95
    result.metric(
        "throughput, tracking on ÷ off",
        "ratio",
        tracking,
        kind="ratio",
        target=f"≥ {floor}" + (" (loose: quick run)" if quick else ""),
        met=sorted(tracking)[len(tracking) // 2] >= floor,
        gate=quick,
    )
    cpu_on, cpu_off = (
        series("tracking-on", "cpu_us_per_request"),
        series("tracking-off", "cpu_us_per_request"),
    )
    result.metric(
        "CPU per request, tracking on − off",
        "µs",
        [a - b for a, b in zip(cpu_on, cpu_off, strict=True)],
    )
    result.metric(
        "p99 latency, tracking on ÷ off",
        "ratio",
        [
            a / b
            for a, b in zip(
                series("tracking-on", "p99_ms"), series("tracking-off", "p99_ms"), strict=True
            )
        ],
        kind="ratio",
    )
    result.metric("throughput, credential cache on ÷ off", "ratio", caching, kind="ratio")
    for name in ("tracking-on", "tracking-off", "no-cache"):
        result.metric(f"{name}: throughput", "req/s", series(name, "rps"))
        result.metric(f"{name}: CPU per request", "µs", series(name, "cpu_us_per_request"))
    failures = sum(r[n]["failures"] for r in result.repetitions for n in r)
    result.metric(
        "failed or non-2xx responses",
        "count",
        [failures],
        kind="count",
        target="0",
        met=failures == 0,
        gate=True,
    )
    return result
