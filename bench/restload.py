"""An open-loop HTTP load generator, run as its own process: every account sends at a fixed
rate whatever the answers' latency (no coordinated omission), spread over the given targets and
source addresses, and every request's send time and answer are recorded.

    python -m bench.restload <plan.json> <result.json>

The plan: ``{"targets": [...], "tokens": [...], "rate_per_token": 20, "duration_s": 10,
"mode": "heartbeat" | "status", "sources": ["127.0.0.2", ...], "start_at": <epoch s>}``.
``status`` toggles each account between ``away`` and ``online``: every request is a status
change, and the result lists each account's send times (to match the events a client hears).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp


async def _account(
    index: int,
    token: str,
    plan: dict[str, Any],
    sessions: list[aiohttp.ClientSession],
    out: dict[str, Any],
) -> None:
    rate = float(plan["rate_per_token"])
    count = int(rate * float(plan["duration_s"]))
    targets: list[str] = plan["targets"]
    mode = plan.get("mode", "heartbeat")
    # Accounts start spread over the first period, so the total rate is even.
    start = float(plan["start_at"]) + (index % 1000) / 1000 / rate
    headers = {"Authorization": f"Bearer {token}"}
    pending: list[asyncio.Task[None]] = []
    sends: list[float] = []

    async def one(seq: int) -> None:
        target = targets[(index + seq) % len(targets)]
        session = sessions[(index + seq) % len(sessions)]
        began = time.time()
        try:
            if mode == "status":
                body = {"status": "away" if seq % 2 == 0 else "online"}
                sends.append(began)
                request = session.put(target + "/api/users/me/status", json=body, headers=headers)
            else:
                request = session.post(target + "/api/presence/heartbeat", headers=headers)
            async with request as resp:
                await resp.read()
                out["statuses"][str(resp.status)] += 1
        except (TimeoutError, aiohttp.ClientError) as exc:
            out["statuses"][type(exc).__name__] += 1
        out["latencies"].append(time.time() - began)
        out["per_target"][target] += 1

    for seq in range(count):
        delay = start + seq / rate - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        pending.append(asyncio.create_task(one(seq)))
    await asyncio.gather(*pending)
    if mode == "status":
        out["sends"][str(index)] = sends


async def run(plan: dict[str, Any]) -> dict[str, Any]:
    sources: list[str] = plan.get("sources") or ["127.0.0.1"]
    timeout = aiohttp.ClientTimeout(total=30)
    sessions = [
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, local_addr=(source, 0)), timeout=timeout
        )
        for source in sources
    ]
    out: dict[str, Any] = {
        "statuses": Counter(),
        "latencies": [],
        "per_target": Counter(),
        "sends": {},
    }
    plan.setdefault("start_at", time.time() + 0.5)
    started = time.time()
    try:
        await asyncio.gather(
            *(_account(i, t, plan, sessions, out) for i, t in enumerate(plan["tokens"]))
        )
    finally:
        for session in sessions:
            await session.close()
    latencies = sorted(out.pop("latencies"))
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return {
        **out,
        "requests": len(latencies),
        "elapsed_s": time.time() - started,
        "p50_ms": q[49] * 1000,
        "p99_ms": q[98] * 1000,
    }


def main() -> None:
    plan = json.loads(Path(sys.argv[1]).read_text())
    result = asyncio.run(run(plan))
    Path(sys.argv[2]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
