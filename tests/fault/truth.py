"""Load that records the ground truth: every request (who, to which worker, when sent, when and
how answered) and every socket session (who, on which worker, open from when to when). A
scenario's verdict compares what the service says with this record, not with what the test
meant to do.

Socket clients reconnect elsewhere by themselves, as clients behind a load balancer do: when a
worker drops them (crash, SIGTERM) they open a new socket on the next live worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import aiohttp
import socketio

from tests.support.accounts import Account, call, conversation, register

CANCELLED = "cancelled"


@dataclass
class Request:
    subject: str
    url: str
    sent: float
    answered: float = 0.0
    status: int = 0  # 0: no answer (refused, reset, timed out)
    error: str = ""


@dataclass
class Session:
    subject: str
    url: str
    opened: float
    closed: float | None = None


@dataclass
class Truth:
    requests: list[Request] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)
    refused_connects: int = 0

    def last_served(self, subject: str) -> float | None:
        """When the subject's last request that the service answered 2xx was sent."""
        times = [r.sent for r in self.requests if r.subject == subject and 200 <= r.status < 300]
        return max(times, default=None)

    def connected(self, subject: str) -> bool:
        return any(s.subject == subject and s.closed is None for s in self.sessions)

    def gaps(self, subject: str) -> list[float]:
        """Seconds between one session of the subject closing and its next one opening, for
        a subject whose sessions follow each other (one tab that reconnects)."""
        mine = sorted((s for s in self.sessions if s.subject == subject), key=lambda s: s.opened)
        return [b.opened - a.closed for a, b in itertools.pairwise(mine) if a.closed is not None]

    def answered(self) -> tuple[int, int]:
        """(answered 2xx, sent), leaving out requests still in flight when the load stopped."""
        judged = [r for r in self.requests if r.error != CANCELLED]
        return sum(1 for r in judged if 200 <= r.status < 300), len(judged)


async def accounts(base: str, count: int, prefix: str) -> list[Account]:
    return list(await asyncio.gather(*(register(base, f"{prefix}{i}") for i in range(count))))


async def observer_of(base: str, members: list[Account]) -> Account:
    """A user sharing one conversation with every member: it may read their presence."""
    observer = await register(base, "observer")
    await conversation(base, observer, members, "everyone")
    return observer


class RestLoad:
    """Each subject sends ``POST /api/presence/heartbeat`` every ``period_s`` (± 20 %) to the
    live workers in turn."""

    # Every load of the running test, so teardown stops what a failed test left running.
    running: ClassVar[list[RestLoad]] = []

    def __init__(
        self, subjects: list[Account], urls: Callable[[], list[str]], truth: Truth, period_s: float
    ) -> None:
        self._subjects = subjects
        self._urls = urls
        self._truth = truth
        self._period_s = period_s
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> None:
        RestLoad.running.append(self)
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        self._tasks = [
            asyncio.create_task(self._run(index, subject))
            for index, subject in enumerate(self._subjects)
        ]

    async def _run(self, index: int, subject: Account) -> None:
        assert self._session is not None
        for turn in itertools.count(index):
            urls = self._urls()
            if urls:
                url = urls[turn % len(urls)]
                record = Request(subject.id, url, time.time())
                self._truth.requests.append(record)
                try:
                    async with self._session.post(
                        url + "/api/presence/heartbeat", headers=subject.bearer
                    ) as resp:
                        await resp.read()
                        record.status = resp.status
                except (TimeoutError, aiohttp.ClientError) as exc:
                    record.error = type(exc).__name__
                except asyncio.CancelledError:
                    record.error = CANCELLED  # in flight when the load stopped: no verdict
                    raise
                record.answered = time.time()
            await asyncio.sleep(self._period_s * random.uniform(0.8, 1.2))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()


class Tab:
    """One browser tab of a subject: a socket that reopens on another worker when dropped."""

    running: ClassVar[list[Tab]] = []

    def __init__(
        self,
        subject: Account,
        urls: Callable[[], list[str]],
        truth: Truth,
        start_at: int,
        reconnect_delay_s: float = 0.2,
    ) -> None:
        self.subject = subject
        self._urls = urls
        self._truth = truth
        self._turn = start_at
        self._delay_s = reconnect_delay_s
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.client: socketio.AsyncClient | None = None

    def start(self) -> None:
        Tab.running.append(self)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self._stopping:
            urls = self._urls()
            if not urls:
                await asyncio.sleep(self._delay_s)
                continue
            url = urls[self._turn % len(urls)]
            self._turn += 1
            dropped = asyncio.Event()
            client = socketio.AsyncClient(reconnection=False)
            client.on("disconnect", functools.partial(_set, dropped))
            try:
                await client.connect(
                    url,
                    auth={"token": self.subject.token},
                    transports=["websocket"],
                    wait_timeout=5,
                )
            except (TimeoutError, socketio.exceptions.ConnectionError, OSError):
                self._truth.refused_connects += 1
                await _close(client)
                await asyncio.sleep(self._delay_s)
                continue
            self.client = client
            session = Session(self.subject.id, url, time.time())
            self._truth.sessions.append(session)
            await dropped.wait()
            session.closed = time.time()
            await _close(client)
            await asyncio.sleep(self._delay_s)

    async def stop(self) -> None:
        self._stopping = True
        if self.client is not None and self.client.connected:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.client.disconnect(), timeout=2)
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
                await asyncio.wait_for(self._task, timeout=10)
        if self.client is not None:
            await _close(self.client)


def _set(event: asyncio.Event, *_: object) -> None:
    event.set()


async def _close(client: socketio.AsyncClient) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.disconnect(), timeout=2)
    http = getattr(client.eio, "http", None)
    if http is not None and not http.closed:
        await http.close()


async def presence_view(url: str, viewer: Account, subjects: list[Account]) -> dict[str, Any]:
    """What the service says about each subject, as the viewer may see it."""
    found: dict[str, Any] = {}
    for start in range(0, len(subjects), 50):
        ids = ",".join(s.id for s in subjects[start : start + 50])
        status, body = await call("GET", f"{url}/api/users/presence?ids={ids}", None, viewer.bearer)
        assert status == 200, body
        for record in body["data"]["users"]:
            found[record["userId"]] = record
    return found


async def wait_until(
    check: Callable[[], Any], timeout_s: float, interval_s: float = 0.25
) -> tuple[bool, float]:
    """Poll an async ``check`` until it returns truthy; (reached, seconds taken)."""
    started = time.monotonic()
    while True:
        if await check():
            return True, time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            return False, time.monotonic() - started
        await asyncio.sleep(interval_s)
