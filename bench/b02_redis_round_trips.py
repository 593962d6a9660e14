"""B2: Redis round trips on the request path, for subjects making requests faster than their
window: every command Redis executes during the load is recorded (``MONITOR``) and the calls of
the request path's two scripts are counted: the activity script (the throttle window) and the
user-input script (automatic away), each at most once per subject per worker per window."""

from __future__ import annotations

from bench.harness import Stack, run_rest_load
from bench.report import Result

KEY = "b02"
TITLE = "Redis round trips on the request path"
QUESTION = (
    "U users each send R authenticated requests per second (10 each for 50 users, 2 each for "
    "200), spread over W = 3 workers, for less than one throttle window (60 s). Target: at "
    "most one activity call and one user-input call per subject per worker per window on the "
    "request path (≤ W × U each), whatever the number of requests. Background traffic (counter and "
    "last-activity flushes every 0.25 s, heartbeats, pub/sub probes) is reported separately: "
    "it does not grow with the request rate."
)


def run(stack: Stack, quick: bool) -> Result:
    users = 50 if quick else 200
    seconds = 5.0 if quick else 30.0
    # Well inside what three workers on one core serve: an open-loop load past capacity
    # measures queueing, not the throttle.
    rate = 10 if quick else 2
    workers_count = 3
    result = Result.begin(
        KEY,
        TITLE,
        QUESTION,
        quick,
        settings={
            "users": users,
            "workers": workers_count,
            "rate_per_user": rate,
            "seconds": seconds,
            "throttle_interval_s": 60,
        },
    )
    accounts = stack.seed_users(users)
    workers = stack.start_workers(workers_count)
    before = stack.commandstats()
    with stack.monitor() as log:
        load = run_rest_load(
            stack.run_dir,
            {
                "targets": [w.url for w in workers],
                "tokens": [a.token for a in accounts],
                "rate_per_token": rate,
                "duration_s": seconds,
            },
        )
    after = stack.commandstats()
    requests = load["requests"]
    activity = log.activity_calls()
    inputs = log.input_calls()
    total = len(log.commands)
    result.repetitions.append(
        {
            "requests": requests,
            "statuses": load["statuses"],
            "activity_calls": activity,
            "input_calls": inputs,
            "all_commands": total,
            "per_target": load["per_target"],
            "commands_incl_scripts": {
                k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)
            },
        }
    )
    bound = workers_count * users
    ok = load["statuses"].get("200", 0) == requests
    result.metric(
        "requests served",
        "count",
        [requests],
        kind="count",
        target="all answered 200",
        met=ok,
        gate=True,
    )
    result.metric(
        "request-path Redis calls",
        "count",
        [activity],
        kind="count",
        target=f"≤ W × U = {bound}",
        met=activity <= bound,
        gate=True,
    )
    result.metric(
        "request-path user-input calls (automatic away)",
        "count",
        [inputs],
        kind="count",
        target=f"≤ W × U = {bound}",
        met=inputs <= bound,
        gate=True,
    )
    result.metric(
        "request-path Redis calls per request",
        "ratio",
        [activity / requests],
        kind="count",
        target=f"≤ {bound / requests:.4f}",
        met=activity <= bound,
    )
    result.metric(
        "all Redis round trips (incl. background) per request", "ratio", [total / requests]
    )
    result.notes.append(
        f"{requests} requests, {activity} activity-script calls and {inputs} user-input calls: "
        f"each worker asked Redis once per subject, then answered from its own copy of the "
        f"window."
    )
    return result
