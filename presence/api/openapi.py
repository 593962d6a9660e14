"""The OpenAPI 3.1 document of the REST API, served at ``/openapi.json``.

``tests/integration/test_openapi.py`` checks real responses against it, so it cannot drift.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from presence import __version__

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: list[str], props: Schema, *, extra: bool = False) -> Schema:
    return {
        "type": "object",
        "required": required,
        "properties": props,
        "additionalProperties": extra,
    }


def _ok(data: Schema) -> Schema:
    return _obj(["success", "data"], {"success": {"const": True}, "data": data})


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Schema]:
    return {str(s): _json(_ref("Error"), "error") for s in statuses}


_TIME = {"type": ["string", "null"], "format": "date-time"}
_STR = {"type": "string"}
_BEARER: list[Schema] = [{"bearer": []}]
_ANY_AUTH: list[Schema] = [{"bearer": []}, {"session": []}]

SCHEMAS: dict[str, Schema] = {
    "Error": _obj(
        ["success", "error"],
        {
            "success": {"const": False},
            "error": _obj(["code", "message"], {"code": _STR, "message": _STR}),
            "data": {"type": "object"},
        },
    ),
    "Presence": _obj(
        ["userId", "username", "isAnonymous", "isOnline", "status", "lastActiveAt", "lastSeen"],
        {
            "userId": _STR,
            "username": _STR,
            "isAnonymous": {"type": "boolean"},
            "isOnline": {"type": "boolean"},
            "status": {"enum": ["online", "away", "dnd", "offline"]},
            "lastActiveAt": _TIME,
            "lastSeen": _TIME,
        },
    ),
    "User": _obj(
        ["id", "username", "email", "role", "createdAt"],
        {
            "id": _STR,
            "username": _STR,
            "email": _STR,
            "role": {"enum": ["user", "admin"]},
            "createdAt": _TIME,
        },
    ),
    "Participant": _obj(
        ["id", "nickname", "conversationId", "isAnonymous"],
        {"id": _STR, "nickname": _STR, "conversationId": _STR, "isAnonymous": {"const": True}},
    ),
    "Conversation": _obj(
        ["id", "title", "memberIds", "createdAt", "members"],
        {
            "id": _STR,
            "title": _STR,
            "memberIds": {"type": "array", "items": _STR},
            "createdAt": _TIME,
            "members": {"type": "array", "items": _ref("AnyPresence")},
        },
    ),
    "StatusMetrics": _obj(
        [
            "totalRequests",
            "throttledRequests",
            "successfulUpdates",
            "failedUpdates",
            "cacheSize",
            "throttleRate",
        ],
        {
            "totalRequests": {"type": "integer", "minimum": 0},
            "throttledRequests": {"type": "integer", "minimum": 0},
            "successfulUpdates": {"type": "integer", "minimum": 0},
            "failedUpdates": {"type": "integer", "minimum": 0},
            "cacheSize": {"type": "integer", "minimum": 0},
            "throttleRate": {"type": "number", "minimum": 0, "maximum": 100},
        },
    ),
}

# The caller's own record also says what it chose, which others never see (e.g. invisible).
SCHEMAS["OwnPresence"] = _obj(
    [*SCHEMAS["Presence"]["required"], "manualStatus"],
    {
        **SCHEMAS["Presence"]["properties"],
        "manualStatus": {"enum": ["online", "away", "dnd", "invisible"]},
    },
)

# Lists show everyone's public record, and the caller's own record where the caller appears.
SCHEMAS["AnyPresence"] = {"oneOf": [_ref("Presence"), _ref("OwnPresence")]}

_SESSION = _obj(
    ["success", "token", "user"],
    {"success": {"const": True}, "token": _STR, "user": _ref("User")},
)
_PRESENCE_LIST = _obj(["users"], {"users": {"type": "array", "items": _ref("AnyPresence")}})
_ME = {
    "type": "object",
    "required": ["id", "presence"],
    "properties": {"presence": {"oneOf": [_ref("OwnPresence"), {"type": "null"}]}},
}


def _op(
    summary: str,
    responses: dict[str, Schema],
    *,
    security: list[Schema] | None = None,
    body: Schema | None = None,
    parameters: list[Schema] | None = None,
) -> Schema:
    op: Schema = {"summary": summary, "responses": responses}
    op["security"] = security if security is not None else []
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if parameters:
        op["parameters"] = parameters
    return op


def _path_param(name: str) -> Schema:
    # What parsing.path_id accepts; anything else is a 400.
    schema = {"type": "string", "minLength": 1, "maxLength": 64}
    description = "an id: 1 to 64 characters, no control characters"
    return {"name": name, "in": "path", "required": True, "schema": schema,
            "description": description}  # fmt: skip


PATHS: dict[str, Schema] = {
    "/api/auth/register": {
        "post": _op(
            "Create an account",
            {"201": _json(_SESSION, "created"), **_errors(400, 409, 413)},
            body=_obj(
                ["username", "email", "password"],
                {
                    "username": _STR,
                    "email": _STR,
                    "password": {"type": "string", "minLength": 8},
                },
            ),
        )
    },
    "/api/auth/login": {
        "post": _op(
            "Log in",
            {"200": _json(_SESSION, "logged in"), **_errors(400, 401, 413)},
            body=_obj(["email", "password"], {"email": _STR, "password": _STR}),
        )
    },
    "/api/anonymous/join/{linkId}": {
        "post": _op(
            "Join a conversation as a guest through a share link",
            {
                "201": _json(
                    _obj(
                        ["success", "sessionToken", "participant"],
                        {
                            "success": {"const": True},
                            "sessionToken": _STR,
                            "participant": _ref("Participant"),
                        },
                    ),
                    "joined",
                ),
                **_errors(400, 401, 404, 413),
            },
            body=_obj(["nickname"], {"nickname": _STR}),
            parameters=[_path_param("linkId")],
        )
    },
    "/api/users/me": {
        "get": _op(
            "The caller's profile and presence",
            {"200": _json(_ok(_ME), "profile"), **_errors(401)},
            security=_ANY_AUTH,
        )
    },
    "/api/users/me/status": {
        "put": _op(
            "Set the caller's manual status",
            {
                "200": _json(_ok(_ref("OwnPresence")), "status set"),
                **_errors(400, 401, 413),
            },
            security=_ANY_AUTH,
            body=_obj(["status"], {"status": {"enum": ["online", "away", "dnd", "invisible"]}}),
        )
    },
    "/api/presence/heartbeat": {
        "post": _op(
            "Count the caller as active (for clients without a socket)",
            {
                "200": _json(_obj(["success"], {"success": {"const": True}}), "recorded"),
                **_errors(401),
            },
            security=_ANY_AUTH,
        )
    },
    "/api/users/presence": {
        "get": _op(
            "Presence of up to 200 subjects the caller shares a conversation with",
            {"200": _json(_ok(_PRESENCE_LIST), "presence"), **_errors(400, 401, 403)},
            security=_BEARER,
            parameters=[{"name": "ids", "in": "query", "required": True, "schema": _STR}],
        )
    },
    "/api/conversations": {
        "get": _op(
            "The caller's conversations with every member's presence",
            {
                "200": _json(_ok({"type": "array", "items": _ref("Conversation")}), "list"),
                **_errors(401, 403),
            },
            security=_BEARER,
        ),
        "post": _op(
            "Create a conversation (the caller is a member)",
            {"201": _json(_ok(_ref("Conversation")), "created"), **_errors(400, 401, 403, 413)},
            security=_BEARER,
            body=_obj(
                ["title", "memberIds"],
                {"title": _STR, "memberIds": {"type": "array", "items": _STR}},
            ),
        ),
    },
    "/api/conversations/{conversationId}/share-links": {
        "post": _op(
            "Create a share link that lets guests join",
            {
                "201": _json(
                    _ok(
                        _obj(
                            ["id", "conversationId", "expiresAt"],
                            {"id": _STR, "conversationId": _STR, "expiresAt": _TIME},
                        )
                    ),
                    "created",
                ),
                **_errors(400, 401, 403, 404, 413),
            },
            security=_BEARER,
            parameters=[_path_param("conversationId")],
        )
    },
    "/api/conversations/{conversationId}/presence": {
        "get": _op(
            "Presence of every member of one conversation",
            {
                "200": _json(
                    _ok(
                        _obj(
                            ["conversationId", "users", "online", "total"],
                            {
                                "conversationId": _STR,
                                "users": {"type": "array", "items": _ref("AnyPresence")},
                                "online": {"type": "integer", "minimum": 0},
                                "total": {"type": "integer", "minimum": 0},
                            },
                        )
                    ),
                    "presence",
                ),
                **_errors(400, 401, 403, 404),
            },
            security=_ANY_AUTH,
            parameters=[_path_param("conversationId")],
        )
    },
    "/maintenance/stats": {
        "get": _op(
            "Cluster statistics (admin)",
            {
                "200": _json(
                    _ok(
                        _obj(
                            [
                                "onlineUsers",
                                "totalUsers",
                                "anonymousSessions",
                                "onlineAnonymous",
                                "offlineThresholdMinutes",
                                "maintenanceActive",
                                "leader",
                                "workers",
                            ],
                            {
                                "onlineUsers": {"type": "integer", "minimum": 0},
                                "totalUsers": {"type": "integer", "minimum": 0},
                                "anonymousSessions": {"type": "integer", "minimum": 0},
                                "onlineAnonymous": {"type": "integer", "minimum": 0},
                                "offlineThresholdMinutes": {"type": "number"},
                                "maintenanceActive": {"type": "boolean"},
                                "leader": {"type": ["string", "null"]},
                                "workers": {"type": "integer", "minimum": 0},
                            },
                        )
                    ),
                    "stats",
                ),
                **_errors(401, 403),
            },
            security=_BEARER,
        )
    },
    "/maintenance/status-metrics": {
        "get": _op(
            "Cluster-wide throttle counters (admin)",
            {"200": _json(_ok(_ref("StatusMetrics")), "counters"), **_errors(401, 403)},
            security=_BEARER,
        )
    },
    "/maintenance/status-metrics/reset": {
        "post": _op(
            "Zero the cluster-wide counters (admin)",
            {"200": _json(_ok(_ref("StatusMetrics")), "counters"), **_errors(401, 403)},
            security=_BEARER,
        )
    },
    "/maintenance/user-status": {
        "post": _op(
            "Set a subject online or offline and announce it (admin)",
            {"200": _json(_ok(_ref("Presence")), "changed"), **_errors(400, 401, 403, 404, 413)},
            security=_BEARER,
            body=_obj(["userId", "isOnline"], {"userId": _STR, "isOnline": {"type": "boolean"}}),
        )
    },
    "/healthz": {
        "get": _op(
            "Liveness",
            {
                "200": _json(
                    _ok(_obj(["status", "worker"], {"status": {"const": "ok"}, "worker": _STR})),
                    "alive",
                )
            },
        )
    },
    "/readyz": {
        "get": _op(
            "Readiness: Redis and MongoDB answer, the pub/sub listener hears its probe",
            {
                "200": _json(
                    _ok(
                        _obj(
                            ["redis", "mongodb", "pubsub"],
                            {"redis": _STR, "mongodb": _STR, "pubsub": _STR},
                        )
                    ),
                    "ready",
                ),
                **_errors(503),
            },
        )
    },
    "/metrics": {
        "get": _op(
            "Prometheus metrics (text format)",
            {"200": {"description": "metrics", "content": {"text/plain": {"schema": _STR}}}},
        )
    },
}


def document() -> Schema:
    return {
        "openapi": "3.1.0",
        "info": {"title": "presence", "version": __version__},
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "session": {"type": "apiKey", "in": "header", "name": "X-Session-Token"},
            },
        },
    }


async def serve(request: web.Request) -> web.Response:
    return web.json_response(document())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/openapi.json", serve)
