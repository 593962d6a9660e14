"""B15: how long a platform's first import takes (SPEC §12 directory sync): 100 000
memberships pushed into two workers through the service API, the real Redis and database, the
members not yet known to presence. Two shapes, interleaved: 100 conversations of 1 000 members
in one batch call, and one conversation of 100 000 members in one PUT; then the same imports
again (an idempotent repair run: nothing changes)."""

from __future__ import annotations

import http.client
import json
import time
from typing import Any
from urllib.parse import urlsplit

from bench.harness import Stack, Worker
from bench.report import Result

KEY = "b15"
TITLE = "Directory import of 100 000 memberships"
QUESTION = (
    "Two workers. A service with a `directory:write` token imports 100 000 memberships: "
    "`POST /api/service/conversations:batch` with 100 conversations of 1 000 members, and "
    "`PUT /api/service/conversations/{id}` with one conversation of 100 000 members (members "
    "not yet known). Measured: seconds per import and memberships per second, first import "
    "and an unchanged repeat, interleaved. Target: the first import of 100 000 memberships "
    "within 60 s either way."
)
MEMBERSHIPS = 100_000
GROUP = 1000


def _call(worker: Worker, token: str, method: str, path: str, body: Any) -> tuple[float, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", urlsplit(worker.url).port, timeout=600)
    payload = json.dumps(body)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    started = time.perf_counter()
    conn.request(method, path, body=payload, headers=headers)
    resp = conn.getresponse()
    answer = json.loads(resp.read())
    took = time.perf_counter() - started
    conn.close()
    if resp.status != 200:
        raise RuntimeError(f"{method} {path}: {resp.status} {answer}")
    return took, answer["data"]


def _batch(worker: Worker, token: str, tag: str) -> tuple[float, Any]:
    conversations = [
        {
            "id": f"{tag}-c{c}",
            "title": f"group {c}",
            "memberIds": [f"{tag}-u{c * GROUP + m}" for m in range(GROUP)],
        }
        for c in range(MEMBERSHIPS // GROUP)
    ]
    return _call(
        worker, token, "POST", "/api/service/conversations:batch", {"conversations": conversations}
    )


def _room(worker: Worker, token: str, tag: str) -> tuple[float, Any]:
    body = {"title": "everyone", "memberIds": [f"{tag}-m{i}" for i in range(MEMBERSHIPS)]}
    return _call(worker, token, "PUT", f"/api/service/conversations/{tag}-all", body)


def run(stack: Stack, quick: bool) -> Result:
    repetitions = 1 if quick else 2
    result = Result.begin(
        KEY, TITLE, QUESTION, quick, {"memberships": MEMBERSHIPS, "repetitions": repetitions}
    )
    workers = stack.start_workers(2, service_rate_limit=1000)
    token = stack.service_token("b15", "directory:write")
    for repetition in range(repetitions):
        shapes = (("batch", _batch), ("room", _room))
        for name, importer in shapes if repetition % 2 == 0 else shapes[::-1]:
            tag = f"r{repetition}{name}"
            first, outcome = importer(workers[repetition % 2], token, tag)
            again, unchanged = importer(workers[(repetition + 1) % 2], token, tag)
            if outcome["added"] != MEMBERSHIPS or unchanged["added"] or unchanged["removed"]:
                raise RuntimeError(f"{name}: imported {outcome}, repeated {unchanged}")
            result.repetitions.append(
                {"repetition": repetition, "shape": name, "first_s": first, "repeat_s": again}
            )
    for name, label in (("batch", "100 × 1 000 in one batch"), ("room", "one of 100 000")):
        reps = [r for r in result.repetitions if r["shape"] == name]
        firsts = [r["first_s"] for r in reps]
        result.metric(f"first import, {label}", "s", firsts, target="≤ 60",
                      met=max(firsts) <= 60)  # fmt: skip
        result.metric(f"memberships per second, {label}", "1/s",
                      [MEMBERSHIPS / s for s in firsts])  # fmt: skip
        result.metric(f"unchanged repeat, {label}", "s", [r["repeat_s"] for r in reps])
    return result
