"""End to end against `make cluster`'s topology (the same start function): three workers, real
Redis, the real MongoDB-compatible server, nginx in front. Clients reach different workers by
connecting from different loopback addresses (nginx sticks a client to a worker by address)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio
from pymongo import AsyncMongoClient

from devstack.servers import free_port
from scripts.cluster import Topology, start, stop
from tests.support.processes import scrape
from tests.support.sio import Listener

ROOT = Path(__file__).resolve().parents[2]
# Enough addresses that the consistent hash puts at least one on every worker.
SOURCES = [f"127.0.0.{i}" for i in range(1, 61)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    run_dir = tmp_path_factory.mktemp("cluster")
    topology = start(
        run_dir, workers=3, port=free_port(), worker_settings={"PRESENCE_OFFLINE_GRACE_S": "1"}
    )
    yield topology
    stop(run_dir, topology)


def session_from(source: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0)))


async def request(
    source: str, method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    async with (
        session_from(source) as session,
        session.request(method, url, json=body, headers=headers or {}) as resp,
    ):
        return resp.status, await resp.json()


async def worker_behind(topology: Topology, source: str) -> str:
    status, body = await request(source, "GET", topology.url + "/healthz")
    assert status == 200
    worker: str = body["data"]["worker"]
    return worker


async def sources_on_distinct_workers(topology: Topology, count: int) -> list[str]:
    chosen: dict[str, str] = {}
    for source in SOURCES:
        worker = await worker_behind(topology, source)
        chosen.setdefault(worker, source)
        if len(chosen) == count:
            return list(chosen.values())
    raise AssertionError(f"{count} distinct workers not reached from {SOURCES}")


async def register(topology: Topology, name: str) -> tuple[str, str]:
    status, body = await request(
        SOURCES[0],
        "POST",
        topology.url + "/api/auth/register",
        {"username": name, "email": f"{name}@example.test", "password": "password-1"},
    )
    assert status == 201, body
    return body["token"], body["user"]["id"]


def admin(topology: Topology) -> dict[str, str]:
    return {"Authorization": f"Bearer {topology.admin_token}"}


async def database_updates(topology: Topology) -> int:
    """Update commands the database itself has served (not what the service says it did)."""
    if topology.mongo_debug_port is not None:  # FerretDB: its own request metrics
        debug = f"http://127.0.0.1:{topology.mongo_debug_port}/debug"  # serves /debug/metrics
        updates = await scrape(
            debug, "ferretdb_client_requests_total", command="update", opcode="OP_MSG"
        )
        return int(updates)
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(topology.mongo_url)
    try:
        status = await client.admin.command("serverStatus")
        return int(status["opcounters"]["update"])
    finally:
        await client.close()


@pytest.fixture
async def reset(cluster: Topology) -> None:
    status, _ = await request(
        SOURCES[0],
        "POST",
        cluster.url + "/maintenance/status-metrics/reset",
        headers=admin(cluster),
    )
    assert status == 200


async def status_metrics(topology: Topology) -> dict[str, Any]:
    await asyncio.sleep(1.0)  # every worker has flushed its counters
    status, body = await request(
        SOURCES[0], "GET", topology.url + "/maintenance/status-metrics", headers=admin(topology)
    )
    assert status == 200
    data: dict[str, Any] = body["data"]
    return data


async def test_the_original_throttle_test_through_the_load_balancer(
    cluster: Topology, reset: None
) -> None:
    token, _ = await register(cluster, "throttled")
    sources = await sources_on_distinct_workers(cluster, 3)
    for i in range(10):
        status, _ = await request(
            sources[i % 3],
            "GET",
            cluster.url + "/api/users/me",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert status == 200
    data = await status_metrics(cluster)
    assert {
        k: data[k]
        for k in (
            "totalRequests",
            "throttledRequests",
            "successfulUpdates",
            "failedUpdates",
            "throttleRate",
        )
    } == {
        "totalRequests": 10,
        "throttledRequests": 9,
        "successfulUpdates": 1,
        "failedUpdates": 0,
        "throttleRate": 90.0,
    }


async def test_the_original_load_test_writes_once(cluster: Topology, reset: None) -> None:
    token, _ = await register(cluster, "loaded")
    before = await database_updates(cluster)
    headers = {"Authorization": f"Bearer {token}"}
    statuses: list[int] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=50)) as session:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(1000):
            queue.put_nowait(i)

        async def client() -> None:
            while not queue.empty():
                queue.get_nowait()
                async with session.get(cluster.url + "/api/users/me", headers=headers) as resp:
                    await resp.read()
                    statuses.append(resp.status)

        await asyncio.gather(*(client() for _ in range(50)))
    assert statuses == [200] * 1000
    data = await status_metrics(cluster)
    assert data["totalRequests"] == 1000
    assert data["throttleRate"] >= 99.9
    assert data["successfulUpdates"] == 1
    assert await database_updates(cluster) - before == 1


async def test_clients_on_different_workers_see_each_others_transitions(
    cluster: Topology,
) -> None:
    a_token, a_id = await register(cluster, "alpha")
    b_token, b_id = await register(cluster, "beta")
    status, _ = await request(
        SOURCES[0],
        "POST",
        cluster.url + "/api/conversations",
        {"title": "t", "memberIds": [b_id]},
        {"Authorization": f"Bearer {a_token}"},
    )
    assert status == 201
    source_a, source_b = await sources_on_distinct_workers(cluster, 2)
    assert await worker_behind(cluster, source_a) != await worker_behind(cluster, source_b)
    alpha = Listener(
        "alpha",
        client=socketio.AsyncClient(reconnection=False, http_session=session_from(source_a)),
    )
    beta = Listener(
        "beta", client=socketio.AsyncClient(reconnection=False, http_session=session_from(source_b))
    )
    await alpha.connect(cluster.url, auth={"token": a_token})
    await alpha.wait_for("presence:snapshot")
    await beta.connect(cluster.url, auth={"token": b_token})
    assert (await alpha.wait_status(b_id, 1))[0]["isOnline"] is True
    await beta.close()
    assert [s["isOnline"] for s in await alpha.wait_status(b_id, 2)] == [True, False]
    # And the other way round, over long-polling, which needs the sticky routing.
    polling = Listener(
        "beta-polling",
        client=socketio.AsyncClient(reconnection=False, http_session=session_from(source_b)),
    )
    await polling.connect(cluster.url, auth={"token": b_token}, transports=["polling"])
    await polling.wait_for("presence:snapshot")
    await alpha.close()
    statuses = await polling.wait_status(a_id, 1)
    assert statuses[-1]["isOnline"] is False
    await polling.close()


@pytest.mark.parametrize("mode", ["sentinel", "cluster"])
def test_make_cluster_starts_each_redis_mode(tmp_path: Path, mode: str) -> None:
    """`make cluster REDIS=<mode>` as an operator runs it: the workers come up on that Redis
    topology, ready behind nginx, and `make cluster-stop` takes everything down."""
    port = free_port()
    # Relative, as an operator may write it: the servers run in other folders than make.
    relative = f".run/make-cluster-{mode}-{port}"
    run_dir = ROOT / relative
    settings = [f"REDIS={mode}", f"PORT={port}", "WORKERS=2", f"CLUSTER_DIR={relative}"]
    started = subprocess.run(
        ["make", "--no-print-directory", "cluster", *settings],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"({mode})" in started.stdout
        token = started.stdout.split("token    ", 1)[1].split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as resp:
            assert json.loads(resp.read())["data"]["pubsub"] == "ok"
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/maintenance/stats",
            headers={"Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert json.loads(resp.read())["data"]["workers"] == 2
    finally:
        stopped = subprocess.run(
            ["make", "--no-print-directory", "cluster-stop", f"CLUSTER_DIR={relative}"],
            cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not (run_dir / "state.json").exists()
    shutil.rmtree(run_dir, ignore_errors=True)
