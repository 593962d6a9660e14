"""A real HTTP server inside the test's event loop, on a fixed port, that can be stopped and
started again on it (an outage, for real): the base of the tests' webhook receiver and identity
provider."""

from __future__ import annotations

from aiohttp import web

from devstack.servers import free_port


class LocalHttpServer:
    def __init__(self) -> None:
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
