"""A prompt leave: the worker that saw a subject's last connection close ends the grace itself,
on a timer, and the offline is heard as the grace ends (not at the next poll); when that worker
cannot (it stopped, or died), the others' fallback finishes the grace soon after."""

from __future__ import annotations

import asyncio
import time

from presence.graces import GRACE_FALLBACK_LAG_S, GRACE_POLL_S
from tests.conftest import EVERY_REDIS_MODE, ClusterFactory
from tests.support.cluster import Cluster
from tests.support.sio import Listener
from tests.support.waiting import until

pytestmark = EVERY_REDIS_MODE
GRACE_S = 0.4


async def watched_pair(cluster: Cluster) -> tuple[str, str, Listener, Listener]:
    """``one`` with a tab on worker 0; ``two`` watching from worker 1."""
    one, token_one, watcher = await cluster.watched_user()
    tab = Listener("one")
    await tab.connect(str(cluster[0].client.make_url("/")), auth={"token": token_one})
    await watcher.wait_status(one, 1)
    return one, token_one, watcher, tab


async def offline_heard_after_close(watcher: Listener, tab: Listener, one: str) -> float:
    closed = time.monotonic()
    await tab.close()
    heard = await watcher.wait_status(one, 2, timeout_s=10)
    assert heard[-1]["isOnline"] is False
    return time.monotonic() - closed


async def test_the_offline_is_heard_as_the_grace_ends(make_cluster: ClusterFactory) -> None:
    cluster = await make_cluster(2, offline_grace_s=GRACE_S)
    one, _, watcher, tab = await watched_pair(cluster)
    took = await offline_heard_after_close(watcher, tab, one)
    # The poll alone could not: it only takes graces that ended GRACE_FALLBACK_LAG_S ago.
    assert GRACE_S <= took < GRACE_S + GRACE_FALLBACK_LAG_S, took
    await watcher.close()


async def test_a_grace_its_worker_cannot_end_is_ended_by_the_fallback(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(2, offline_grace_s=GRACE_S)
    one, _, watcher, tab = await watched_pair(cluster)
    closed = time.monotonic()
    await tab.close()
    # Worker 0's timer is gone (what a stop or a crash does to it).
    await until(lambda: cluster[0].c.presence.graces_timed == 1, 5, what="the grace timer")
    await cluster[0].c.presence.stop_grace_timers()
    heard = await watcher.wait_status(one, 2, timeout_s=10)
    took = time.monotonic() - closed
    assert heard[-1]["isOnline"] is False
    assert GRACE_S + GRACE_FALLBACK_LAG_S <= took < GRACE_S + GRACE_FALLBACK_LAG_S + 1, took
    assert len(watcher.statuses_of(one)) == 2  # announced once
    await watcher.close()


async def test_a_connection_back_within_the_grace_cancels_the_offline(
    make_cluster: ClusterFactory,
) -> None:
    cluster = await make_cluster(2, offline_grace_s=GRACE_S)
    one, token_one, watcher, tab = await watched_pair(cluster)
    await tab.close()
    again = Listener("one-again")
    await again.connect(str(cluster[1].client.make_url("/")), auth={"token": token_one})
    await again.wait_for("presence:snapshot")
    # Nothing may come: the only wait here is for an event that must not happen.
    await asyncio.sleep(GRACE_S + GRACE_FALLBACK_LAG_S + 2 * GRACE_POLL_S)
    assert [s["isOnline"] for s in watcher.statuses_of(one)] == [True]
    await again.close()
    await watcher.close()
