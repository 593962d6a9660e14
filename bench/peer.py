"""The peer B12 measures against: Centrifugo v6 nodes on the benchmark's Redis, and the Node
process (``bench/js/peer.mjs``) that drives the clients of both systems the same way."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import jwt

from bench.harness import LOAD_CPU, ROOT, WORKER_CPU, Worker, taskset
from devstack.servers import free_port

CENTRIFUGO_VERSION = "v6.9.1"
CACHE = ROOT / ".cache" / "peer"
BINARY = CACHE / "bin" / "centrifugo"
API_KEY = "bench-api-key"
NAMESPACE = "conversation"
SCRIPT = ROOT / "bench" / "js" / "peer.mjs"


def ensure_built() -> Path:
    """Build Centrifugo from the Go module proxy into the git-ignored cache (once)."""
    subprocess.run(["bash", str(ROOT / "scripts" / "peer.sh")], check=True)
    return BINARY


def centrifugo_config(port: int, redis_url: str, secret: str) -> dict[str, Any]:
    """One node: the Redis engine (broker and presence) on the shared Redis, HMAC tokens, a
    ``conversation:`` namespace with presence and join/leave pushes, the server HTTP API."""
    return {
        "http_server": {"address": "127.0.0.1", "port": port},
        "log": {"level": "error"},
        "engine": {"type": "redis", "redis": {"address": [redis_url], "prefix": "cfbench"}},
        "client": {"token": {"hmac_secret_key": secret}, "allowed_origins": ["*"]},
        "channel": {
            "namespaces": [
                {
                    "name": NAMESPACE,
                    "presence": True,
                    "join_leave": True,
                    "force_push_join_leave": True,
                    "allow_subscribe_for_client": True,
                }
            ]
        },
        "http_api": {"key": API_KEY},
        "health": {"enabled": True},
        "usage_stats": {"disabled": True},
    }


def start_centrifugo(run_dir: Path, name: str, redis_url: str, secret: str) -> Worker:
    """A node on the workers' core with ``GOMAXPROCS=1``: one core per server process."""
    port = free_port()
    config = run_dir / f"{name}.json"
    config.write_text(json.dumps(centrifugo_config(port, redis_url, secret), indent=1))
    log_path = run_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*taskset(WORKER_CPU), str(BINARY), "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={"PATH": os.environ.get("PATH", ""), "GOMAXPROCS": "1"},
        )
    node = Worker(name, port, process, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited:\n{log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(node.url + "/health", timeout=2) as resp:
                if resp.status == 200:
                    return node
        except OSError:
            time.sleep(0.05)
    node.stop(kill=True)
    raise RuntimeError(f"{name} not healthy after 30 s")


def centrifugo_token(secret: str, user_id: str) -> str:
    return jwt.encode({"sub": user_id, "exp": int(time.time()) + 6 * 3600}, secret, "HS256")


def centrifugo_presence(node: Worker, channel: str) -> int:
    """The server API's presence of a channel; returns how many clients it lists."""
    request = urllib.request.Request(
        node.url + "/api/presence",
        data=json.dumps({"channel": channel}).encode(),
        headers={"X-API-Key": API_KEY, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        body = json.load(resp)
    return len(body["result"]["presence"])


class PeerClients:
    """One Node process on the load core; every command waits for its one answer."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [*taskset(LOAD_CPU), "node", str(SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=SCRIPT.parent,
            env={"PATH": os.environ.get("PATH", "")},
        )
        self._read("ready")

    def _read(self, event: str) -> dict[str, Any]:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"peer clients exited waiting for {event!r}")
        message: dict[str, Any] = json.loads(line)
        if message.get("event") != event:
            raise RuntimeError(f"peer clients answered {message} instead of {event!r}")
        return message

    def command(self, answer: str, **command: Any) -> dict[str, Any]:
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps(command) + "\n")
        self._process.stdin.flush()
        return self._read(answer)

    def close(self) -> None:
        if self._process.poll() is None:
            try:
                self.command("bye", cmd="quit")
                self._process.wait(timeout=10)
            except (RuntimeError, BrokenPipeError, subprocess.TimeoutExpired):
                self._process.kill()
                self._process.wait()
