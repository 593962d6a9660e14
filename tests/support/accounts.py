"""Accounts and conversations made through the HTTP API of a running worker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp


@dataclass(frozen=True)
class Account:
    id: str
    token: str
    name: str

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def call(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, json=body, headers=headers or {}) as resp,
    ):
        return resp.status, await resp.json()


async def register(base: str, name: str) -> Account:
    status, body = await call(
        "POST",
        f"{base}/api/auth/register",
        {"username": name, "email": f"{name}@example.test", "password": "password-1"},
    )
    assert status == 201, body
    return Account(body["user"]["id"], body["token"], name)


async def conversation(base: str, owner: Account, members: list[Account], title: str) -> str:
    status, body = await call(
        "POST",
        f"{base}/api/conversations",
        {"title": title, "memberIds": [m.id for m in members]},
        owner.bearer,
    )
    assert status == 201, body
    cid: str = body["data"]["id"]
    return cid


async def pair(base: str, shared_conversations: int = 1) -> tuple[Account, Account]:
    """User one and user two sharing conversations (created by two, so one has never been
    active: its first connection or request is a transition)."""
    one, two = await register(base, "one"), await register(base, "two")
    for index in range(shared_conversations):
        await conversation(base, two, [one], f"shared-{index}")
    return one, two
