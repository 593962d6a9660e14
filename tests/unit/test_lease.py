"""The maintenance lease's rules, on in-process Redis with a fake clock."""

from __future__ import annotations

import fakeredis
import pytest

from presence.keys import Keys
from presence.maintenance.lease import LeaderLease
from presence.metrics import Metrics
from presence.store.memory import MemoryStore
from tests.support.fakes import FakeClock


def lease(
    redis: fakeredis.FakeAsyncRedis,
    clock: FakeClock,
    store: MemoryStore,
    name: str,
    **kwargs: float,
) -> LeaderLease:
    return LeaderLease(
        redis=redis,
        keys=Keys("t:"),
        clock=clock,
        metrics=Metrics(name),
        worker_id=name,
        incarnation="i-" + name,
        ttl_s=kwargs.pop("ttl_s", 15.0),
        next_epoch=store.next_leader_epoch,
        **kwargs,
    )


def test_a_ttl_shorter_than_three_renewals_is_refused_at_start_up() -> None:
    redis, clock, store = fakeredis.FakeAsyncRedis(), FakeClock(), MemoryStore()
    with pytest.raises(ValueError, match="at least 3 renewals"):
        lease(redis, clock, store, "w0", ttl_s=10.0, renew_every_s=4.0)
    lease(redis, clock, store, "w0", ttl_s=12.0, renew_every_s=4.0)


async def test_one_holder_each_grant_a_new_epoch_and_validity_needs_renewals() -> None:
    redis, clock, store = fakeredis.FakeAsyncRedis(), FakeClock(), MemoryStore()
    a, b = lease(redis, clock, store, "a"), lease(redis, clock, store, "b")
    assert await a.try_acquire()
    assert not await b.try_acquire()
    assert (a.epoch, a.valid(), b.valid()) == (1, True, False)
    clock.advance(9.9)
    assert a.valid()
    clock.advance(0.2)  # two thirds of the TTL without a renewal: no longer trusted
    assert not a.valid()
    assert await a.renew()
    assert a.valid()
    await a.release()
    assert not a.held
    assert await b.try_acquire()
    assert b.epoch == 2
    assert not await a.renew()  # not the holder: stays out, keeps electing
    assert await redis.get("t:leader") == b"b|i-b"
    await b.release()
    assert not await a.try_acquire()  # released at shutdown: a stopping worker never leads again
    assert await lease(redis, clock, store, "c").try_acquire()
    await redis.aclose()
