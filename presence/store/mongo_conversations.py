"""Conversations in a MongoDB store: the conversation document (title, its member list) and one
``memberships`` document per member (``_id`` ``<conversation>|<user>``, indexed by user), so
"the conversations of a user" is an index lookup however large the conversations are. A member
list is not indexed in place: an index over an array of 100 000 ids is what some
MongoDB-compatible servers cannot hold (PostgreSQL's B-tree rows stop at 2 704 bytes)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from presence.store.base import ConversationRecord
from presence.store.mongo_errors import driver_errors_translated

# Ids never hold it: registered ids are ObjectIds, the platform's are URL-safe.
_SEPARATOR = "|"
_DUPLICATE_KEY = 11000


def conversation_record(doc: Mapping[str, Any]) -> ConversationRecord:
    return ConversationRecord(
        id=doc["_id"],
        title=doc["title"],
        member_ids=tuple(doc["memberIds"]),
        created_by=doc["createdBy"],
        created_at=doc["createdAt"],
    )


def _membership(conversation_id: str, user_id: str) -> dict[str, str]:
    return {
        "_id": f"{conversation_id}{_SEPARATOR}{user_id}",
        "conversationId": conversation_id,
        "userId": user_id,
    }


@driver_errors_translated
class MongoConversations:
    _conversations: AsyncCollection[dict[str, Any]]
    _memberships: AsyncCollection[dict[str, Any]]
    _max_batch: int

    async def _ensure_membership_indexes(self) -> None:
        """The lookups by user and by conversation; memberships written before this
        collection existed are derived once from the member lists."""
        await self._memberships.create_index("userId")
        await self._memberships.create_index("conversationId")
        with contextlib.suppress(OperationFailure):  # never created, or already dropped
            await self._conversations.drop_index("memberIds_1")
        if await self._memberships.estimated_document_count() == 0:
            async for doc in self._conversations.find({}, {"memberIds": True}):
                await self._add_memberships(doc["_id"], doc["memberIds"])

    async def _add_memberships(self, conversation_id: str, user_ids: Iterable[str]) -> None:
        docs = [_membership(conversation_id, u) for u in user_ids]
        for start in range(0, len(docs), self._max_batch):
            try:
                await self._memberships.insert_many(
                    docs[start : start + self._max_batch], ordered=False
                )
            except BulkWriteError as exc:  # already there (a retried or concurrent write)
                errors = exc.details.get("writeErrors", [])
                if any(e.get("code") != _DUPLICATE_KEY for e in errors):
                    raise

    async def _remove_memberships(self, conversation_id: str, user_ids: Sequence[str]) -> None:
        ids = [_membership(conversation_id, u)["_id"] for u in user_ids]
        for start in range(0, len(ids), self._max_batch):
            await self._memberships.delete_many(
                {"_id": {"$in": ids[start : start + self._max_batch]}}
            )

    async def create_conversation(
        self, *, title: str, member_ids: Sequence[str], created_by: str, now: datetime
    ) -> ConversationRecord:
        conversation_id = str(ObjectId())
        doc = {
            "_id": conversation_id,
            "title": title,
            "memberIds": list(member_ids),
            "createdBy": created_by,
            "createdAt": now,
        }
        await self._conversations.insert_one(doc)
        await self._add_memberships(conversation_id, member_ids)
        return conversation_record(doc)

    async def get_conversation(self, conversation_id: str) -> ConversationRecord | None:
        doc = await self._conversations.find_one({"_id": conversation_id})
        return None if doc is None else conversation_record(doc)

    async def get_conversations(self, conversation_ids: Sequence[str]) -> list[ConversationRecord]:
        if not conversation_ids:
            return []
        docs = await self._conversations.find({"_id": {"$in": list(conversation_ids)}}).to_list()
        return [conversation_record(d) for d in docs]

    async def conversation_ids_of(self, user_id: str) -> list[str]:
        memberships = await self._memberships.find(
            {"userId": user_id}, projection={"conversationId": True, "_id": False}
        ).to_list()
        return [m["conversationId"] for m in memberships]

    async def list_conversations(self, user_id: str) -> list[ConversationRecord]:
        ids = await self.conversation_ids_of(user_id)
        if not ids:
            return []
        docs = await self._conversations.find(
            {"_id": {"$in": ids}}, sort=[("createdAt", ASCENDING), ("_id", ASCENDING)]
        ).to_list()
        return [conversation_record(d) for d in docs]

    async def put_conversation(
        self, *, conversation_id: str, title: str, member_ids: Sequence[str], now: datetime
    ) -> tuple[str, ...] | None:
        update = {
            "$set": {"title": title, "memberIds": list(member_ids)},
            "$setOnInsert": {"createdBy": "directory", "createdAt": now},
        }
        before: dict[str, Any] | None = None
        for attempt in range(2):
            try:
                # No projection: FerretDB's findAndModify does not take one.
                before = await self._conversations.find_one_and_update(
                    {"_id": conversation_id},
                    update,
                    upsert=True,
                    return_document=ReturnDocument.BEFORE,
                )
                break
            except DuplicateKeyError:  # a concurrent first put of the same id made it
                if attempt:
                    raise
        previous = () if before is None else tuple(before["memberIds"])
        kept, was = set(member_ids), set(previous)
        await self._add_memberships(conversation_id, [m for m in member_ids if m not in was])
        await self._remove_memberships(conversation_id, [m for m in previous if m not in kept])
        return None if before is None else previous

    async def delete_conversation(self, conversation_id: str) -> tuple[str, ...] | None:
        before = await self._conversations.find_one_and_delete({"_id": conversation_id})
        if before is None:
            return None
        await self._memberships.delete_many({"conversationId": conversation_id})
        return tuple(before["memberIds"])
