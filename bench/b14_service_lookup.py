"""B14: how fast a service learns the presence of many subjects (SPEC §12), one worker on its
core, the real Redis and database: ``POST /api/service/presence`` with 1 000 ids per call
against 1 000 calls with one id each, side by side in one run (A B A B)."""

from __future__ import annotations

import http.client
import json
import statistics
import time
from urllib.parse import urlsplit

from bench.harness import Stack, Worker
from bench.report import Result
from bench.stats import quantile

KEY = "b14"
TITLE = "Service lookups of many subjects"
QUESTION = (
    "1 000 users (200 of them online through REST activity), one worker. A service asks "
    "`POST /api/service/presence` for all 1 000 ids in one call, sequentially, and the same "
    "ids one per call. Measured: lookups per second of 1 000 ids, their latency, and subjects "
    "per second either way. Target: the bulk call answers 1 000 ids at least 20 times faster "
    "than 1 000 single calls (one round trip per store, no per-id query)."
)
IDS = 1000
ONLINE = 200
BULK_CALLS = 20
SINGLE_CALLS = 300


def _caller(worker: Worker, token: str) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", urlsplit(worker.url).port, timeout=30)


def _lookup(conn: http.client.HTTPConnection, token: str, ids: list[str]) -> int:
    body = json.dumps({"ids": ids})
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    conn.request("POST", "/api/service/presence", body=body, headers=headers)
    resp = conn.getresponse()
    answer = json.loads(resp.read())
    if resp.status != 200:
        raise RuntimeError(f"lookup refused: {resp.status} {answer}")
    return len(answer["data"]["users"])


def _bulk(conn: http.client.HTTPConnection, token: str, ids: list[str]) -> dict[str, float]:
    took = []
    for _ in range(BULK_CALLS):
        started = time.perf_counter()
        found = _lookup(conn, token, ids)
        took.append(time.perf_counter() - started)
        if found != len(ids):
            raise RuntimeError(f"the bulk lookup found {found} of {len(ids)}")
    mean = statistics.mean(took)
    return {
        "lookups_per_s": 1 / mean,
        "p50_ms": quantile([t * 1000 for t in took], 50),
        "p99_ms": quantile([t * 1000 for t in took], 99),
        "subjects_per_s": len(ids) / mean,
    }


def _single(conn: http.client.HTTPConnection, token: str, ids: list[str]) -> float:
    started = time.perf_counter()
    for i in range(SINGLE_CALLS):
        _lookup(conn, token, [ids[i % len(ids)]])
    return SINGLE_CALLS / (time.perf_counter() - started)


def run(stack: Stack, quick: bool) -> Result:
    repetitions = 1 if quick else 3
    result = Result.begin(
        KEY, TITLE, QUESTION, quick, {"ids": IDS, "online": ONLINE, "repetitions": repetitions}
    )
    accounts = stack.seed_users(IDS, prefix="s")
    # The service's own budget is not what is measured.
    [worker] = stack.start_workers(1, service_rate_limit=100_000)
    token = stack.service_token("b14", "presence:read")
    conn = _caller(worker, token)
    for account in accounts[:ONLINE]:
        conn.request("GET", "/api/users/me", headers={"Authorization": f"Bearer {account.token}"})
        conn.getresponse().read()
    ids = [a.id for a in accounts]
    _lookup(conn, token, ids)  # the cold read of every profile is not what is measured
    for repetition in range(repetitions):
        bulk = _bulk(conn, token, ids)
        single = _single(conn, token, ids)
        result.repetitions.append(
            {"repetition": repetition, **bulk, "single_subjects_per_s": single}
        )
    conn.close()
    reps = result.repetitions
    result.metric("lookups of 1 000 ids per second", "1/s", [r["lookups_per_s"] for r in reps])
    result.metric("latency of a 1 000-id lookup, p50", "ms", [r["p50_ms"] for r in reps])
    result.metric("latency of a 1 000-id lookup, p99", "ms", [r["p99_ms"] for r in reps])
    result.metric("subjects per second, 1 000 per call", "1/s", [r["subjects_per_s"] for r in reps])
    result.metric(
        "subjects per second, one per call", "1/s", [r["single_subjects_per_s"] for r in reps]
    )
    ratios = [r["subjects_per_s"] / r["single_subjects_per_s"] for r in reps]
    result.metric(
        "subjects per second: 1 000 per call ÷ one per call",
        "ratio",
        ratios,
        kind="ratio",
        target="≥ 20",
        met=statistics.median(ratios) >= 20,
        gate=not quick,
    )
    return result
