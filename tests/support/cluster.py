"""Several workers (app instances) sharing one real Redis and one real database, in-process."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher
from pymongo import AsyncMongoClient, monitoring
from redis.asyncio import Redis

from presence.api.context import COMPONENTS, Components
from presence.app import RESOURCES, create_app
from presence.auth.passwords import Passwords
from presence.config import Settings
from presence.domain import Role
from presence.keys import Keys
from presence.store.base import Store
from presence.store.mongo import MongoStore
from tests.support.sio import Listener


def fast_passwords() -> Passwords:
    # argon2id with the smallest cost: the tests check behaviour, not hash strength.
    return Passwords(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


class WriteCounter(monitoring.CommandListener):
    """Counts ``lastActiveAt`` writes at the driver boundary, where the service cannot lie."""

    def __init__(self) -> None:
        self.last_active_writes = 0
        self.by_subject: Counter[str] = Counter()
        self.update_commands = 0
        self.largest_update = 0  # operations in the biggest update command sent

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name != "update":
            return
        self.update_commands += 1
        self.largest_update = max(self.largest_update, len(event.command.get("updates", [])))
        for update in event.command.get("updates", []):
            if "lastActiveAt" in str(update.get("u", {})):
                self.last_active_writes += 1
                self.by_subject[str(update.get("q", {}).get("_id"))] += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        return None

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        return None


@dataclass
class Worker:
    app: web.Application
    client: TestClient[web.Request, web.Application]

    @property
    def c(self) -> Components:
        return self.app[COMPONENTS]

    # What the services hide from the handlers, for tests that arrange or inspect state.
    @property
    def store(self) -> Store:
        return self.app[RESOURCES].store

    @property
    def redis(self) -> Redis:
        return self.app[RESOURCES].redis

    @property
    def keys(self) -> Keys:
        return Keys(self.c.settings.redis_prefix, self.c.settings.redis_buckets)


@dataclass
class Cluster:
    settings: Settings
    workers: list[Worker] = field(default_factory=list)
    writes: WriteCounter = field(default_factory=WriteCounter)

    def __getitem__(self, index: int) -> Worker:
        return self.workers[index]

    async def register(self, name: str, worker: int = 0) -> tuple[str, str]:
        """A new user through the API; returns (token, user id)."""
        resp = await self[worker].client.post(
            "/api/auth/register",
            json={"username": name, "email": f"{name}@example.test", "password": "password-1"},
        )
        assert resp.status == 201, await resp.text()
        body = await resp.json()
        return body["token"], body["user"]["id"]

    async def watched_user(self, watcher_on: int = 1) -> tuple[str, str, Listener]:
        """A user ``one`` and a watcher ``two`` on worker ``watcher_on`` who shares a
        conversation with it: (one's id, one's token, the watcher, snapshotted)."""
        token_one, one = await self.register("one")
        token_two, _ = await self.register("two")
        resp = await self[0].client.post(
            "/api/conversations",
            json={"title": "pair", "memberIds": [one]},
            headers={"Authorization": f"Bearer {token_two}"},
        )
        assert resp.status == 201, await resp.text()
        watcher = Listener("two")
        await watcher.connect(str(self[watcher_on].client.make_url("/")), auth={"token": token_two})
        await watcher.wait_for("presence:snapshot")
        return one, token_one, watcher

    async def admin_token(self) -> str:
        accounts = self[0].c.accounts
        email = "root@example.test"
        if await self[0].store.find_user_by_email(email) is None:
            await accounts.create_user(
                username="root", email=email, password="password-1", role=Role.ADMIN
            )
        return await accounts.token_for(email)

    async def settle(self) -> None:
        """Wait for background writes (activity, and the online flags behind announcements)
        and push every worker's counters to Redis."""
        for w in self.workers:
            await w.c.tracker.drain()
            await w.c.presence.writes.flush()

    async def close(self) -> None:
        for w in self.workers:
            await w.client.close()


async def start_cluster(
    settings: Settings, count: int, *, overrides: Sequence[dict[str, Any]] = ()
) -> Cluster:
    cluster = Cluster(settings)
    for index in range(count):
        extra = overrides[index] if index < len(overrides) else {}
        worker_settings = dataclasses.replace(settings, worker_id=f"w{index}", **extra)
        assert settings.mongo_url is not None
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            settings.mongo_url, tz_aware=True, event_listeners=[cluster.writes]
        )
        app = create_app(
            worker_settings,
            store=MongoStore(client, settings.mongo_db, max_batch=settings.mongo_max_batch),
            passwords=fast_passwords(),
        )
        test_client = TestClient(TestServer(app))
        await test_client.start_server()
        cluster.workers.append(Worker(app, test_client))
    return cluster
