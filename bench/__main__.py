"""Run the benchmarks: ``python -m bench [--quick] [b01 b03 …]``.

Each benchmark gets a fresh, empty Redis and database (one pair of servers per run) and its own
workers. Results go to ``docs/bench/<key>.json`` and ``docs/BENCHMARKS.md``; the exit status is
non-zero when a gated target (a count, or a loose ratio in a quick run) is missed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from types import ModuleType

from bench import report
from bench.harness import ROOT, start_stack
from devstack import leaks

ALL = [
    "b01_rest_overhead",
    "b02_redis_round_trips",
    "b03_database_writes",
    "b04_throttle_race",
    "b05_broadcast_latency",
    "b06_publishes_per_change",
    "b07_connect_storm",
    "b08_memory_per_connection",
    "b09_sweep_cost",
    "b10_detection",
    "b11_fanout",
    "b12_peer",
    "b13_large_rooms",
    "b14_service_lookup",
    "b15_directory_import",
]
# Under two minutes: the counts, and the overhead ratio with a loose bound.
QUICK = [
    "b01_rest_overhead",
    "b02_redis_round_trips",
    "b03_database_writes",
    "b04_throttle_race",
    "b06_publishes_per_change",
    "b09_sweep_cost",
]


def _module(name: str) -> ModuleType:
    matches = [m for m in ALL if m == name or m.startswith(name + "_")]
    if len(matches) != 1:
        raise SystemExit(f"bench: unknown benchmark {name!r} (one of: {', '.join(ALL)})")
    return importlib.import_module(f"bench.{matches[0]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the short CI subset")
    parser.add_argument(
        "names", nargs="*", help="benchmarks to run (default: all, or the quick set)"
    )
    args = parser.parse_args()
    names = args.names or (QUICK if args.quick else ALL)
    modules = [_module(n) for n in names]
    stamp = time.strftime("%Y%m%dT%H%M%S")
    run_dir = ROOT / ".run" / "bench" / stamp / "work"
    mark = leaks.mark_this_run()
    stack = start_stack(run_dir)
    failed: list[str] = []
    try:
        for module in modules:
            print(f"bench: {module.KEY} {module.TITLE} …", flush=True)
            started = time.monotonic()
            try:
                result = module.run(stack, args.quick)
            except Exception:
                traceback.print_exc()
                failed.append(f"{module.KEY}: crashed")
                continue
            finally:
                stack.reset()
            result.duration_s = time.monotonic() - started
            path = report.save(result, stamp)
            for metric in result.metrics:
                verdict = "" if metric.met is None else (" ok" if metric.met else " MISSED")
                print(
                    f"  {metric.name}: {metric.median:.4g} {metric.unit}"
                    f" (n={len(metric.values)}) {metric.target}{verdict}",
                    flush=True,
                )
            failed += [f"{module.KEY}: {m.name} missed {m.target}" for m in result.failed_gates]
            print(f"  → {path.relative_to(ROOT)} in {result.duration_s:.0f} s", flush=True)
    finally:
        stack.close()
        # A benchmark that leaves a process running would skew the next one's numbers.
        failed += [f"left running: pid {s.pid} {s.command}" for s in leaks.reap(mark)]
    print(f"bench: {report.write_markdown().relative_to(ROOT)} updated")
    for failure in failed:
        print(f"bench: FAILED {failure}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
