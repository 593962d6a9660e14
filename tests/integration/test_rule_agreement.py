"""One presence rule: the Lua scripts on a real Redis decide exactly what presence.policy says.

Random histories of connects, closes, REST activity, grace ends, sweeps and admin changes run
through the scripts (the registry's and the throttle windows' typed methods). Before each step
the subject's live state is read from Redis and judged by :func:`presence.policy.is_online`;
every decision a script returns (became online, last connection, went offline, taken by the
sweep, the online counts) must be the one the policy implies.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import hypothesis
import hypothesis.strategies as st

from presence.clients import redis_from_url
from presence.domain import SubjectKind, SubjectRef
from presence.keys import Keys
from presence.policy import LiveState, is_online
from presence.registry import ClosedSubject, ConnectionRegistry
from presence.windows import ThrottleWindows

THRESHOLD_S = 1.0
GRACE_S = 0.3
SUBJECTS = (
    SubjectRef(SubjectKind.USER, "u1"),
    SubjectRef(SubjectKind.USER, "u2"),
    SubjectRef(SubjectKind.ANONYMOUS, "a1"),
)
STEPS = ("activity", "connect", "close", "finish_graces", "sweep", "force_online", "force_offline")


@dataclass(frozen=True)
class Step:
    name: str
    subject: int
    sid: int
    advance_ms: int  # time passing before the step: across the threshold and the grace


HISTORIES = st.lists(
    st.builds(
        Step,
        name=st.sampled_from(STEPS),
        subject=st.integers(0, len(SUBJECTS) - 1),
        sid=st.integers(0, 2),
        advance_ms=st.sampled_from([0, 1, 150, 299, 300, 600, 999, 1000, 1001, 1500]),
    ),
    min_size=1,
    max_size=30,
)


class Rig:
    def __init__(self, redis_url: str) -> None:
        self.redis = redis_from_url(redis_url)
        # A fresh prefix per history: no state leaks from one example into the next.
        self.prefix = f"rule:{uuid.uuid4().hex}:"
        keys = Keys(self.prefix)
        self.connections = ConnectionRegistry(self.redis, keys, "w1", THRESHOLD_S)
        self.windows = ThrottleWindows(
            self.redis, keys, interval_s=0.05, offline_threshold_s=THRESHOLD_S
        )
        self.now = 1_700_000_000.0

    async def live(self, subject: SubjectRef) -> LiveState:
        return (await self.connections.live_states([subject]))[0]

    async def online(self, subject: SubjectRef) -> bool:
        return is_online(await self.live(subject), self.now, THRESHOLD_S)

    async def check_counts(self) -> None:
        expected = dict.fromkeys(SubjectKind, 0)
        for subject in SUBJECTS:
            if await self.online(subject):
                expected[subject.kind] += 1
        assert await self.connections.count_online(self.now) == expected

    async def run(self, step: Step) -> None:
        self.now += step.advance_ms / 1000
        subject = SUBJECTS[step.subject]
        sid = f"{subject.id}-s{step.sid}"
        before = await self.live(subject)
        online_before = is_online(before, self.now, THRESHOLD_S)
        if step.name == "activity":
            claim = await self.windows.claim(subject, uuid.uuid4().hex, self.now)
            assert claim.became_online == (not online_before)
            assert await self.online(subject)
        elif step.name == "connect":
            assert await self.connections.connect(subject, sid, self.now) == (not online_before)
            assert await self.online(subject)
        elif step.name == "close":
            registered = sid in await self.connections.sids(subject)
            last = await self.connections.disconnect(subject, sid, self.now)
            assert last == (registered and before.connections == 1)
            after = await self.live(subject)
            assert after.in_grace == (before.in_grace or last)
            # A close never takes anyone offline by itself: the grace period does.
            assert await self.online(subject) == online_before
        elif step.name == "finish_graces":
            await self.finish_graces()
        elif step.name == "sweep":
            await self.sweep()
        elif step.name == "force_online":
            await self.connections.mark_online(subject, self.now)
            assert await self.online(subject)
        else:
            await self.connections.mark_offline(subject)
            after = await self.live(subject)
            assert not after.marked_online and not after.in_grace
            assert not await self.online(subject)
        await self.check_counts()

    async def finish_graces(self) -> None:
        due = await self.connections.graces_ended(self.now - GRACE_S)
        for closed in due:
            before = await self.live(closed.subject)
            went = await self.connections.finish_offline(closed)
            # Offline exactly when nothing came back: no connection and still marked online.
            assert went == (before.connections == 0 and before.marked_online)
            after = await self.live(closed.subject)
            assert not after.in_grace
            if went:
                assert not await self.online(closed.subject)

    async def sweep(self) -> None:
        quiet = {
            s.member
            for s in SUBJECTS
            if (await self.live(s)).marked_online and not await self.online(s)
        }
        taken: list[ClosedSubject] = await self.connections.take_quiet_offline(
            [s.member for s in SUBJECTS], self.now - THRESHOLD_S
        )
        assert {t.subject.member for t in taken} == quiet
        for subject in SUBJECTS:
            assert not (await self.live(subject)).marked_online or await self.online(subject)

    async def play(self, history: list[Step]) -> None:
        try:
            for step in history:
                await self.run(step)
        finally:
            async for key in self.redis.scan_iter(match=f"{self.prefix}*"):
                await self.redis.delete(key)
            await self.redis.aclose()


@hypothesis.settings(max_examples=150, deadline=None, database=None)
@hypothesis.given(history=HISTORIES)
def test_the_scripts_decide_what_the_policy_says(redis_url: str, history: list[Step]) -> None:
    asyncio.run(Rig(redis_url).play(history))
