"""A test run that leaves a process behind fails, names it and kills it; one that cleans up
passes. Run as a separate pytest session with this suite's conftest as its plugin."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from devstack.servers import ROOT

LEAKY = """
import subprocess

STARTED = []


def test_starts_a_server_and_forgets_it() -> None:
    # A new session, as servers and `make cluster` use: no parent-child walk would find it.
    STARTED.append(subprocess.Popen(["sleep", "{seconds}"], start_new_session=True))
"""

# A child started with an environment of its own, which does not carry the run's mark: still
# found, as a descendant of the run.
LEAKY_UNMARKED = """
import subprocess

STARTED = []


def test_starts_a_server_with_a_scrubbed_environment() -> None:
    STARTED.append(subprocess.Popen(["sleep", "{seconds}"], env={"PATH": "/usr/bin:/bin"}))
"""

TIDY = """
import subprocess


def test_starts_a_server_and_stops_it() -> None:
    process = subprocess.Popen(["sleep", "{seconds}"], start_new_session=True)
    process.terminate()
    process.wait()
"""


def run_session(tmp_path: Path, source: str, seconds: str) -> subprocess.CompletedProcess[str]:
    test = tmp_path / "test_session.py"
    test.write_text(source.replace("{seconds}", seconds))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-q", "-p", "no:cacheprovider",
         "-W", "ignore::pytest.PytestUnraisableExceptionWarning", "-W",
         "ignore::ResourceWarning", "--rootdir", str(tmp_path), str(test)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def sleeping(seconds: str) -> list[str]:
    found = subprocess.run(["pgrep", "-f", f"^sleep {seconds}$"], capture_output=True, text=True)
    return found.stdout.split()


def test_a_run_that_leaves_a_process_behind_fails_and_kills_it(tmp_path: Path) -> None:
    seconds = "3141"  # a command line no other process has
    done = run_session(tmp_path, LEAKY, seconds)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "outlived it" in done.stdout and f"sleep {seconds}" in done.stdout
    assert sleeping(seconds) == []


def test_a_child_without_the_mark_is_found_too(tmp_path: Path) -> None:
    seconds = "1618"
    done = run_session(tmp_path, LEAKY_UNMARKED, seconds)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "outlived it" in done.stdout
    assert sleeping(seconds) == []


def test_a_run_that_stops_what_it_started_passes(tmp_path: Path) -> None:
    seconds = "2718"
    done = run_session(tmp_path, TIDY, seconds)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "outlived" not in done.stdout
