"""Results: one JSON document per benchmark run, and ``docs/BENCHMARKS.md`` rendered from the
newest result of every benchmark.

Only ratios and counts are compared with targets; absolute figures are labelled with the
machine they were measured on.
"""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RESULTS = DOCS / "bench"
HISTORY = ROOT / ".run" / "bench"
LIBRARIES = (
    "aiohttp",
    "python-socketio",
    "python-engineio",
    "redis",
    "hiredis",
    "pymongo",
    "PyJWT",
    "uvloop",
)

Kind = Literal["ratio", "count", "absolute"]


@dataclass
class Metric:
    name: str
    unit: str
    values: list[float]
    kind: Kind = "absolute"
    target: str = ""
    # Whether the target is met; None when there is no target (absolute figures).
    met: bool | None = None
    # A gate fails the run when missed (counts always; ratios only in full runs).
    gate: bool = False

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(
            median=self.median,
            min=min(self.values, default=float("nan")),
            max=max(self.values, default=float("nan")),
        )
        return data


@dataclass
class Result:
    key: str
    title: str
    question: str
    mode: str
    command: str
    settings: dict[str, Any] = field(default_factory=dict)
    metrics: list[Metric] = field(default_factory=list)
    repetitions: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    duration_s: float = 0.0

    @classmethod
    def begin(
        cls, key: str, title: str, question: str, quick: bool, settings: dict[str, Any]
    ) -> Result:
        """A result for one run of benchmark ``key``, naming the command that reproduces it."""
        command = "make bench-quick" if quick else f'make bench BENCH="{key}"'
        return cls(key, title, question, "quick" if quick else "full", command, settings=settings)

    def metric(self, *args: Any, **kwargs: Any) -> Metric:
        m = Metric(*args, **kwargs)
        self.metrics.append(m)
        return m

    @property
    def failed_gates(self) -> list[Metric]:
        return [m for m in self.metrics if m.gate and m.met is False]

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "question": self.question,
            "mode": self.mode,
            "command": self.command,
            "settings": self.settings,
            "metrics": [m.to_json() for m in self.metrics],
            "repetitions": self.repetitions,
            "notes": self.notes,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "duration_s": round(self.duration_s, 1),
            "environment": environment(),
        }


def _git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + ("+changes" if dirty else "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def _tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "absent"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"


_ENVIRONMENT: dict[str, Any] = {}


def environment() -> dict[str, Any]:
    if not _ENVIRONMENT:
        _ENVIRONMENT.update(
            revision=_git_revision(),
            python=sys.version.split()[0],
            platform=platform.platform(),
            cpu=_cpu_model(),
            cpus=len(__import__("os").sched_getaffinity(0)),
            memory_gib=round(int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024, 1),
            libraries={name: _version(name) for name in LIBRARIES},
            redis_server=_tool_version(["redis-server", "--version"]),
            node=_tool_version(["node", "--version"]),
        )
    return _ENVIRONMENT


def save(result: Result, stamp: str) -> Path:
    """The run's history (git-ignored) and the newest result per benchmark (committed)."""
    data = json.dumps(result.to_json(), indent=2, sort_keys=True) + "\n"
    history = HISTORY / stamp
    history.mkdir(parents=True, exist_ok=True)
    (history / f"{result.key}.json").write_text(data)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{result.key}.json"
    path.write_text(data)
    return path


def _fmt(value: float) -> str:
    if value != value:  # NaN
        return "–"
    if value in (float("inf"), float("-inf")):
        return "never"
    if value == int(value) and abs(value) < 1e12:
        return f"{int(value):,}".replace(",", " ")
    if abs(value) >= 100:
        return f"{value:,.0f}".replace(",", " ")
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _verdict(metric: dict[str, Any]) -> str:
    if metric["met"] is None:
        return ""
    return "met" if metric["met"] else "**missed**"


def render() -> str:
    results = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]
    lines = [
        "# Benchmarks",
        "",
        "Measured by `make bench` (the full suite, minutes) or `make bench-quick` (under two",
        "minutes: exact counts and loose ratios; CI runs it and fails on a missed count).",
        "Every run writes one JSON document per benchmark (`docs/bench/<key>.json`: revision,",
        "versions, CPU, settings, every repetition) and regenerates this page from the newest",
        "of each.",
        "",
        "How to read it: counts are exact and compared with their targets; ratios come from A/B",
        "pairs interleaved in one run (A B B A …, at least 3 repetitions) and are compared with",
        "their targets; absolute figures (requests per second, milliseconds, KiB) hold only for",
        "the machine named under each table. The load always comes from separate processes over",
        "loopback; workers run on CPU 1, the load generators, Redis and the database on CPU 0.",
        "",
        "Where a target is missed, the notes under its table say why. The database of this",
        "machine is FerretDB 1.24 on PostgreSQL 15 (no MongoDB server package reaches it; see",
        "the README's test-database section): every figure that waits on the database (first",
        "requests, status changes, connect storms of many users, the sweep's writes) is the",
        "test database's, not MongoDB's; database commands are counted as well.",
        "",
    ]
    lines += [
        "## Targets at a glance",
        "",
        "| Benchmark | Metric | Median | Target | Verdict |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        for m in r["metrics"]:
            if m["target"]:
                lines.append(
                    f"| {r['key'].upper()} ({r['mode']}) | {m['name']} ({m['unit']}) | "
                    f"{_fmt(m['median'])} | {m['target']} | {_verdict(m)} |"
                )
    lines.append("")
    for r in results:
        env = r["environment"]
        lines += [
            f"## {r['key'].upper()[:1]}{r['key'][1:]} — {r['title']}",
            "",
            r["question"],
            "",
            "| Metric | Median | Spread (min–max) | Runs | Target | Verdict |",
            "|---|---|---|---|---|---|",
        ]
        for m in r["metrics"]:
            spread = f"{_fmt(m['min'])} – {_fmt(m['max'])}" if len(m["values"]) > 1 else ""
            lines.append(
                f"| {m['name']} ({m['unit']}) | {_fmt(m['median'])} | {spread} | "
                f"{len(m['values'])} | {m['target']} | {_verdict(m)} |"
            )
        lines.append("")
        for note in r["notes"]:
            lines.append(f"- {note}")
        if r["notes"]:
            lines.append("")
        settings = ", ".join(f"{k}={v}" for k, v in sorted(r["settings"].items()))
        lines += [
            f"Command: `{r['command']}` ({r['mode']} run, {r['started']}, "
            f"{r['duration_s']} s, revision {env['revision']}).",
            f"Settings: {settings}.",
            f"Machine: {env['cpus']} × {env['cpu']}, {env['memory_gib']} GiB, Python "
            f"{env['python']}, {env['redis_server'].split(' sha=')[0]}.",
            "",
        ]
    return "\n".join(lines)


def write_markdown() -> Path:
    path = DOCS / "BENCHMARKS.md"
    path.write_text(render())
    return path
