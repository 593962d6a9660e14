"""The OpenAPI 3.1 document of the REST API, served at ``/openapi.json``.

Every schema in it is generated from the models of :mod:`presence.contract` — the same models
that validate requests — and every request body is the one its handler declares
(:func:`presence.api.parsing.takes`). ``tests/integration/test_openapi.py`` checks real
responses against it and every route of the app against its operations, so it cannot drift.
The Socket.IO events are listed under ``x-socketio`` with their payload schemas.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from presence import __version__
from presence.api import accounts, conversations, directory, health, maintenance, service, users
from presence.api.parsing import DECLARED, Handler
from presence.api.responses import json_response
from presence.contract import events, http
from presence.contract.fields import MAX_ID_CHARS

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _ok(data: Schema) -> Schema:
    return {
        "type": "object",
        "required": ["success", "data"],
        "properties": {"success": {"const": True}, "data": data},
        "additionalProperties": False,
    }


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Schema]:
    return {str(s): _json(_ref("Error"), "error") for s in statuses}


_RESPONSES: list[type[BaseModel]] = [
    http.Error,
    http.Session,
    http.Joined,
    http.Acknowledged,
    http.UserProfile,
    http.ParticipantProfile,
    http.OwnPresence,
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
    schemas["AnyPresence"] = {"anyOf": [_ref("Presence"), _ref("OwnPresence")]}
    return schemas


HANDLER = "handler"
_BEARER: list[Schema] = [{"bearer": []}]
_ANY_AUTH: list[Schema] = [{"bearer": []}, {"session": []}]
_SERVICE: list[Schema] = [{"service": []}]
_STR = {"type": "string"}
_PRESENCE_LIST = _ref("PresenceList")
_ME = {"oneOf": [_ref("UserProfile"), _ref("ParticipantProfile")]}


def _op(
    handler: Handler,
    summary: str,
    responses: dict[str, Schema],
    *,
    security: list[Schema] | None = None,
    parameters: list[Schema] | None = None,
) -> Schema:
    # The handler stays here for the route check (tests/integration/test_openapi.py); the
    # served document leaves it out.
    op: Schema = {"summary": summary, "responses": responses, HANDLER: handler}
    op["security"] = security if security is not None else []
    declared = DECLARED.get(handler)
    if declared is not None:
        schema = _ref(declared.model.__name__)
        op["requestBody"] = {
            "required": not declared.optional,
            "content": {"application/json": {"schema": schema}},
        }
    if parameters:
        op["parameters"] = parameters
    return op


def _path_param(name: str) -> Schema:
    # What parsing.path_id accepts; anything else is a 400.
    schema = {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS}
    description = f"an id: 1 to {MAX_ID_CHARS} characters, no control characters"
    return {"name": name, "in": "path", "required": True, "schema": schema,
            "description": description}  # fmt: skip


PATHS: dict[str, Schema] = {
    "/api/auth/register": {
        "post": _op(
            accounts.register,
            "Create an account",
            {"201": _json(_ref("Session"), "created"), **_errors(400, 409, 413)},
        )
    },
    "/api/auth/login": {
        "post": _op(
            accounts.login,
            "Log in",
            {"200": _json(_ref("Session"), "logged in"), **_errors(400, 401, 413, 429)},
        )
    },
    "/api/anonymous/join/{linkId}": {
        "post": _op(
            accounts.join,
            "Join a conversation as a guest through a share link",
            {"201": _json(_ref("Joined"), "joined"), **_errors(400, 401, 404, 413)},
            parameters=[_path_param("linkId")],
        )
    },
    "/api/users/me": {
        "get": _op(
            users.me,
            "The caller's profile and presence",
            {"200": _json(_ok(_ME), "profile"), **_errors(401)},
            security=_ANY_AUTH,
        )
    },
    "/api/users/me/status": {
        "put": _op(
            users.set_status,
            "Set the caller's manual status",
            {"200": _json(_ok(_ref("OwnPresence")), "status set"), **_errors(400, 401, 413)},
            security=_ANY_AUTH,
        )
    },
    "/api/presence/heartbeat": {
        "post": _op(
            users.heartbeat,
            "Count the caller as active (for clients without a socket)",
            {"200": _json(_ref("Acknowledged"), "recorded"), **_errors(401)},
            security=_ANY_AUTH,
        )
    },
    "/api/users/presence": {
        "get": _op(
            users.presence_of,
            "Presence of up to 200 subjects the caller shares a conversation with",
            {"200": _json(_ok(_ref("PresenceList")), "presence"), **_errors(400, 401, 403)},
            security=_BEARER,
            parameters=[{"name": "ids", "in": "query", "required": True, "schema": _STR}],
        )
    },
    "/api/conversations": {
        "get": _op(
            conversations.list_conversations,
            "The caller's conversations with every member's presence",
            {
                "200": _json(_ok({"type": "array", "items": _ref("Conversation")}), "list"),
                **_errors(401, 403),
            },
            security=_BEARER,
        ),
        "post": _op(
            conversations.create_conversation,
            "Create a conversation (the caller is a member)",
            {"201": _json(_ok(_ref("Conversation")), "created"), **_errors(400, 401, 403, 413)},
            security=_BEARER,
        ),
    },
    "/api/conversations/{conversationId}/share-links": {
        "post": _op(
            conversations.create_share_link,
            "Create a share link that lets guests join",
            {"201": _json(_ok(_ref("ShareLink")), "created"), **_errors(400, 401, 403, 404, 413)},
            security=_BEARER,
            parameters=[_path_param("conversationId")],
        )
    },
    "/api/conversations/{conversationId}/presence": {
        "get": _op(
            conversations.conversation_presence,
            "Presence of every member of one conversation",
            {
                "200": _json(_ok(_ref("ConversationPresence")), "presence"),
                **_errors(400, 401, 403, 404),
            },
            security=_ANY_AUTH,
            parameters=[_path_param("conversationId")],
        )
    },
    "/api/service/presence": {
        "post": _op(
            service.service_presence,
            "Presence of up to 1 000 users and guests by id, with whether each is connected "
            "(service token, scope presence:read; never activity)",
            {
                "200": _json(_ok(_ref("ServicePresenceList")), "presence"),
                **_errors(400, 401, 403, 413, 429),
            },
            security=_SERVICE,
        )
    },
    "/api/service/events": {
        "get": _op(
            service.service_events,
            "The change feed: announced transitions after a cursor, waiting up to "
            "PRESENCE_EVENTS_WAIT_S (25 s) when there is none yet (scope events:read)",
            {"200": _json(_ok(_ref("EventPage")), "events"), **_errors(400, 401, 403, 429)},
            security=_SERVICE,
            parameters=[
                {
                    "name": "after",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "pattern": "^[0-9]{1,20}(-[0-9]{1,20})?$"},
                    "description": "the last event id received (none: from the oldest kept)",
                },
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                },
            ],
        )
    },
    "/api/service/users/{userId}": {
        "put": _op(
            directory.put_user,
            "Create or update one of the platform's users (scope directory:write); a "
            "deactivated user's sockets are closed on every worker",
            {
                "200": _json(_ok(_ref("DirectoryOutcome")), "stored"),
                **_errors(400, 401, 403, 413, 429),
            },
            security=_SERVICE,
            parameters=[_path_param("userId")],
        )
    },
    "/api/service/conversations/{conversationId}": {
        "put": _op(
            directory.put_conversation,
            "Create or replace one of the platform's conversations, up to 100 000 members "
            "(scope directory:write); added members' sockets join its room, removed ones leave",
            {
                "200": _json(_ok(_ref("DirectoryOutcome")), "stored"),
                **_errors(400, 401, 403, 413, 429),
            },
            security=_SERVICE,
            parameters=[_path_param("conversationId")],
        ),
        "delete": _op(
            directory.delete_conversation,
            "Delete one of the platform's conversations (scope directory:write)",
            {"200": _json(_ref("Acknowledged"), "deleted"), **_errors(401, 403, 404, 429)},
            security=_SERVICE,
            parameters=[_path_param("conversationId")],
        ),
    },
    "/api/service/conversations:batch": {
        "post": _op(
            directory.put_conversations,
            "Create or replace many conversations at once, up to 100 000 memberships in all "
            "(an initial import; scope directory:write)",
            {
                "200": _json(_ok(_ref("DirectoryBatchOutcome")), "stored"),
                **_errors(400, 401, 403, 413, 429),
            },
            security=_SERVICE,
        )
    },
    "/maintenance/stats": {
        "get": _op(
            maintenance.stats,
            "Cluster statistics (admin)",
            {"200": _json(_ok(_ref("Stats")), "stats"), **_errors(401, 403)},
            security=_BEARER,
        )
    },
    "/maintenance/status-metrics": {
        "get": _op(
            maintenance.status_metrics,
            "Cluster-wide throttle counters (admin)",
            {"200": _json(_ok(_ref("StatusMetrics")), "counters"), **_errors(401, 403)},
            security=_BEARER,
        )
    },
    "/maintenance/status-metrics/reset": {
        "post": _op(
            maintenance.reset_status_metrics,
            "Zero the cluster-wide counters (admin)",
            {"200": _json(_ok(_ref("StatusMetrics")), "counters"), **_errors(401, 403)},
            security=_BEARER,
        )
    },
    "/maintenance/user-status": {
        "post": _op(
            maintenance.user_status,
            "Set a subject online or offline and announce it (admin)",
            {"200": _json(_ok(_ref("Presence")), "changed"), **_errors(400, 401, 403, 404, 413)},
            security=_BEARER,
        )
    },
    "/healthz": {
        "get": _op(health.healthz, "Liveness", {"200": _json(_ok(_ref("Health")), "alive")})
    },
    "/readyz": {
        "get": _op(
            health.readyz,
            "Readiness: Redis and MongoDB answer, the pub/sub listener hears its probe",
            {"200": _json(_ok(_ref("Readiness")), "ready"), **_errors(503)},
        )
    },
    "/metrics": {
        "get": _op(
            health.metrics,
            "Prometheus metrics (text format)",
            {"200": {"description": "metrics", "content": {"text/plain": {"schema": _STR}}}},
        )
    },
}


def _events() -> Schema:
    outbound = {
        name: _ref("AnyPresence") if not isinstance(model, type) else _ref(model.__name__)
        for name, model in events.OUTBOUND.items()
    }
    inbound = {name: _ref(model.__name__) for name, model in events.INBOUND.items()}
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
                    "content": {"application/json": {"schema": _ref("FeedEvent")}},
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
