"""Real worker processes sharing the session's Redis and MongoDB-compatible server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import service_env
from tests.support.processes import WorkerProcess, clean_env, start_worker, until_healthy
from tests.support.sio import Listener

WorkersFactory = Callable[..., Coroutine[Any, Any, list[WorkerProcess]]]


@pytest.fixture(autouse=True)
async def close_socket_clients() -> AsyncIterator[None]:
    yield
    await Listener.close_all()


@pytest.fixture
def start_workers(tmp_path: Path, mode_url: str, mongo_url: str) -> Iterator[WorkersFactory]:
    started: list[WorkerProcess] = []

    async def start(count: int = 3, **settings: str) -> list[WorkerProcess]:
        extra = {f"PRESENCE_{k.upper()}": str(v) for k, v in settings.items()}
        env = clean_env(**service_env(mode_url, mongo_url, **extra))
        workers = [start_worker(env, tmp_path, f"w{i}") for i in range(count)]
        started.extend(workers)
        for worker in workers:
            await until_healthy(worker)
        return workers

    yield start
    for worker in started:
        worker.stop()
