"""A command written on a connection another task has just closed (what a failover does to a
pool while a reconnect's handshake or a command is on its way) fails as a ``ConnectionError``
in every Redis mode, so the retry policies and the callers' Redis error handling see it, and
the client carries on."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError

from presence.clients import redis_from_url
from tests.conftest import EVERY_REDIS_MODE

pytestmark = EVERY_REDIS_MODE


async def connections_of(client: Any) -> list[Any]:
    """Connected connections of every kind ``client`` makes: to a discovered cluster node, to
    the master a Sentinel names and to a sentinel itself, to a standalone server."""
    if isinstance(client, RedisCluster):
        await client.initialize()
        connection = client.get_default_node().acquire_connection()
        await connection.connect()  # type: ignore[no-untyped-call]
        return [connection]
    connections = [await client.connection_pool.get_connection()]
    for sentinel in getattr(client, "sentinels", ())[:1]:
        connections.append(await sentinel.connection_pool.get_connection())
    return connections


async def test_a_write_racing_a_close_is_a_connection_error(mode_url: str) -> None:
    client = redis_from_url(mode_url)
    try:
        for connection in await connections_of(client):
            # The close is scheduled first and runs while the command waits to be written: the
            # connection looked connected when the command began, and has no writer by then.
            closing = asyncio.ensure_future(connection.disconnect(nowait=True))
            with pytest.raises(RedisConnectionError):
                await connection.send_command("PING")
            await closing
            await connection.disconnect()
        assert await client.ping()
    finally:
        await client.aclose()
