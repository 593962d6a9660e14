"""Maintenance endpoints: admin only, cluster-wide counters, forced status (SPEC §6.2)."""

from __future__ import annotations

from typing import Any

import pytest

from presence.app import MAINTENANCE
from presence.domain import SubjectKind, SubjectRef
from tests.conftest import EVERY_REDIS_MODE, ClusterFactory
from tests.support.waiting import until

# Every test here runs on standalone Redis, Sentinel and Cluster.
pytestmark = EVERY_REDIS_MODE

ENDPOINTS = [
    ("GET", "/maintenance/stats", None),
    ("GET", "/maintenance/status-metrics", None),
    ("POST", "/maintenance/status-metrics/reset", None),
    ("POST", "/maintenance/user-status", {"userId": "x", "isOnline": True}),
]


async def test_maintenance_needs_an_admin(make_cluster: ClusterFactory) -> None:
    cluster = await make_cluster(1)
    user, _ = await cluster.register("user")
    admin = await cluster.admin_token()
    client = cluster[0].client
    for method, path, body in ENDPOINTS:
        resp = await client.request(method, path, json=body)
        assert resp.status == 401, path
        assert (await resp.json())["success"] is False
        resp = await client.request(method, path, json=body, headers={"Authorization": "Bearer x"})
        assert resp.status == 401, path
        resp = await client.request(
            method, path, json=body, headers={"Authorization": f"Bearer {user}"}
        )
        assert resp.status == 403, path
        assert (await resp.json())["error"]["code"] == "admin_required"
        resp = await client.request(
            method, path, json=body, headers={"Authorization": f"Bearer {admin}"}
        )
        assert resp.status in (200, 404), path  # 404: user-status of the unknown id "x"


async def test_reset_zeroes_the_counters_cluster_wide_and_counting_goes_on(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(3)
    admin = {"Authorization": f"Bearer {await cluster.admin_token()}"}
    tokens = [(await cluster.register(f"u{i}"))[0] for i in range(3)]
    for i, token in enumerate(tokens):
        for w in range(3):
            resp = await cluster[w].client.get(
                "/api/users/me", headers={"Authorization": f"Bearer {token}"}
            )
            assert resp.status == 200, i
    await cluster.settle()

    async def figures(w: int, *names: str) -> tuple[Any, ...]:
        resp = await cluster[w].client.get("/maintenance/status-metrics", headers=admin)
        data = (await resp.json())["data"]
        return tuple(data[n] for n in names)

    # Cluster-wide within 1 s of the last request (SPEC §5).
    async def all_counted() -> bool:
        found = await figures(0, "totalRequests", "successfulUpdates", "cacheSize")
        return found == (9, 3, 3)

    await until(all_counted, 1.0, what="9 requests, 3 writes, 3 windows")

    resp = await cluster[2].client.post("/maintenance/status-metrics/reset", headers=admin)
    assert resp.status == 200

    async def zeroed_everywhere() -> bool:
        return all(
            [
                await figures(w, "totalRequests", "throttledRequests", "throttleRate", "cacheSize")
                == (0, 0, 0, 3)  # subjects still inside their windows
                for w in range(3)
            ]
        )

    await until(zeroed_everywhere, 1.0, what="zeroed counters on every worker")
    await cluster[1].client.get("/api/users/me", headers={"Authorization": f"Bearer {tokens[0]}"})
    await cluster.settle()

    async def counting_again() -> bool:
        found = await figures(0, "totalRequests", "throttledRequests", "throttleRate")
        return found == (1, 1, 100.0)

    await until(counting_again, 1.0, what="one throttled request after the reset")


async def test_stats_are_read_from_the_live_cluster(make_cluster: ClusterFactory) -> None:
    cluster = await make_cluster(3)
    admin = {"Authorization": f"Bearer {await cluster.admin_token()}"}
    token, _ = await cluster.register("u")
    await cluster[0].client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})
    await cluster.settle()
    for w in range(3):
        await cluster[w].c.registry.heartbeat()
    leaders = [w.app[MAINTENANCE].lease for w in cluster.workers]
    # The election runs on start-up.
    await until(lambda: any(lease.held for lease in leaders), 5.0, what="a leader")
    data = (await (await cluster[1].client.get("/maintenance/stats", headers=admin)).json())["data"]
    leader = data.pop("leader")
    assert data == {
        "onlineUsers": 1,
        "totalUsers": 2,
        "anonymousSessions": 0,
        "onlineAnonymous": 0,
        "offlineThresholdMinutes": 5,
        "maintenanceActive": True,
        "workers": 3,
    }
    assert [lease.held for lease in leaders].count(True) == 1
    assert leader == next(lease.worker_id for lease in leaders if lease.held)
    await cluster[2].c.registry.leave()
    data = (await (await cluster[1].client.get("/maintenance/stats", headers=admin)).json())["data"]
    assert data["workers"] == 2


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'{"userId": 5, "isOnline": true}',
        b'{"userId": "x"}',
        b'{"userId": "x", "isOnline": "yes"}',
        b'{"isOnline": false}',
    ],
)
async def test_user_status_refuses_a_bad_body(make_cluster: ClusterFactory, body: bytes) -> None:
    cluster = await make_cluster(1)
    admin = {"Authorization": f"Bearer {await cluster.admin_token()}"}
    resp = await cluster[0].client.post("/maintenance/user-status", data=body, headers=admin)
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["code"] in ("invalid_json", "invalid_input")


async def test_user_status_changes_the_stored_state_and_404s_unknown_ids(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(2)
    admin = {"Authorization": f"Bearer {await cluster.admin_token()}"}
    token, user_id = await cluster.register("u")
    await cluster[0].client.get("/api/users/me", headers={"Authorization": f"Bearer {token}"})
    await cluster.settle()
    subject = SubjectRef(SubjectKind.USER, user_id)

    resp = await cluster[1].client.post(
        "/maintenance/user-status", json={"userId": "0" * 24, "isOnline": True}, headers=admin
    )
    assert resp.status == 404
    resp = await cluster[1].client.post(
        "/maintenance/user-status", json={"userId": user_id, "isOnline": False}, headers=admin
    )
    assert resp.status == 200
    assert (await resp.json())["data"]["isOnline"] is False
    stored = (await cluster[0].store.get_presence([subject]))[subject]
    assert not stored.is_online
    assert stored.last_seen is not None
    resp = await cluster[0].client.post(
        "/maintenance/user-status", json={"userId": user_id, "isOnline": True}, headers=admin
    )
    assert (await resp.json())["data"]["isOnline"] is True
    assert (await cluster[0].store.get_presence([subject]))[subject].is_online
