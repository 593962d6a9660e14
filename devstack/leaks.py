"""Finding processes a test run left behind.

Every process a run starts — servers, workers, nginx, node, Chromium, and what they start in
turn — inherits the run's mark, an environment variable with a value of its own. After the run,
any live process still carrying the mark outlived the code that started it. The mark survives
``start_new_session`` and re-parenting, which a parent-child walk would not.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

MARK = "DEVSTACK_RUN"


def mark_this_run() -> str:
    """Give every process started from now on this run's mark; returns it."""
    value = uuid.uuid4().hex
    os.environ[MARK] = value
    return value


@dataclass(frozen=True)
class Survivor:
    pid: int
    command: str


def _marked(pid: int, needle: bytes) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # gone, or not ours to read
        return False
    return needle in environ.split(b"\0")


def _parent_and_state(pid: int) -> tuple[int, str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (command) state ppid ...": the command may hold spaces and parentheses.
    state, ppid = stat.rpartition(")")[2].split()[:2]
    return int(ppid), state


def _descendants(root: int, parents: dict[int, int]) -> set[int]:
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def survivors(run: str) -> list[Survivor]:
    """Live processes (not zombies) that carry ``run``'s mark, or descend from this process,
    this process excluded. The second finds a child started with an environment of its own
    (which does not carry the mark) as long as it was not re-parented."""
    needle = f"{MARK}={run}".encode()
    parents: dict[int, int] = {}
    live: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        found = _parent_and_state(pid)
        if found is None or found[1] == "Z":
            continue
        parents[pid] = found[0]
        live.add(pid)
    ours = _descendants(os.getpid(), parents) | {pid for pid in live if _marked(pid, needle)}
    listed = []
    for pid in sorted(ours):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        listed.append(Survivor(pid, command.decode(errors="replace").strip()[:200]))
    return listed


def reap(run: str, grace_s: float = 5.0) -> list[Survivor]:
    """The run's survivors after waiting ``grace_s`` for them to finish exiting; those still
    there are killed (so one leaky run cannot spoil the next), and returned."""
    deadline = time.monotonic() + grace_s
    left = survivors(run)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = survivors(run)
    for survivor in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(survivor.pid, signal.SIGKILL)
    return left
