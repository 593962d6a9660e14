"""A sweep of many stale subjects against the test database: the store never sends a bulk
larger than ``PRESENCE_MONGO_MAX_BATCH`` (FerretDB waits forever on one larger than its pool)."""

from __future__ import annotations

import asyncio
import time

from presence.app import MAINTENANCE
from presence.domain import Role, SubjectKind, SubjectRef, from_epoch
from tests.conftest import EVERY_REDIS_MODE, ClusterFactory
from tests.support.waiting import until

# Every test here runs on standalone Redis, Sentinel and Cluster.
pytestmark = EVERY_REDIS_MODE

STALE = 1000


async def test_a_sweep_of_1000_stale_subjects_writes_them_all_in_bounded_bulks(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(
        1, maintenance_interval_s=3600.0, offline_threshold_s=60.0, mongo_max_batch=40
    )
    c = cluster[0].c
    w = cluster[0]
    now = c.clock.now()
    created = []
    for start in range(0, STALE, 50):  # side by side, within the client's pool
        created += await asyncio.gather(
            *(
                w.store.create_user(
                    username=f"stale{i}",
                    email=f"stale{i}@example.test",
                    password_hash="-",
                    role=Role.USER,
                    now=from_epoch(now),
                )
                for i in range(start, start + 50)
            )
        )
    subjects = [SubjectRef(SubjectKind.USER, u.id) for u in created]
    for subject in subjects:
        await w.store.record_activity(subject, from_epoch(now - 120), mark_online=True)
    # What REST-only subjects that went quiet two minutes ago leave in Redis.
    members = [s.member for s in subjects]
    for member in members:
        bucket = w.keys.bucket(member)
        await w.redis.sadd(bucket.online, member)
        await w.redis.zadd(bucket.last_activity, {member: int((now - 120) * 1000)})

    maintenance = cluster[0].app[MAINTENANCE]
    election = asyncio.create_task(maintenance.lease.run())
    try:
        await until(maintenance.lease.valid, what="the lease")
        before = cluster.writes.update_commands
        started = time.monotonic()
        report = await maintenance.sweeper.sweep()
        elapsed = time.monotonic() - started
    finally:
        election.cancel()
        await maintenance.lease.release()

    assert report.ran and report.quiet_offline == STALE
    assert cluster.writes.largest_update <= 40
    assert cluster.writes.update_commands - before >= STALE // 40
    stored = await w.store.get_presence(subjects)
    assert len(stored) == STALE
    assert not any(p.is_online for p in stored.values())
    assert {p.last_seen for p in stored.values()} == {from_epoch(now - 120)}
    print(f"sweep of {STALE} stale subjects: {elapsed:.2f} s")
