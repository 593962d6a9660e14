"""Directory sync for the host platform's services (scope ``directory:write``): its users and
conversations under its own ids, idempotent, applied to live sockets on every worker."""

from __future__ import annotations

from aiohttp import web

from presence.api import parsing
from presence.api.context import components
from presence.api.responses import json_response
from presence.api.service import service_caller
from presence.contract.http import (
    MAX_DIRECTORY_MEMBERS,
    DirectoryBatchBody,
    DirectoryConversationBody,
    DirectoryUserBody,
)
from presence.directory import PutOutcome
from presence.domain import InvalidInput

SCOPE = "directory:write"
# A 100 000-member list of 128-character ids, with room for the JSON around it.
MAX_IMPORT_BYTES = 16 * 1024 * 1024


def _outcome(outcome: PutOutcome) -> dict[str, object]:
    return {"created": outcome.created, "added": outcome.added, "removed": outcome.removed}


@parsing.takes(DirectoryUserBody)
async def put_user(request: web.Request) -> web.Response:
    await service_caller(request, SCOPE)
    user_id = parsing.path_id(request, "user_id")
    body = await parsing.body(request, DirectoryUserBody)
    outcome = await components(request).directory.put_user(user_id, body.username, body.is_active)
    return json_response({"success": True, "data": _outcome(outcome)})


@parsing.takes(DirectoryConversationBody, max_bytes=MAX_IMPORT_BYTES)
async def put_conversation(request: web.Request) -> web.Response:
    await service_caller(request, SCOPE)
    conversation_id = parsing.path_id(request, "conversation_id")
    body = await parsing.body(request, DirectoryConversationBody)
    outcome = await components(request).directory.put_conversation(
        conversation_id, body.title, body.member_ids
    )
    return json_response({"success": True, "data": _outcome(outcome)})


async def delete_conversation(request: web.Request) -> web.Response:
    await service_caller(request, SCOPE)
    conversation_id = parsing.path_id(request, "conversation_id")
    await components(request).directory.delete_conversation(conversation_id)
    return json_response({"success": True})


@parsing.takes(DirectoryBatchBody, max_bytes=MAX_IMPORT_BYTES)
async def put_conversations(request: web.Request) -> web.Response:
    """An initial import: many conversations in one call (at most 100 000 memberships)."""
    await service_caller(request, SCOPE)
    body = await parsing.body(request, DirectoryBatchBody)
    if sum(len(c.member_ids) for c in body.conversations) > MAX_DIRECTORY_MEMBERS:
        raise InvalidInput(
            f"a batch holds at most {MAX_DIRECTORY_MEMBERS} memberships", "too_many_members"
        )
    directory = components(request).directory
    for conversation in body.conversations:  # all checked before any is stored
        directory.checked(conversation.id, conversation.member_ids)
    totals = {"conversations": 0, "created": 0, "added": 0, "removed": 0}
    for conversation in body.conversations:
        outcome = await directory.put_conversation(
            conversation.id, conversation.title, conversation.member_ids
        )
        totals["conversations"] += 1
        totals["created"] += int(outcome.created)
        totals["added"] += outcome.added
        totals["removed"] += outcome.removed
    return json_response({"success": True, "data": totals})


def add_routes(app: web.Application) -> None:
    app.router.add_put("/api/service/users/{user_id}", put_user)
    app.router.add_put("/api/service/conversations/{conversation_id}", put_conversation)
    app.router.add_delete("/api/service/conversations/{conversation_id}", delete_conversation)
    app.router.add_post("/api/service/conversations:batch", put_conversations)
