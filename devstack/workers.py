"""Worker processes (``python -m presence serve``) for tests, benchmarks and ``make cluster``:
one way to build their environment and one way to start them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

SERVE = [sys.executable, "-m", "presence", "serve"]


def clean_env(**settings: str) -> dict[str, str]:
    """This process's environment without any PRESENCE_* setting of the caller, plus
    ``settings`` (full variable names)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRESENCE_")}
    env.update(settings)
    return env


def settings_env(**settings: object) -> dict[str, str]:
    """``redis_url="..."`` as ``PRESENCE_REDIS_URL="..."``."""
    return {f"PRESENCE_{name.upper()}": str(value) for name, value in settings.items()}


def spawn_worker(
    name: str,
    env: dict[str, str],
    log_path: Path,
    *,
    port: int,
    prefix: Sequence[str] = (),
    detach: bool = False,
) -> subprocess.Popen[bytes]:
    """Start one worker listening on ``127.0.0.1:port``, its output appended to ``log_path``.
    ``prefix`` goes before the command (``taskset -c 0``); ``detach`` starts a new session,
    so the worker outlives its caller (``make cluster``) and a Ctrl-C does not reach it."""
    full_env = {**env, "PRESENCE_PORT": str(port), "PRESENCE_HOST": "127.0.0.1"}
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [*prefix, *SERVE, "--worker-id", name],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=detach,
        )
