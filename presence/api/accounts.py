"""Register, log in, join a conversation as a guest."""

from __future__ import annotations

from aiohttp import web

from presence.api import parsing
from presence.api.context import components
from presence.api.identity import request_address
from presence.api.responses import json_response
from presence.api.views import participant_json, user_json
from presence.auth.attempts import Attempt
from presence.contract.http import JoinBody, LoginBody, RegisterBody
from presence.domain import Unauthorized


@parsing.takes(RegisterBody)
async def register(request: web.Request) -> web.Response:
    body = await parsing.body(request, RegisterBody)
    session = await components(request).accounts.register(
        username=body.username, email=body.email, password=body.password
    )
    return json_response(
        {"success": True, "token": session.token, "user": user_json(session.user)}, status=201
    )


@parsing.takes(LoginBody)
async def login(request: web.Request) -> web.Response:
    body = await parsing.body(request, LoginBody)
    email, password = body.email, body.password
    c = components(request)
    # Per address and per account, cluster-wide: refused before the password is even hashed.
    attempt = Attempt(address=request_address(request), account=email.casefold())
    await c.attempts.check(attempt)
    try:
        session = await c.accounts.login(email=email, password=password)
    except Unauthorized:
        await c.attempts.failed(attempt)
        raise
    return json_response({"success": True, "token": session.token, "user": user_json(session.user)})


@parsing.takes(JoinBody)
async def join(request: web.Request) -> web.Response:
    link_id = parsing.path_id(request, "link_id")
    body = await parsing.body(request, JoinBody)
    guest = await components(request).accounts.join(link_id=link_id, nickname=body.nickname)
    return json_response(
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
