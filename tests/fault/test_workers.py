"""Scenarios 3 and 4: a worker killed during a connect storm, every worker restarted in turn;
verdicts from the recorded ground truth and from Redis's own connection registry."""

from __future__ import annotations

import asyncio
import time

import pytest

from presence.domain import SubjectKind, SubjectRef
from presence.keys import Keys
from tests.fault.checks import THROTTLE_S, epoch
from tests.fault.report import Row
from tests.fault.stack import Stack
from tests.fault.truth import (
    CANCELLED,
    RestLoad,
    Tab,
    Truth,
    accounts,
    observer_of,
    presence_view,
    wait_until,
)
from tests.support.accounts import Account
from tests.support.sio import Listener

GRACE_S = 2.0  # FAST_TIMERS


async def registry_matches_truth(stack: Stack, truth: Truth, subjects: list[Account]) -> list[str]:
    """Redis's connection registry against the truth: one entry per open session, none owned by
    a worker that is gone."""
    redis = stack.redis_client()
    wrong = []
    try:
        alive = {name for name, w in stack.workers.items() if w.process.poll() is None}
        for subject in subjects:
            key = Keys(stack.prefix).connections(SubjectRef(SubjectKind.USER, subject.id))
            owners = await redis.hgetall(key)
            open_sessions = sum(
                1 for s in truth.sessions if s.subject == subject.id and s.closed is None
            )
            ghosts = [w for w in owners.values() if w not in alive]
            if len(owners) != open_sessions or ghosts:
                wrong.append(f"{subject.name}: {len(owners)} registered, {open_sessions} open")
    finally:
        await redis.aclose()
    return wrong


def offline_heard(listener: Listener, subject: Account) -> int:
    return sum(1 for s in listener.statuses_of(subject.id) if not s["isOnline"])


@pytest.mark.scenario(3)
async def test_kill_9_of_a_worker_during_a_connect_storm(stack: Stack, row: Row) -> None:
    row.done = (
        "3 workers; 40 sockets opened at once (10 subjects with a tab on w0 and one on w1/w2,"
        " 20 subjects with one tab spread over all workers); w0 SIGKILLed 0.3 s into the storm;"
        " dropped tabs reopen on a live worker"
    )
    row.checked = (
        "after the crash bound, Redis registers exactly the truth's open sessions and nothing of"
        " w0 (no ghosts); every subject is online; subjects with a tab elsewhere hear no offline"
    )
    await stack.start_workers(3)
    base = stack.urls()[-1]
    multi = await accounts(base, 10, "multi")
    single = await accounts(base, 20, "single")
    observer = await observer_of(base, multi + single)
    watcher = Listener("observer")
    await watcher.connect(stack.workers["w2"].url, auth={"token": observer.token})
    await watcher.wait_for("presence:snapshot")
    truth = Truth()
    tabs = [Tab(s, stack.urls, truth, 0) for s in multi]
    tabs += [Tab(s, stack.urls, truth, 1 + i % 2) for i, s in enumerate(multi)]
    tabs += [Tab(s, stack.urls, truth, i % 3) for i, s in enumerate(single)]
    for tab in tabs:
        tab.start()
    await asyncio.sleep(0.3)
    stack.kill("w0")
    killed_at = time.monotonic()
    everyone = multi + single

    async def settled_without_ghosts() -> bool:
        # Every tab open again on a live worker, and Redis registering exactly those sessions.
        reopened = sum(1 for s in truth.sessions if s.closed is None) == len(tabs)
        return reopened and not await registry_matches_truth(stack, truth, everyone)

    # The bound: worker TTL 1.5 s + a sweep 0.5 s + the grace 2 s, and a margin.
    settled, settled_s = await wait_until(settled_without_ghosts, timeout_s=15)
    assert settled, await registry_matches_truth(stack, truth, everyone)
    row.measure(
        f"every tab open on a live worker and the registry equal to the truth {settled_s:.1f} s"
        " after the kill (bound 15 s)"
    )
    open_sessions = sum(1 for s in truth.sessions if s.closed is None)
    assert open_sessions == len(tabs)
    seen = await presence_view(stack.urls()[0], observer, everyone)
    assert all(seen[s.id]["isOnline"] for s in everyone)
    on_w0 = {s.subject for s in truth.sessions if s.url == stack.workers["w0"].url}
    row.measure(
        f"{len(on_w0)} subjects had a socket on w0; {open_sessions} of {len(tabs)} tabs open"
        f" on live workers afterwards ({truth.refused_connects} connects refused mid-crash)"
    )
    flaps = [s.name for s in multi if offline_heard(watcher, s)]
    assert flaps == [], f"offline broadcast for subjects with another tab: {flaps}"
    singles_flapped = [s.name for s in single if offline_heard(watcher, s)]
    row.measure(
        f"offline broadcasts: 0 of 10 multi-tab subjects, {len(singles_flapped)} of 20 single-tab"
        f" subjects (all reopened within the {GRACE_S:.0f} s grace)"
    )
    assert singles_flapped == []
    for tab in tabs:
        await tab.stop()
    assert time.monotonic() - killed_at < 60
    assert stack.crashed() == ["w0"]


