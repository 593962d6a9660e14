"""Verdicts shared by the fault scenarios: the service's presence against the recorded ground
truth, and cross-worker delivery."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from tests.fault.stack import Stack
from tests.fault.truth import Truth, presence_view
from tests.support.accounts import Account, conversation, register
from tests.support.sio import Listener

THROTTLE_S = 2.0  # FAST_TIMERS
THRESHOLD_S = 6.0


def epoch(value: Any) -> float | None:
    if value is None:
        return None
    moment: datetime = value if value.tzinfo else value.replace(tzinfo=UTC)
    return moment.timestamp()


def expected_state(truth: Truth, subject: Account, now: float) -> bool | None:
    """Online per the truth, or None when the subject sits on a timer's boundary."""
    if truth.connected(subject.id):
        return True
    served = truth.last_served(subject.id)
    if served is None:
        return False
    quiet = now - served
    if quiet < THRESHOLD_S - 1:
        return True
    if quiet > THRESHOLD_S + 2:
        return False
    return None


async def mismatches(
    stack: Stack, truth: Truth, viewer: Account, subjects: list[Account]
) -> list[str]:
    urls = stack.urls()
    seen = await presence_view(urls[0], viewer, subjects)
    now = time.time()
    wrong = []
    for subject in subjects:
        expected = expected_state(truth, subject, now)
        actual = seen[subject.id]["isOnline"]
        if expected is not None and actual != expected:
            wrong.append(f"{subject.name}: {actual} (truth {expected})")
    return wrong


async def cross_worker_delivery(stack: Stack, observer: Account, tag: str) -> float:
    """A new subject connects on each worker in turn; a listener on every worker must hear
    it go online. Returns the slowest delivery in seconds."""
    urls = stack.urls()
    late = []
    for index, url in enumerate(urls):
        subject = await register(url, f"late-{tag}-{index}")
        await conversation(url, observer, [subject], f"late-{tag}-{index}")
        late.append(subject)
    listeners = []
    for index, url in enumerate(urls):
        listener = Listener(f"observer-{tag}-{index}")
        await listener.connect(url, auth={"token": observer.token})
        await listener.wait_for("presence:snapshot")
        listeners.append(listener)
    slowest = 0.0
    for url, subject in zip(urls, late, strict=True):
        client = Listener(subject.name)
        started = time.time()
        await client.connect(url, auth={"token": subject.token})
        for listener in listeners:
            await listener.wait_status(subject.id, 1, timeout_s=10)
            slowest = max(slowest, time.time() - started)
        await client.close()
    for listener in listeners:
        await listener.close()
    return slowest


async def none_of(pending: Any) -> bool:
    return not await pending
