"""A clock the tests move by hand."""

from __future__ import annotations

import time_machine


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self._now = now
        self._mono = 1000.0

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._mono += seconds


class TimeTravel:
    """A :class:`FakeClock` and the wall clock that in-process Redis (fakeredis) expires keys
    by, moved together: a 60 s window passes in no time, and both sides agree it has."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.clock = FakeClock(now)
        self._travel = time_machine.travel(now, tick=False)
        self._traveller = self._travel.start()

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self._traveller.shift(seconds)

    def stop(self) -> None:
        self._travel.stop()
