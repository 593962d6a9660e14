"""A python-socketio client that records what it hears, and checks every event it hears
against the published contract (:data:`presence.contract.events.OUTBOUND`)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import socketio
from pydantic import TypeAdapter, ValidationError

from presence.contract.events import OUTBOUND

_CONTRACT = {event: TypeAdapter(model) for event, model in OUTBOUND.items()}


def contract_violation(event: str, data: Any) -> str | None:
    """Why a payload a client heard is not what the contract says, or None."""
    adapter = _CONTRACT.get(event)
    if adapter is None:
        return f"{event}: not a documented event"
    try:
        adapter.validate_python(data)
    except ValidationError as exc:
        return f"{event}: {exc.errors(include_url=False)[0]} in {data!r}"
    return None


@dataclass
class Heard:
    event: str
    data: Any
    at: float


@dataclass
class Listener:
    name: str
    client: socketio.AsyncClient = field(
        default_factory=lambda: socketio.AsyncClient(reconnection=False)
    )
    heard: list[Heard] = field(default_factory=list)
    connect_error: Any = None
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)

    # Every client of the running test, so teardown can close the ones a test left open
    # (a client its server dropped still holds an HTTP session).
    opened: ClassVar[list[Listener]] = []
    # Every payload any client heard that the contract does not describe.
    violations: ClassVar[list[str]] = []

    def __post_init__(self) -> None:
        Listener.opened.append(self)

        async def catch_all(event: str, *args: Any) -> None:
            data = args[0] if len(args) == 1 else args
            self.heard.append(Heard(event, data, time.time()))
            violation = contract_violation(event, data)
            if violation is not None:
                Listener.violations.append(f"{self.name}: {violation}")

        async def on_connect_error(data: Any) -> None:
            self.connect_error = data

        async def on_disconnect(*_: Any) -> None:
            self.disconnected.set()

        self.client.on("*", catch_all)
        self.client.on("connect_error", on_connect_error)
        self.client.on("disconnect", on_disconnect)

    async def connect(
        self,
        url: str,
        *,
        auth: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        transports: list[str] | None = None,
    ) -> None:
        await self.client.connect(
            url,
            auth=auth,
            headers=headers or {},
            transports=transports or ["websocket"],
            wait_timeout=10,
        )

    def events(self, event: str) -> list[Any]:
        return [h.data for h in self.heard if h.event == event]

    def statuses_of(self, subject_id: str) -> list[dict[str, Any]]:
        return [d for d in self.events("user:status") if d["userId"] == subject_id]

    async def _wait(
        self, found: Callable[[], list[Any]], count: int, what: str, timeout_s: float
    ) -> list[Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if len(found()) >= count:
                return found()
            await asyncio.sleep(0.02)
        raise AssertionError(
            f"{self.name}: {count}x {what} not heard in {timeout_s} s: "
            f"{[h.event for h in self.heard]}"
        )

    async def wait_for(self, event: str, count: int = 1, timeout_s: float = 10.0) -> list[Any]:
        return await self._wait(lambda: self.events(event), count, repr(event), timeout_s)

    async def wait_status(
        self, subject_id: str, count: int, timeout_s: float = 10.0
    ) -> list[dict[str, Any]]:
        return await self._wait(
            lambda: self.statuses_of(subject_id), count, f"user:status of {subject_id}", timeout_s
        )

    async def close(self) -> None:
        if self.client.connected:
            await self.client.disconnect()
        ws = getattr(self.client.eio, "ws", None)
        if ws is not None and not ws.closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), timeout=2)
        http = getattr(self.client.eio, "http", None)
        if http is not None and not http.closed:
            await http.close()

    @classmethod
    async def close_all(cls) -> None:
        """Close every client of the test; fail it if any heard a payload off the contract."""
        while cls.opened:
            await cls.opened.pop().close()
        found, cls.violations[:] = list(cls.violations), []
        assert not found, f"payloads off the contract: {found[:5]}"
