"""B8: memory per idle websocket connection on one worker, as the slope of its resident memory
over 1k, 5k and 10k connections held by stock socket.io-client processes."""

from __future__ import annotations

import time

from bench import nodeclients
from bench.harness import Stack
from bench.report import Result
from bench.stats import slope

KEY = "b08"
TITLE = "Memory per idle connection"
QUESTION = (
    "One worker; Node processes open websocket connections (stock `socket.io-client`) in steps "
    "to 1 000, 5 000 and 10 000, from 200 users with up to 50 tabs each (so the database sees "
    "200 online transitions, not 10 000). After each step settles, the worker's resident memory "
    "(VmRSS) is read; KiB per connection is the slope of a least-squares line through the steps. "
    "Target: ≥ 10 000 connections held, memory linear in connections."
)
STEPS = (1_000, 5_000, 10_000)
USERS = 200


def _settled_rss(stack: Stack, seconds: float = 4.0) -> int:
    time.sleep(seconds)
    return stack.workers[0].rss_kib()


def run(stack: Stack, quick: bool) -> Result:
    steps = (500, 1_000, 2_000) if quick else STEPS
    result = Result.begin(
        KEY,
        TITLE,
        QUESTION,
        quick,
        settings={"steps": list(steps), "users": USERS, "transport": "websocket"},
    )
    if not nodeclients.available():
        raise RuntimeError("node and bench/js/node_modules are needed: make bench installs them")
    accounts = stack.seed_users(USERS)
    worker = stack.start_workers(1)[0]
    base = _settled_rss(stack, 2.0)
    points = [(0.0, float(base))]
    groups: list[nodeclients.NodeClients] = []
    held = 0
    try:
        for step in steps:
            count = step - held
            tabs = -(-step // USERS)
            # This group's clients are the next `count` tabs; tokens repeat per tab.
            tokens = [a.token for a in accounts] * tabs
            group = nodeclients.NodeClients(
                stack.run_dir,
                [worker.url],
                tokens[held : held + count],
                count,
                tabs=1,
                processes=2,
                concurrency=200,
            )
            groups.append(group)
            storm = group.connect()
            held += storm["ok"]
            rss = _settled_rss(stack)
            points.append((float(held), float(rss)))
            result.repetitions.append({"step": step, "held": held, "rss_kib": rss, **storm})
    finally:
        for group in groups:
            group.close()
    per_connection = slope(points)
    result.metric(
        "connections held",
        "count",
        [float(held)],
        kind="count",
        target=f"≥ {steps[-1]}",
        met=held >= steps[-1],
        gate=True,
    )
    result.metric("memory per connection (slope)", "KiB", [per_connection])
    result.metric("worker RSS at the last step", "MiB", [points[-1][1] / 1024])
    result.metric("worker RSS with no connection", "MiB", [base / 1024])
    for rep in result.repetitions:
        result.metric(f"{rep['step']}: connect time", "s", [rep["seconds"]])
    result.notes.append(
        "Compare: python-socketio measured ≈ 33 KiB per connection in the anchors; the Python "
        "`websockets` documentation gives 14–64 KiB; Centrifugo (Go) ≈ 30 KB."
    )
    return result
