"""Real Redis and MongoDB-compatible servers on free ports, started and stopped by the tests.

``mongod`` is used when it is on PATH, else FerretDB (built by ``scripts/test-services.sh``) with
its embedded SQLite backend. A missing binary is an error, never a skip.
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

ROOT = Path(__file__).resolve().parents[2]
FERRETDB = ROOT / ".cache" / "bin" / "ferretdb"


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
    """One server process; ``stop()``/``start()`` again keep the same port and data."""

    argv: list[str]
    port: int
    workdir: Path
    log_path: Path
    extra_ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        try:
            wait_for_port(self.port)
        except RuntimeError:
            self.stop()
            raise RuntimeError(
                f"{self.argv[0]} did not start:\n{self.log_path.read_text()[-2000:]}"
            ) from None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def redis_server() -> Server:
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
    ]
    return Server(argv, port, workdir, workdir / "redis.log")


def mongo_server() -> Server:
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="presence-mongo-"))
    mongod = shutil.which("mongod")
    if mongod is not None:
        argv = [
            mongod,
            "--port",
            str(port),
            "--bind_ip",
            "127.0.0.1",
            "--dbpath",
            str(workdir),
            "--quiet",
        ]
        return Server(argv, port, workdir, workdir / "mongod.log")
    if not FERRETDB.exists():
        raise RuntimeError("no mongod on PATH and no FerretDB build: run scripts/test-services.sh")
    debug_port = free_port()
    (workdir / "data").mkdir()
    argv = [
        str(FERRETDB),
        "--handler=sqlite",
        f"--sqlite-url=file:{workdir / 'data'}/",
        f"--listen-addr=127.0.0.1:{port}",
        "--telemetry=disable",
        f"--debug-addr=127.0.0.1:{debug_port}",
        f"--state-dir={workdir}",
        "--log-level=warn",
    ]
    return Server(argv, port, workdir, workdir / "ferretdb.log", {"debug": debug_port})


def redis_url_of(server: Server) -> str:
    return f"redis://127.0.0.1:{server.port}/0"


def mongo_url_of(server: Server) -> str:
    return f"mongodb://127.0.0.1:{server.port}/?serverSelectionTimeoutMS=3000"


def env_or_none(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None
