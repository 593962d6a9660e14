"""Conversations with every member's presence, share links, per-conversation presence."""

from __future__ import annotations

from aiohttp import web

from presence.api import parsing
from presence.api.context import components
from presence.api.identity import caller, registered_user
from presence.api.views import conversation_json, share_link_json

# A week: long enough for an invitation, short enough that a forgotten link dies.
MAX_LINK_LIFETIME_S = 7 * 24 * 3600.0


async def list_conversations(request: web.Request) -> web.Response:
    principal = await registered_user(request)
    c = components(request)
    found = await c.conversations.list_for(principal)
    data = []
    for conversation in found:
        members = await c.presence.records(
            await c.conversations.members(conversation), viewer=principal.subject
        )
        data.append(conversation_json(conversation, members))
    return web.json_response({"success": True, "data": data})


async def create_conversation(request: web.Request) -> web.Response:
    principal = await registered_user(request)
    body = await parsing.json_object(request)
    title = parsing.text(body, "title", max_len=200)
    member_ids = parsing.string_list(body, "memberIds", max_items=1000)
    c = components(request)
    conversation = await c.conversations.create(principal, title, member_ids)
    members = await c.presence.records(
        await c.conversations.members(conversation), viewer=principal.subject
    )
    return web.json_response(
        {"success": True, "data": conversation_json(conversation, members)}, status=201
    )


async def create_share_link(request: web.Request) -> web.Response:
    principal = await registered_user(request)
    conversation_id = parsing.path_id(request, "conversation_id")
    body = await parsing.json_object(request, optional=True)
    expires_in = parsing.optional_seconds(body, "expiresInSeconds", low=1, high=MAX_LINK_LIFETIME_S)
    link = await components(request).conversations.create_share_link(
        principal, conversation_id, expires_in
    )
    return web.json_response({"success": True, "data": share_link_json(link)}, status=201)


async def conversation_presence(request: web.Request) -> web.Response:
    principal = await caller(request)
    conversation_id = parsing.path_id(request, "conversation_id")
    c = components(request)
    conversation = await c.conversations.visible_to(principal, conversation_id)
    records = await c.presence.records(
        await c.conversations.members(conversation), viewer=principal.subject
    )
    return web.json_response(
        {
            "success": True,
            "data": {
                "conversationId": conversation.id,
                "users": [r.to_json() for r in records],
                "online": sum(1 for r in records if r.is_online),
                "total": len(records),
            },
        }
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/conversations", list_conversations)
    app.router.add_post("/api/conversations", create_conversation)
    app.router.add_post("/api/conversations/{conversation_id}/share-links", create_share_link)
    app.router.add_get("/api/conversations/{conversation_id}/presence", conversation_presence)
