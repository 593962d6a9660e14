"""The OpenAPI 3.1 document of the REST API, served at ``/openapi.json``.

Every schema in it is generated from the models of :mod:`presence.contract` — the same models
that validate requests — and every request body is the one its handler declares
(:func:`presence.api.parsing.takes`). ``tests/integration/test_openapi.py`` checks real
responses against it and every route of the app against its operations, so it cannot drift.
The Socket.IO events are listed under ``x-socketio`` with their payload schemas; the operations
are in :mod:`presence.api.openapi_paths`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from presence import __version__
from presence.api.openapi_paths import HANDLER, PATHS, Schema, ref
from presence.api.parsing import DECLARED
from presence.api.responses import json_response
from presence.contract import events, http

__all__ = ["HANDLER", "PATHS", "document"]

_RESPONSES: list[type[BaseModel]] = [
    http.Error,
    http.Session,
    http.Joined,
    http.Acknowledged,
    http.UserProfile,
    http.ParticipantProfile,
    http.OwnPresence,
    http.Privacy,
    http.PresenceList,
    http.Conversation,
    http.ShareLink,
    http.ConversationPresence,
    http.ServicePresenceList,
    http.EventPage,
    http.DirectoryOutcome,
    http.DirectoryBatchOutcome,
    http.Stats,
    http.StatusMetrics,
    http.Health,
    http.Readiness,
    *(m for m in events.OUTBOUND.values() if isinstance(m, type)),
]


def _schemas() -> dict[str, Schema]:
    requests = [d.model for d in DECLARED.values()] + list(events.INBOUND.values())
    pairs: list[tuple[type[BaseModel], Any]] = [(m, "validation") for m in requests]
    pairs += [(m, "serialization") for m in _RESPONSES]
    _, top = models_json_schema(pairs, ref_template="#/components/schemas/{model}")
    schemas: dict[str, Schema] = top["$defs"]
    schemas["AnyPresence"] = {"anyOf": [ref("Presence"), ref("OwnPresence")]}
    return schemas


def _events() -> Schema:
    outbound = {
        name: ref("AnyPresence") if not isinstance(model, type) else ref(model.__name__)
        for name, model in events.OUTBOUND.items()
    }
    inbound = {name: ref(model.__name__) for name, model in events.INBOUND.items()}
    return {"path": "/socket.io", "clientToServer": inbound, "serverToClient": outbound}


def _webhooks() -> Schema:
    """What presence POSTs to ``PRESENCE_WEBHOOK_URL`` (one event of the feed per request)."""

    def header(name: str, description: str) -> Schema:
        schema = {"type": "string"}
        return {"name": name, "in": "header", "required": True, "schema": schema,
                "description": description}  # fmt: skip

    return {
        "presenceEvent": {
            "post": {
                "summary": "One announced transition of the change feed (at least once)",
                "parameters": [
                    header(
                        "X-Presence-Signature",
                        "sha256=<hex HMAC-SHA256 of the body with PRESENCE_WEBHOOK_SECRET>",
                    ),
                    header("X-Presence-Event-Id", "the event's id in the feed (drop repeats)"),
                ],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": ref("FeedEvent")}},
                },
                "responses": {
                    "2XX": {"description": "received; anything else is retried with back-off"}
                },
            }
        }
    }


def document() -> Schema:
    return {
        "openapi": "3.1.0",
        "info": {"title": "presence", "version": __version__},
        "paths": {
            path: {
                method: {k: v for k, v in op.items() if k != HANDLER}
                for method, op in operations.items()
            }
            for path, operations in PATHS.items()
        },
        "webhooks": _webhooks(),
        "x-socketio": _events(),
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "session": {"type": "apiKey", "in": "header", "name": "X-Session-Token"},
                "service": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a service token (presence service-token create)",
                },
            },
        },
    }


async def serve(request: web.Request) -> web.Response:
    return json_response(document())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/openapi.json", serve)
