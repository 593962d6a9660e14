"""The web console: ``/`` serves the page, ``/console/`` its stylesheet and script.

The script is the stock ``socket.io-client`` bundled by ``make console`` (Node.js, esbuild) into
``presence/console/static/console.js``; without it the page still loads and says how to build it.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).resolve().parents[1] / "console" / "static"


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", page)
    app.router.add_static("/console/", STATIC, append_version=False)
