"""Per-socket event rate limiting."""

from __future__ import annotations

from dataclasses import dataclass, field

# A chat client sends a few events a second at most; 20/s with bursts of 40 leaves room for
# reconnect bursts and refuses floods.
EVENTS_PER_S = 20.0
BURST = 40.0
# Refused events in a row before the socket is dropped: a client that keeps flooding is hostile.
MAX_REFUSED_IN_A_ROW = 50


@dataclass(slots=True)
class TokenBucket:
    rate: float = EVENTS_PER_S
    capacity: float = BURST
    tokens: float = BURST
    updated: float = field(default=0.0)
    refused_in_a_row: int = 0

    def allow(self, now: float) -> bool:
        if self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            self.refused_in_a_row = 0
            return True
        self.refused_in_a_row += 1
        return False

    @property
    def hostile(self) -> bool:
        return self.refused_in_a_row >= MAX_REFUSED_IN_A_ROW
