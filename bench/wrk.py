"""wrk, the closed-loop throughput ceiling: one thread on the load core, a pool of bearer tokens
(one per user) picked at random per request, the summary printed as JSON by the Lua script."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.harness import LOAD_CPU, taskset

_SCRIPT = r"""
local tokens = {}
for line in io.lines("{{tokens}}") do tokens[#tokens + 1] = line end
math.randomseed(os.time())
request = function()
  local token = tokens[math.random(#tokens)]
  return wrk.format("{{method}}", "{{path}}", { ["Authorization"] = "Bearer " .. token })
end
done = function(summary, latency, requests)
  io.write(string.format(
    'WRK-JSON {"requests":%d,"duration_us":%d,"non2xx":%d,"errors":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class WrkRun:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    failures: int


def available() -> bool:
    return shutil.which("wrk") is not None


def script(run_dir: Path, tokens: list[str], method: str, path: str) -> Path:
    tokens_path = run_dir / "wrk-tokens.txt"
    tokens_path.write_text("\n".join(tokens) + "\n")
    lua = run_dir / "wrk.lua"
    lua.write_text(
        _SCRIPT.replace("{{tokens}}", str(tokens_path))
        .replace("{{method}}", method)
        .replace("{{path}}", path)
    )
    return lua


def run(url: str, lua: Path, duration_s: float, connections: int = 64) -> WrkRun:
    out = subprocess.run(
        [
            *taskset(LOAD_CPU),
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(duration_s))}s",
            "-s",
            str(lua),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration_s + 60,
    )
    line = next(x for x in out.stdout.splitlines() if x.startswith("WRK-JSON "))
    data = json.loads(line.removeprefix("WRK-JSON "))
    return WrkRun(
        requests=data["requests"],
        rps=data["requests"] / (data["duration_us"] / 1e6),
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        failures=data["non2xx"] + data["errors"],
    )
