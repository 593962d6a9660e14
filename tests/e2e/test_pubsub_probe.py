"""A deaf pub/sub listener is visible in /readyz and metrics, and cross-worker broadcasts
resume once Redis is back (Redis is really killed and restarted)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from devstack.servers import Server, redis_server, redis_url_of
from tests.conftest import service_env
from tests.support.accounts import call, conversation, register
from tests.support.processes import WorkerProcess, clean_env, scrape, start_worker, until_healthy
from tests.support.sio import Listener
from tests.support.waiting import until


@pytest.fixture
def own_redis() -> Iterator[Server]:
    server = redis_server()
    server.start()
    yield server
    server.cleanup()


async def ready(worker: WorkerProcess) -> tuple[int, dict[str, str]]:
    status, body = await call("GET", worker.url + "/readyz")
    return status, body["data"]


def ready_is(worker: WorkerProcess, status: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await ready(worker))[0] == status

    return check


async def test_deaf_listener_is_reported_and_broadcasts_resume_after_redis_returns(
    tmp_path: Path, own_redis: Server, mongo_url: str
) -> None:
    env = clean_env(**service_env(redis_url_of(own_redis), mongo_url, PRESENCE_OFFLINE_GRACE_S="1"))
    workers = [start_worker(env, tmp_path, f"w{i}") for i in range(2)]
    try:
        for worker in workers:
            await until_healthy(worker)
        for worker in workers:
            await until(ready_is(worker, 200), 10, 0.2)
        assert await ready(workers[1]) == (200, {"redis": "ok", "mongodb": "ok", "pubsub": "ok"})

        own_redis.kill()

        async def deaf() -> bool:
            return (await ready(workers[1]))[1].get("pubsub") == "down"

        await until(deaf, 15, 0.2)
        status, checks = await ready(workers[1])
        assert status == 503 and checks["redis"] == "down"
        assert await scrape(workers[1].url, "presence_pubsub_deaf") == 1
        assert workers[0].process.poll() is None and workers[1].process.poll() is None

        own_redis.start()
        recovered = await until(ready_is(workers[1], 200), 40, 0.2)
        await until(ready_is(workers[0], 200), 40, 0.2)
        assert await scrape(workers[1].url, "presence_pubsub_deaf_episodes_total") >= 1

        one, two = await register(workers[0].url, "one"), await register(workers[0].url, "two")
        await conversation(workers[0].url, two, [one], "room")
        listener = Listener("two")
        await listener.connect(workers[1].url, auth={"token": two.token})
        await listener.wait_for("presence:snapshot")
        status, _ = await call("GET", f"{workers[0].url}/api/users/me", headers=one.bearer)
        assert status == 200
        heard = await listener.wait_status(one.id, 1)
        assert heard[0]["isOnline"] is True
        await listener.close()
        print(f"pub/sub ready again {recovered:.1f} s after Redis returned")
    finally:
        for worker in workers:
            worker.stop()