@pytest.mark.scenario(4)
async def test_rolling_sigterm_restart_under_load(stack: Stack, row: Row) -> None:
    row.done = (
        "4 workers (w3 holds the watcher); 15 socket subjects and 10 REST subjects (heartbeat"
        " every 0.5 s) on w0, w1, w2; each of w0, w1, w2 in turn drained, SIGTERMed, restarted with"
        " the same id, 1 s apart; then w3, with a second watcher listening on w0"
    )
    row.checked = (
        "no offline/online broadcast for a subject whose tab reopened within the grace period;"
        " every subject online at the end; REST subjects' lastActiveAt within one throttle"
        " window of their last served request; socket subjects' lastActiveAt no older than the"
        " restart"
    )
    await stack.start_workers(3)
    await stack.start_worker("w3")

    def load_urls() -> list[str]:
        return [u for u in stack.urls() if u != stack.workers["w3"].url]

    base = load_urls()[0]
    sockets = await accounts(base, 15, "sock")
    rest = await accounts(base, 10, "rest")
    observer = await observer_of(base, sockets + rest)
    watcher = Listener("observer")
    await watcher.connect(stack.workers["w3"].url, auth={"token": observer.token})
    await watcher.wait_for("presence:snapshot")
    truth = Truth()
    tabs = [Tab(s, load_urls, truth, i) for i, s in enumerate(sockets)]
    load = RestLoad(rest, load_urls, truth, 0.5)
    for tab in tabs:
        tab.start()
    load.start()
    everyone = sockets + rest

    async def all_online() -> bool:
        seen = await presence_view(stack.workers["w3"].url, observer, everyone)
        return all(seen[s.id]["isOnline"] for s in everyone)

    assert (await wait_until(all_online, timeout_s=20))[0]
    await asyncio.sleep(1)
    statuses_before = len(watcher.events("user:status"))
    rolled_at = time.time()
    shutdowns = []
    for name in ("w0", "w1", "w2"):
        shutdowns.append(await asyncio.to_thread(stack.terminate, name))
        await stack.start_worker(name)
        await asyncio.sleep(1)
    await asyncio.sleep(GRACE_S + 1)
    # Last the watcher's own worker, while a second watcher listens on a restarted one.
    relay = Listener("observer-relay")
    await relay.connect(stack.workers["w0"].url, auth={"token": observer.token})
    await relay.wait_for("presence:snapshot")
    relay_from = len(relay.events("user:status"))
    shutdowns.append(await asyncio.to_thread(stack.terminate, "w3"))
    await stack.start_worker("w3")
    await asyncio.sleep(GRACE_S + 1)
    row.measure("graceful shutdowns took " + ", ".join(f"{s:.1f}" for s in shutdowns) + " s")
    gaps = [g for s in sockets for g in truth.gaps(s.id)]
    row.measure(
        f"{len(gaps)} tab reconnects, longest gap {max(gaps, default=0):.2f} s"
        f" (grace {GRACE_S:.0f} s)"
    )
    assert gaps and max(gaps) < GRACE_S
    flapped = watcher.events("user:status")[statuses_before:]
    flapped += relay.events("user:status")[relay_from:]
    row.measure(f"{len(flapped)} user:status broadcasts during the roll")
    assert flapped == []
    assert await all_online()
    await load.stop()
    for tab in tabs:
        await tab.stop()
    await asyncio.sleep(THROTTLE_S + 1)
    users = await stack.users()
    for subject in rest:
        stored, served = epoch(users[subject.id].get("lastActiveAt")), truth.last_served(subject.id)
        assert stored is not None and served is not None
        assert stored >= served - THROTTLE_S - 0.5, f"{subject.name}: lost {served - stored:.1f} s"
    for subject in sockets:
        stored = epoch(users[subject.id].get("lastActiveAt"))
        assert stored is not None and stored >= rolled_at, subject.name
    ok, sent = truth.answered()
    row.measure(f"{ok} of {sent} REST requests answered 2xx during the roll")
    failures = [
        (r.status, r.error, round(r.sent - rolled_at, 1))
        for r in truth.requests
        if not 200 <= r.status < 300 and r.error != CANCELLED
    ]
    assert ok == sent, failures
    assert stack.crashed() == []
