"""SPEC §4/§5 and guarantee 1: at most one lastActiveAt write per subject per window,
cluster-wide, with counters summed over every worker."""

from __future__ import annotations

import asyncio
from typing import Any

from presence.domain import SubjectKind, SubjectRef
from tests.conftest import EVERY_REDIS_MODE, ClusterFactory
from tests.support.cluster import Cluster

# Every test here runs on standalone Redis, Sentinel and Cluster.
pytestmark = EVERY_REDIS_MODE


async def status_metrics(cluster: Cluster, worker: int, admin: str) -> dict[str, Any]:
    resp = await cluster[worker].client.get(
        "/maintenance/status-metrics", headers={"Authorization": f"Bearer {admin}"}
    )
    assert resp.status == 200
    data: dict[str, Any] = (await resp.json())["data"]
    return data


async def test_ten_requests_over_three_workers_give_the_original_numbers(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(3)
    admin = await cluster.admin_token()
    token, _ = await cluster.register("alice")
    await cluster.settle()
    resp = await cluster[1].client.post(
        "/maintenance/status-metrics/reset", headers={"Authorization": f"Bearer {admin}"}
    )
    assert resp.status == 200

    for i in range(10):
        resp = await cluster[i % 3].client.get(
            "/api/users/me", headers={"Authorization": f"Bearer {token}"}
        )
        assert resp.status == 200
    await cluster.settle()

    expected = {
        "totalRequests": 10,
        "throttledRequests": 9,
        "successfulUpdates": 1,
        "failedUpdates": 0,
        "cacheSize": 1,
        "throttleRate": 90.0,
    }
    # Other workers flush their counters every 0.25 s: correct within 1 s from any worker.
    await asyncio.sleep(1.0)
    for w in range(3):
        assert await status_metrics(cluster, w, admin) == expected
    assert cluster.writes.last_active_writes == 1


async def test_fifty_concurrent_requests_on_three_workers_write_once(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(3)
    token, user_id = await cluster.register("bob")
    await cluster.settle()
    before = cluster.writes.last_active_writes

    async def hit(i: int) -> int:
        resp = await cluster[i % 3].client.get(
            "/api/users/me", headers={"Authorization": f"Bearer {token}"}
        )
        return resp.status

    statuses = await asyncio.gather(*(hit(i) for i in range(50)))
    await cluster.settle()

    assert statuses == [200] * 50
    assert cluster.writes.last_active_writes - before == 1
    subject = SubjectRef(SubjectKind.USER, user_id)
    stored = await cluster[0].store.get_presence([subject])
    assert stored[subject].last_active_at is not None
    assert stored[subject].is_online
