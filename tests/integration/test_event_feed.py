"""The change feed on real Redis in every mode, two workers: each announced transition once, in
order, as everyone but the subject saw it (never an invisible subject's real state), read from
any worker, and a waiting read woken by a transition another worker decided."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.conftest import EVERY_REDIS_MODE, ClusterFactory
from tests.support.cluster import Cluster
from tests.support.sio import Listener
from tests.support.waiting import until

pytestmark = EVERY_REDIS_MODE


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def read(cluster: Cluster, worker: int, token: str, after: str | None) -> dict[str, Any]:
    query = {} if after is None else {"after": after}
    resp = await cluster[worker].client.get(
        "/api/service/events", headers=bearer(token), params=query
    )
    body = await resp.json()
    assert resp.status == 200, body
    page: dict[str, Any] = body["data"]
    return page


async def test_every_transition_once_in_order_in_its_public_view(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(2, offline_grace_s=0.0, events_wait_s=0.0)
    token = await cluster[0].c.service_tokens.create("feed", ("events:read",))
    one, one_token, watcher = await cluster.watched_user()
    socket = Listener("one")
    await socket.connect(str(cluster[0].client.make_url("/")), auth={"token": one_token})
    await socket.wait_for("presence:snapshot")
    for status in ("dnd", "invisible", "online"):
        resp = await cluster[1].client.put(
            "/api/users/me/status", headers=bearer(one_token), json={"status": status}
        )
        assert resp.status == 200
    await socket.close()
    await watcher.wait_for("user:status", count=5)

    events: list[dict[str, Any]] = []

    async def all_five() -> bool:
        page = await read(cluster, 1, token, None)
        events[:] = [e for e in page["events"] if e["subjectId"] == one]
        return len(events) >= 5

    await until(all_five, timeout_s=5)
    assert [(e["status"], e["isOnline"]) for e in events] == [
        ("online", True),
        ("dnd", True),
        ("offline", False),  # invisible: what everyone else saw
        ("online", True),
        ("offline", False),
    ]
    assert all(e["isAnonymous"] is False for e in events)
    ids = [e["id"] for e in events]
    assert ids == sorted(ids, key=lambda i: tuple(int(p) for p in i.split("-")))
    page = await read(cluster, 0, token, ids[-1])
    assert [e for e in page["events"] if e["subjectId"] == one] == []
    await watcher.close()


async def test_a_waiting_read_wakes_for_a_transition_decided_on_another_worker(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(2, events_wait_s=5.0)
    token = await cluster[0].c.service_tokens.create("feed", ("events:read",))
    ann_token, ann = await cluster.register("ann")  # registering is not activity
    waiting = asyncio.create_task(read(cluster, 1, token, "0-0"))
    await asyncio.sleep(0.5)
    assert not waiting.done()
    began = time.monotonic()
    # REST activity: ann comes online, decided (and appended) on worker 0.
    assert (await cluster[0].client.get("/api/users/me", headers=bearer(ann_token))).status == 200
    page = await waiting
    assert [(e["subjectId"], e["status"]) for e in page["events"]] == [(ann, "online")]
    assert time.monotonic() - began < 1.5
    resp = await cluster[0].client.get(
        "/api/service/events",
        headers=bearer(await cluster[0].c.service_tokens.create("p", ("presence:read",))),
    )
    assert (resp.status, (await resp.json())["error"]["code"]) == (403, "missing_scope")
    for query, code in (({"after": "nope"}, "invalid_cursor"), ({"limit": "x"}, "invalid_limit")):
        resp = await cluster[0].client.get(
            "/api/service/events", headers=bearer(token), params=query
        )
        assert (resp.status, (await resp.json())["error"]["code"]) == (400, code)
