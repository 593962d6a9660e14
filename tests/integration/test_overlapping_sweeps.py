"""Guarantee 4: sweeps are idempotent, so two sweepers running at once (a failover overlap)
reach the same state and announce every transition once."""

from __future__ import annotations

import asyncio

from presence.app import MAINTENANCE
from presence.domain import StatusChange, SubjectKind, SubjectRef
from presence.registry import ConnectionRegistry
from tests.conftest import EVERY_REDIS_MODE, ClusterFactory

# Every test here runs on standalone Redis, Sentinel and Cluster.
pytestmark = EVERY_REDIS_MODE


async def test_two_overlapping_sweeps_announce_each_transition_once(
    make_cluster: ClusterFactory,
) -> None:
    # A long maintenance interval: only the sweeps this test starts run.
    cluster = await make_cluster(
        3,
        maintenance_interval_s=3600.0,
        offline_threshold_s=1.0,
        throttle_interval_s=0.5,
        offline_grace_s=0.2,
        worker_ttl_s=0.6,
    )
    heard: list[StatusChange] = []

    async def on_change(change: StatusChange) -> None:
        if change.public_changed and not change.public.is_online:
            heard.append(change)

    for worker in cluster.workers:
        worker.c.presence.add_listener(on_change)
    quiet = [await cluster.register(f"quiet{i}") for i in range(20)]
    for i, (token, _) in enumerate(quiet):
        resp = await cluster[i % 3].client.get(
            "/api/users/me", headers={"Authorization": f"Bearer {token}"}
        )
        assert resp.status == 200
    # What a crashed worker leaves in Redis: connections of 10 subjects, an expired beat.
    ghosts = [await cluster.register(f"ghost{i}") for i in range(10)]
    c = cluster[0].c
    w = cluster[0]
    crashed = ConnectionRegistry(w.redis, w.keys, "crashed", 1.0)
    for i, (_, user_id) in enumerate(ghosts):
        await crashed.connect(SubjectRef(SubjectKind.USER, user_id), f"sid-{i}", c.clock.now())
    await w.redis.zadd(w.keys.workers, {"crashed": int(c.clock.now() * 1000) + 100})
    await cluster.settle()
    await asyncio.sleep(1.2)  # quiet past the threshold; the crashed worker's beat expired

    sweepers = [w.app[MAINTENANCE].sweeper for w in cluster.workers]
    for sweeper in sweepers:  # both believe they lead: the overlap of a failover
        sweeper._may_write = _always  # type: ignore[method-assign]
    reports = await asyncio.gather(*(s.sweep() for s in sweepers))
    assert sum(r.quiet_offline for r in reports) == 20
    await asyncio.sleep(0.2)  # the grace period of the dead worker's connections
    await asyncio.gather(*(w.c.presence.finish_graces() for w in cluster.workers))
    await asyncio.sleep(0.1)
    offline = [c.public.subject.id for c in heard]
    expected = {uid for _, uid in quiet} | {uid for _, uid in ghosts}
    assert sorted(offline) == sorted(expected)  # each exactly once
    again = await asyncio.gather(*(s.sweep() for s in sweepers))
    assert sum(r.quiet_offline for r in again) == 0


async def _always() -> bool:
    return True


async def test_a_worker_restarted_with_the_same_id_closes_its_previous_connections(
    make_cluster: ClusterFactory,
) -> None:
    first = await make_cluster(1, offline_grace_s=0.2)
    _, user_id = await first.register("restarted")
    subject = SubjectRef(SubjectKind.USER, user_id)
    await first[0].c.presence.connect(subject, "sid-of-the-previous-life")
    assert (await first[0].c.presence.record(subject)).is_online  # type: ignore[union-attr]
    heard: list[StatusChange] = []

    async def on_change(change: StatusChange) -> None:
        heard.append(change)

    # The same worker id comes back (a container restart) while its old entries remain.
    second = await make_cluster(1, offline_grace_s=0.2)
    for app in (first[0], second[0]):  # either may finish the grace period: one announces
        app.c.presence.add_listener(on_change)
    assert second[0].c.settings.worker_id == first[0].c.settings.worker_id
    assert await second[0].c.presence.sids(subject) == []
    await asyncio.sleep(0.8)  # the grace period, then the finisher
    assert [c.public.is_online for c in heard] == [False]
