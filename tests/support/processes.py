"""Workers as real ``presence serve`` processes, and reading them over HTTP.

Async tests use the coroutines (:func:`until_healthy`, :func:`scrape`): a blocking call there
would stall every socket client and load generator the test runs in the same loop."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from devstack.metrics import metric_sum
from devstack.servers import free_port, stop_process
from devstack.workers import clean_env, spawn_worker

__all__ = ["WorkerProcess", "clean_env", "start_worker"]


@dataclass
class WorkerProcess:
    port: int
    log_path: Path
    process: subprocess.Popen[bytes]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.process)


def start_worker(env: dict[str, str], log_dir: Path, name: str) -> WorkerProcess:
    port = free_port()
    log_path = log_dir / f"{name}.log"
    process = spawn_worker(name, env, log_path, port=port)
    return WorkerProcess(port, log_path, process, env)


def http(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as err:
        raw = err.read()
        status = err.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def wait_healthy(worker: WorkerProcess, timeout_s: float = 15.0) -> float:
    """Seconds until ``/healthz`` answered 200."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if worker.process.poll() is not None:
            raise AssertionError(f"worker exited:\n{worker.output()[-3000:]}")
        try:
            status, _ = http("GET", worker.url + "/healthz")
            if status == 200:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"no /healthz after {timeout_s} s:\n{worker.output()[-3000:]}")


def wait_ready(worker: WorkerProcess, timeout_s: float = 20.0) -> float:
    """Seconds until ``/readyz`` answered 200: Redis and the database answer, and the pub/sub
    listener hears the worker's own probe."""
    started = time.monotonic()
    deadline = started + timeout_s
    body: Any = None
    while time.monotonic() < deadline:
        status, body = http("GET", worker.url + "/readyz")
        if status == 200:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"not ready after {timeout_s} s: {body}\n{worker.output()[-3000:]}")


def start_ready_workers(env: dict[str, str], log_dir: Path, count: int) -> list[WorkerProcess]:
    """``count`` workers ``w0``…, each healthy and ready; stop them when done."""
    workers = [start_worker(env, log_dir, f"w{i}") for i in range(count)]
    try:
        for worker in workers:
            wait_healthy(worker)
            wait_ready(worker)
    except BaseException:
        for worker in workers:
            worker.stop()
        raise
    return workers


def register_over_http(url: str, name: str) -> dict[str, str]:
    """A new account through the REST API; its bearer header."""
    body = {"username": name, "email": f"{name}@example.test", "password": "password-1"}
    status, answer = http("POST", url + "/api/auth/register", body)
    assert status == 201, answer
    return {"Authorization": f"Bearer {answer['token']}"}


async def until_healthy(worker: WorkerProcess, timeout_s: float = 15.0) -> float:
    """Seconds until ``/healthz`` answered 200, without blocking the event loop."""
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while time.monotonic() - started < timeout_s:
            if worker.process.poll() is not None:
                raise AssertionError(f"worker exited:\n{worker.output()[-3000:]}")
            try:
                async with session.get(worker.url + "/healthz") as resp:
                    if resp.status == 200:
                        return time.monotonic() - started
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.05)
    raise AssertionError(f"no /healthz after {timeout_s} s:\n{worker.output()[-3000:]}")


async def scrape(url: str, name: str, **labels: str) -> float:
    """The sum of one series of a worker's ``/metrics`` over the label sets matching ``labels``
    (0 when absent), parsed by prometheus_client's own parser."""
    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    return metric_sum(text, name, **labels)
