"""Register, log in, join a conversation as a guest."""

from __future__ import annotations

from aiohttp import web

from presence.api import parsing
from presence.api.context import components
from presence.api.identity import request_address
from presence.api.views import participant_json, user_json
from presence.auth.attempts import Attempt
from presence.domain import Unauthorized


async def register(request: web.Request) -> web.Response:
    body = await parsing.json_object(request)
    session = await components(request).accounts.register(
        username=parsing.text(body, "username", max_len=64),
        email=parsing.email(body),
        password=parsing.secret(body, "password", min_len=8),
    )
    return web.json_response(
        {"success": True, "token": session.token, "user": user_json(session.user)}, status=201
    )


async def login(request: web.Request) -> web.Response:
    body = await parsing.json_object(request)
    email = parsing.text(body, "email", max_len=254)
    password = parsing.secret(body, "password", min_len=1)
    c = components(request)
    # Per address and per account, cluster-wide: refused before the password is even hashed.
    attempt = Attempt(address=request_address(request), account=email.casefold())
    await c.attempts.check(attempt)
    try:
        session = await c.accounts.login(email=email, password=password)
    except Unauthorized:
        await c.attempts.failed(attempt)
        raise
    return web.json_response(
        {"success": True, "token": session.token, "user": user_json(session.user)}
    )


async def join(request: web.Request) -> web.Response:
    link_id = parsing.path_id(request, "link_id")
    body = await parsing.json_object(request)
    guest = await components(request).accounts.join(
        link_id=link_id, nickname=parsing.text(body, "nickname", max_len=64)
    )
    return web.json_response(
        {
            "success": True,
            "sessionToken": guest.session_token,
            "participant": participant_json(guest.participant),
        },
        status=201,
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/auth/register", register)
    app.router.add_post("/api/auth/login", login)
    app.router.add_post("/api/anonymous/join/{link_id}", join)
