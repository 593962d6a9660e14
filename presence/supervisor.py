"""Background loops under supervision: a loop that crashes (or returns) is logged with its name,
counted in ``presence_task_restarts_total{task}`` and started again after a back-off, instead of
dying silently and taking its duty with it (a grace finisher that stopped would leave every
closed subject online).

The back-off doubles from :data:`FIRST_RESTART_S` to :data:`MAX_RESTART_S`, and starts over
once a loop has run for :data:`HEALTHY_AFTER_S`: a loop failing on every start does not spin
the worker, one failure a day is retried at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from presence.metrics import Metrics

log = logging.getLogger(__name__)

# Quick enough that one transient failure costs a fraction of a second of duty.
FIRST_RESTART_S = 0.5
# Slow enough that a loop failing on every start costs nothing noticeable.
MAX_RESTART_S = 30.0
# A loop that ran this long before failing was healthy: its next failure restarts quickly.
HEALTHY_AFTER_S = 60.0

Loop = Callable[[], Awaitable[None]]


async def supervise(
    name: str,
    loop: Loop,
    metrics: Metrics,
    *,
    first_restart_s: float = FIRST_RESTART_S,
    max_restart_s: float = MAX_RESTART_S,
) -> None:
    """Run ``loop()`` for ever, restarting it whenever it raises or returns; only cancellation
    stops it."""
    delay = first_restart_s
    while True:
        started = time.monotonic()
        try:
            await loop()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background task crashed; restarting", extra={"task": name})
        else:
            log.error("background task returned; restarting", extra={"task": name})
        metrics.task_restarts.labels(task=name).inc()
        if time.monotonic() - started >= HEALTHY_AFTER_S:
            delay = first_restart_s
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_restart_s)


def start_supervised(loops: dict[str, Loop], metrics: Metrics) -> list[asyncio.Task[None]]:
    """One named task per loop (the name shows in task dumps and logs)."""
    return [
        asyncio.create_task(supervise(name, loop, metrics), name=f"presence:{name}")
        for name, loop in loops.items()
    ]
