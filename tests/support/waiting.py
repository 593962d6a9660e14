"""Waiting on a condition, never on a fixed sleep."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable


async def until(
    check: Callable[[], bool | Awaitable[bool]],
    timeout_s: float = 10.0,
    interval_s: float = 0.05,
    what: str = "the condition",
) -> float:
    """Poll ``check`` (plain or async) until it is true; seconds it took. Fails after
    ``timeout_s`` with ``what`` in the message."""
    started = time.monotonic()
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"{what} was not reached within {timeout_s} s")
        await asyncio.sleep(interval_s)
