"""Conversations with every member's presence, share links, per-conversation presence."""

from __future__ import annotations

from aiohttp import web

from presence.api import parsing
from presence.api.context import Components, components
from presence.api.identity import caller, registered_user
from presence.api.responses import json_response
from presence.api.views import conversation_json, share_link_json
from presence.contract.http import NewConversationBody, ShareLinkBody
from presence.domain import PresenceRecord, Principal
from presence.rooms import page_limit
from presence.store.base import ConversationRecord


async def list_conversations(request: web.Request) -> web.Response:
    principal = await registered_user(request)
    c = components(request)
    found = await c.conversations.list_for(principal)
    data = []
    for conversation in found:
        data.append(conversation_json(conversation, await _listed(c, conversation, principal)))
    return json_response({"success": True, "data": data})


@parsing.takes(NewConversationBody)
async def create_conversation(request: web.Request) -> web.Response:
    principal = await registered_user(request)
    body = await parsing.body(request, NewConversationBody)
    c = components(request)
    conversation = await c.conversations.create(principal, body.title, body.member_ids)
    members = await _listed(c, conversation, principal)
    return json_response(
        {"success": True, "data": conversation_json(conversation, members)}, status=201
    )


async def _listed(
    c: Components, conversation: ConversationRecord, viewer: Principal
) -> list[PresenceRecord]:
    """Every member's presence; none for a large conversation (asked for by page)."""
    if c.conversations.is_large(conversation):
        return []
    members = await c.conversations.members(conversation)
    return await c.presence.records(members, viewer=viewer.subject)


@parsing.takes(ShareLinkBody, optional=True)
async def create_share_link(request: web.Request) -> web.Response:
    principal = await registered_user(request)
    conversation_id = parsing.path_id(request, "conversation_id")
    body = await parsing.body(request, ShareLinkBody)
    link = await components(request).conversations.create_share_link(
        principal, conversation_id, body.expires_in_seconds
    )
    return json_response({"success": True, "data": share_link_json(link)}, status=201)


async def conversation_presence(request: web.Request) -> web.Response:
    """Every member at once for a small conversation; by page (online first) when a limit or
    a cursor is given, and always for a large one."""
    principal = await caller(request)
    conversation_id = parsing.path_id(request, "conversation_id")
    c = components(request)
    conversation, members = await c.conversations.visible_with_members(principal, conversation_id)
    paged = "limit" in request.query or "cursor" in request.query
    if not paged and not c.rooms.is_large(conversation):
        records = await c.presence.records(members, viewer=principal.subject)
        data: dict[str, object] = {
            "conversationId": conversation.id,
            "users": [r.to_json() for r in records],
            "online": sum(1 for r in records if r.is_online),
            "total": len(records),
            "next": None,
        }
        return json_response({"success": True, "data": data})
    limit = page_limit(request.query.get("limit"))
    page = await c.rooms.page(
        conversation, members, principal.subject, request.query.get("cursor"), limit
    )
    count = await c.rooms.count(conversation)
    data = {
        "conversationId": conversation.id,
        "users": [r.to_json() for r in page.records],
        "online": count.online,
        "total": count.total,
        "next": page.next,
    }
    return json_response({"success": True, "data": data})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/conversations", list_conversations)
    app.router.add_post("/api/conversations", create_conversation)
    app.router.add_post("/api/conversations/{conversation_id}/share-links", create_share_link)
    app.router.add_get("/api/conversations/{conversation_id}/presence", conversation_presence)
