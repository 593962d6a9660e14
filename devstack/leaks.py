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


def survivors(run: str) -> list[Survivor]:
    """Live processes (not zombies) that carry ``run``'s mark, this process excluded."""
    needle = f"{MARK}={run}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        if not _marked(pid, needle):
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        found.append(Survivor(pid, command.strip()[:200]))
    return found


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
