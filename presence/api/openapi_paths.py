"""The operations of the OpenAPI document (:mod:`presence.api.openapi`): one entry per route,
each naming its handler, so ``tests/integration/test_openapi.py`` can check every route of the
app has one and every request body is the one its handler declares."""

from __future__ import annotations

from typing import Any

from presence.api import accounts, conversations, directory, health, maintenance, service, users
from presence.api.parsing import DECLARED, Handler
from presence.contract.fields import MAX_ID_CHARS

Schema = dict[str, Any]


def ref(name: str) -> Schema:
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
    return {str(s): _json(ref("Error"), "error") for s in statuses}


HANDLER = "handler"
_BEARER: list[Schema] = [{"bearer": []}]
_ANY_AUTH: list[Schema] = [{"bearer": []}, {"session": []}]
_SERVICE: list[Schema] = [{"service": []}]
_STR = {"type": "string"}
_PRESENCE_LIST = ref("PresenceList")
_ME = {"oneOf": [ref("UserProfile"), ref("ParticipantProfile")]}


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
        schema = ref(declared.model.__name__)
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
            {"201": _json(ref("Session"), "created"), **_errors(400, 409, 413)},
        )
    },
    "/api/auth/login": {
        "post": _op(
            accounts.login,
            "Log in",
            {"200": _json(ref("Session"), "logged in"), **_errors(400, 401, 413, 429)},
        )
    },
    "/api/anonymous/join/{linkId}": {
        "post": _op(
            accounts.join,
            "Join a conversation as a guest through a share link",
            {"201": _json(ref("Joined"), "joined"), **_errors(400, 401, 404, 413)},
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
            "Set the caller's manual status, with an optional text and end "
            "(400 invalid_status_text / invalid_until)",
            {"200": _json(_ok(ref("OwnPresence")), "status set"), **_errors(400, 401, 413)},
            security=_ANY_AUTH,
        )
    },
    "/api/users/me/privacy": {
        "get": _op(
            users.privacy,
            "How much of their last seen the caller shows others",
            {"200": _json(_ok(ref("Privacy")), "privacy"), **_errors(401, 403)},
            security=_BEARER,
        ),
        "put": _op(
            users.set_privacy,
            "Choose how much of the caller's last seen others see (400 invalid_privacy)",
            {"200": _json(_ok(ref("Privacy")), "privacy set"), **_errors(400, 401, 403, 413)},
            security=_BEARER,
        ),
    },
    "/api/presence/heartbeat": {
        "post": _op(
            users.heartbeat,
            "Count the caller as active (for clients without a socket)",
            {"200": _json(ref("Acknowledged"), "recorded"), **_errors(401)},
            security=_ANY_AUTH,
        )
    },
    "/api/users/presence": {
        "get": _op(
            users.presence_of,
            "Presence of up to 200 subjects the caller shares a conversation with",
            {"200": _json(_ok(ref("PresenceList")), "presence"), **_errors(400, 401, 403)},
            security=_BEARER,
            parameters=[{"name": "ids", "in": "query", "required": True, "schema": _STR}],
        )
    },
    "/api/conversations": {
        "get": _op(
            conversations.list_conversations,
            "The caller's conversations with every member's presence",
            {
                "200": _json(_ok({"type": "array", "items": ref("Conversation")}), "list"),
                **_errors(401, 403),
            },
            security=_BEARER,
        ),
        "post": _op(
            conversations.create_conversation,
            "Create a conversation (the caller is a member)",
            {"201": _json(_ok(ref("Conversation")), "created"), **_errors(400, 401, 403, 413)},
            security=_BEARER,
        ),
    },
    "/api/conversations/{conversationId}/share-links": {
        "post": _op(
            conversations.create_share_link,
            "Create a share link that lets guests join",
            {"201": _json(_ok(ref("ShareLink")), "created"), **_errors(400, 401, 403, 404, 413)},
            security=_BEARER,
            parameters=[_path_param("conversationId")],
        )
    },
    "/api/conversations/{conversationId}/presence": {
        "get": _op(
            conversations.conversation_presence,
            "Presence of the members of one conversation: all of a small one, or by page "
            "(online first) with limit or cursor, and always for a large one",
            {
                "200": _json(_ok(ref("ConversationPresence")), "presence"),
                **_errors(400, 401, 403, 404),
            },
            security=_ANY_AUTH,
            parameters=[
                _path_param("conversationId"),
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50},
                    "description": "members per page (400 invalid_limit otherwise)",
                },
                {
                    "name": "cursor",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": "the next of the page before (400 invalid_cursor otherwise)",
                },
            ],
        )
    },
    "/api/service/presence": {
        "post": _op(
            service.service_presence,
            "Presence of up to 1 000 users and guests by id, with whether each is connected "
            "(service token, scope presence:read; never activity)",
            {
                "200": _json(_ok(ref("ServicePresenceList")), "presence"),
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
            {"200": _json(_ok(ref("EventPage")), "events"), **_errors(400, 401, 403, 429)},
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
                "200": _json(_ok(ref("DirectoryOutcome")), "stored"),
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
                "200": _json(_ok(ref("DirectoryOutcome")), "stored"),
                **_errors(400, 401, 403, 413, 429),
            },
            security=_SERVICE,
            parameters=[_path_param("conversationId")],
        ),
        "delete": _op(
            directory.delete_conversation,
            "Delete one of the platform's conversations (scope directory:write)",
            {"200": _json(ref("Acknowledged"), "deleted"), **_errors(401, 403, 404, 429)},
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
                "200": _json(_ok(ref("DirectoryBatchOutcome")), "stored"),
                **_errors(400, 401, 403, 413, 429),
            },
            security=_SERVICE,
        )
    },
    "/maintenance/stats": {
        "get": _op(
            maintenance.stats,
            "Cluster statistics (admin)",
            {"200": _json(_ok(ref("Stats")), "stats"), **_errors(401, 403)},
            security=_BEARER,
        )
    },
    "/maintenance/status-metrics": {
        "get": _op(
            maintenance.status_metrics,
            "Cluster-wide throttle counters (admin)",
            {"200": _json(_ok(ref("StatusMetrics")), "counters"), **_errors(401, 403)},
            security=_BEARER,
        )
    },
    "/maintenance/status-metrics/reset": {
        "post": _op(
            maintenance.reset_status_metrics,
            "Zero the cluster-wide counters (admin)",
            {"200": _json(_ok(ref("StatusMetrics")), "counters"), **_errors(401, 403)},
            security=_BEARER,
        )
    },
    "/maintenance/user-status": {
        "post": _op(
            maintenance.user_status,
            "Set a subject online or offline and announce it (admin)",
            {"200": _json(_ok(ref("Presence")), "changed"), **_errors(400, 401, 403, 404, 413)},
            security=_BEARER,
        )
    },
    "/healthz": {
        "get": _op(health.healthz, "Liveness", {"200": _json(_ok(ref("Health")), "alive")})
    },
    "/readyz": {
        "get": _op(
            health.readyz,
            "Readiness: Redis and MongoDB answer, the pub/sub listener hears its probe",
            {"200": _json(_ok(ref("Readiness")), "ready"), **_errors(503)},
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
