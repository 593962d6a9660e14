"""Time, injected: wall time for stored timestamps, monotonic time for windows and timeouts."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (UTC), for timestamps that leave the process."""

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps, for intervals measured inside one process."""


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()
