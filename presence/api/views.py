"""JSON shapes of the objects SPEC §6.2 names: user, participant, conversation."""

from __future__ import annotations

from presence.domain import PresenceRecord, iso
from presence.store.base import ConversationRecord, ParticipantRecord, ShareLinkRecord, UserRecord


def user_json(user: UserRecord) -> dict[str, object]:
    return {
        "id": user.id,
        "username": user.username,
        "email": user.email,
        "role": user.role.value,
        "createdAt": iso(user.created_at),
    }


def participant_json(participant: ParticipantRecord) -> dict[str, object]:
    return {
        "id": participant.id,
        "nickname": participant.nickname,
        "conversationId": participant.conversation_id,
        "isAnonymous": True,
    }


def conversation_json(
    conversation: ConversationRecord, members: list[PresenceRecord]
) -> dict[str, object]:
    return {
        "id": conversation.id,
        "title": conversation.title,
        "memberIds": list(conversation.member_ids),
        "createdAt": iso(conversation.created_at),
        "members": [m.to_json() for m in members],
    }


def share_link_json(link: ShareLinkRecord) -> dict[str, object]:
    return {
        "id": link.id,
        "conversationId": link.conversation_id,
        "expiresAt": iso(link.expires_at),
    }
