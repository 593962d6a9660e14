"""Background loops under supervision: a crash or a return is counted and the loop restarted
with a growing back-off; cancellation alone stops it."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from presence.metrics import Metrics
from presence.supervisor import supervise


def restarts(metrics: Metrics, task: str) -> float:
    value = metrics.registry.get_sample_value("presence_task_restarts_total", {"task": task})
    return value or 0.0


async def test_a_crashing_loop_is_restarted_and_counted_until_it_runs() -> None:
    metrics = Metrics("w0")
    starts = 0
    running = asyncio.Event()

    async def loop() -> None:
        nonlocal starts
        starts += 1
        if starts <= 2:
            raise RuntimeError("boom")
        running.set()
        await asyncio.Event().wait()  # a healthy loop runs for ever

    task = asyncio.create_task(supervise("flaky", loop, metrics, first_restart_s=0.001))
    await asyncio.wait_for(running.wait(), 5)
    assert starts == 3
    assert restarts(metrics, "flaky") == 2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert restarts(metrics, "flaky") == 2  # cancellation is a stop, not a restart


async def test_a_loop_that_returns_is_restarted_with_a_growing_back_off() -> None:
    metrics = Metrics("w0")
    started_at: list[float] = []
    loop_time = asyncio.get_running_loop().time
    enough = asyncio.Event()

    async def returns_at_once() -> None:
        started_at.append(loop_time())
        if len(started_at) == 4:
            enough.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(
        supervise("quitter", returns_at_once, metrics, first_restart_s=0.01, max_restart_s=0.02)
    )
    await asyncio.wait_for(enough.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gaps = [b - a for a, b in itertools.pairwise(started_at)]
    assert restarts(metrics, "quitter") == 3
    # Doubled, then capped (less a clock tick: the loop may wake a hair early).
    assert gaps[0] >= 0.009 and gaps[1] >= 0.019 and gaps[2] >= 0.019
