"""Guarantee 5: a close that Redis could not record when it happened (an outage, or a pool
exhausted by a storm of closes) is recorded later with its own time, so a connection that is
gone never stays registered on a live worker (a ghost no sweep removes)."""

from __future__ import annotations

from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from presence.domain import SubjectKind, SubjectRef, to_epoch
from presence.registry import ConnectionRegistry
from tests.conftest import EVERY_REDIS_MODE, ClusterFactory
from tests.support.sio import Listener
from tests.support.waiting import until

# Every test here runs on standalone Redis, Sentinel and Cluster.
pytestmark = EVERY_REDIS_MODE


async def test_a_close_redis_missed_is_recorded_later_with_its_own_time(
    make_cluster: ClusterFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    cluster = await make_cluster(1, offline_grace_s=0.5)
    token, user_id = await cluster.register("ann")
    subject = SubjectRef(SubjectKind.USER, user_id)
    presence = cluster[0].c.presence
    tab = Listener("ann")
    await tab.connect(str(cluster[0].client.make_url("/")), auth={"token": token})
    await tab.wait_for("presence:snapshot")
    assert len(await presence.sids(subject)) == 1

    real = ConnectionRegistry.disconnect
    refused: list[float] = []

    async def refused_first(self: ConnectionRegistry, *args: Any, **kwargs: Any) -> bool:
        if not refused:
            refused.append(cluster[0].c.clock.now())
            raise RedisConnectionError("No connection available.")
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(ConnectionRegistry, "disconnect", refused_first)
    await tab.close()
    await until(lambda: bool(refused), 5, what="the refused close")

    async def unregistered() -> bool:
        return await presence.sids(subject) == []

    await until(unregistered, 5, what="the connection unregistered")

    async def offline() -> bool:
        record = await presence.record(subject)
        return record is not None and not record.is_online

    await until(offline, 5, what="the subject offline after its grace period")
    record = await presence.record(subject)
    assert record is not None and record.last_seen is not None
    # lastSeen is the moment of the close, not the moment Redis recorded it.
    assert abs(to_epoch(record.last_seen) - refused[0]) < 0.2
