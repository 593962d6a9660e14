"""Server processes on free loopback ports: Redis, and the process wrapper every server uses.

A missing binary is an error naming the command that installs it, never a skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Folders a test run or `make cluster` writes to: git-ignored.
RUN_DIR = ROOT / ".run"
CACHE_DIR = ROOT / ".cache"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {timeout_s} s")


@dataclass
class Server:
    """One server process; ``stop()`` then ``start()`` again keep the same port and data.

    ``kind`` names what it is (``redis``, ``mongod``, ``ferretdb``): the URL helpers use it.
    """

    argv: list[str]
    port: int
    workdir: Path
    log_path: Path
    kind: str = "redis"
    extra_ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    # A new session: a Ctrl-C meant for the caller does not reach the server first, and
    # `make cluster` can leave it running on purpose.
    detach: bool = False

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=self.detach,
            )
        try:
            wait_for_port(self.port)
        except RuntimeError:
            self.stop()
            raise RuntimeError(
                f"{self.argv[0]} did not start:\n{self.log_path.read_text()[-2000:]}"
            ) from None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None:
            stop_process(self.process, sig)
        self.process = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def stop_process(
    process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout_s: float = 10.0
) -> None:
    """Ask ``process`` to stop with ``sig``, wait for it, and kill it if it does not stop."""
    if process.poll() is None:
        process.send_signal(sig)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def redis_server(*, detach: bool = False, extra: list[str] | None = None) -> Server:
    """A standalone ``redis-server`` on a free port (``extra``: more of its options)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed: run scripts/test-services.sh")
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="presence-redis-"))
    argv = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
        *(extra or []),
    ]
    return Server(argv, port, workdir, workdir / "redis.log", kind="redis", detach=detach)


def redis_url_of(server: Server) -> str:
    return f"redis://127.0.0.1:{server.port}/0"


def env_or_none(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None
