"""MongoDB store through PyMongo's native asyncio client (``AsyncMongoClient``).

Every driver error becomes :class:`StoreError` (a duplicate key :class:`DuplicateError`), in
one place (:func:`presence.store.mongo_errors.driver_errors_translated`), so callers count and
retry instead of crashing.
Times are stored as BSON dates (millisecond precision, UTC).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, AsyncMongoClient, ReturnDocument, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection

from presence.domain import LastSeenPrivacy, ManualStatus, Role, SubjectKind, SubjectRef
from presence.store.base import (
    OnlineChange,
    ParticipantRecord,
    ShareLinkRecord,
    StoredPresence,
    Sweep,
    UserRecord,
)
from presence.store.mongo_conversations import MongoConversations
from presence.store.mongo_directory import MongoDirectory, user_record
from presence.store.mongo_errors import driver_errors_translated
from presence.store.mongo_services import MongoServiceTokens
from presence.store.mongo_status import MongoStatus

Doc = Mapping[str, Any]


def _participant(doc: Doc) -> ParticipantRecord:
    return ParticipantRecord(
        id=doc["_id"],
        conversation_id=doc["conversationId"],
        share_link_id=doc["shareLinkId"],
        nickname=doc["nickname"],
        is_active=bool(doc.get("isActive", True)),
        joined_at=doc["joinedAt"],
    )


def _link(doc: Doc) -> ShareLinkRecord:
    return ShareLinkRecord(
        id=doc["_id"],
        conversation_id=doc["conversationId"],
        created_by=doc["createdBy"],
        expires_at=doc.get("expiresAt"),
        is_active=bool(doc.get("isActive", True)),
        created_at=doc["createdAt"],
    )


def _presence_fields() -> dict[str, Any]:
    return {
        "isOnline": False,
        "manualStatus": ManualStatus.ONLINE.value,
        "lastActiveAt": None,
        "lastSeen": None,
    }


@driver_errors_translated
class MongoStore(MongoStatus, MongoServiceTokens, MongoDirectory, MongoConversations):
    def __init__(
        self, client: AsyncMongoClient[dict[str, Any]], database: str, *, max_batch: int = 100
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._client = client
        self._max_batch = max_batch
        db = client[database]
        self._users: AsyncCollection[dict[str, Any]] = db["users"]
        self._participants: AsyncCollection[dict[str, Any]] = db["anonymous_participants"]
        self._conversations: AsyncCollection[dict[str, Any]] = db["conversations"]
        self._memberships: AsyncCollection[dict[str, Any]] = db["memberships"]
        self._links: AsyncCollection[dict[str, Any]] = db["share_links"]
        self._leases: AsyncCollection[dict[str, Any]] = db["leases"]
        self._service_tokens: AsyncCollection[dict[str, Any]] = db["service_tokens"]
        self._db = db

    @classmethod
    def from_url(cls, url: str, database: str, *, max_batch: int = 100) -> MongoStore:
        # Short server selection so a MongoDB outage fails a write in seconds, not 30 s; the
        # failed write is counted and its window released (SPEC §4).
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            url, tz_aware=True, serverSelectionTimeoutMS=3000, connectTimeoutMS=3000
        )
        return cls(client, database, max_batch=max_batch)

    def _collection(self, subject: SubjectRef) -> AsyncCollection[dict[str, Any]]:
        return self._participants if subject.is_anonymous else self._users

    async def ping(self) -> None:
        await self._db.command("ping")

    async def ensure_indexes(self) -> None:
        await self._users.create_index("email", unique=True)
        for coll in (self._users, self._participants):
            # The sweep asks for "online and quiet since T".
            await coll.create_index([("isOnline", ASCENDING), ("lastActiveAt", ASCENDING)])
        await self._participants.create_index("sessionTokenHash", unique=True)
        await self._participants.create_index("conversationId")
        await self._ensure_membership_indexes()
        await self._service_tokens.create_index("tokenHash", unique=True)
        await self._ensure_status_indexes()

    async def close(self) -> None:
        await self._client.close()

    async def create_user(
        self,
        *,
        username: str,
        email: str,
        password_hash: str,
        role: Role,
        now: datetime,
        user_id: str | None = None,
    ) -> UserRecord:
        doc = {
            "_id": user_id or str(ObjectId()),
            "username": username,
            "email": email.casefold(),
            "passwordHash": password_hash,
            "role": role.value,
            "isActive": True,
            "createdAt": now,
            **_presence_fields(),
        }
        await self._users.insert_one(doc)
        return user_record(doc)

    async def _update(self, coll: AsyncCollection[dict[str, Any]], query: Doc, update: Doc) -> bool:
        result = await coll.update_one(query, update)
        return result.matched_count > 0

    async def get_user(self, user_id: str) -> UserRecord | None:
        doc = await self._users.find_one({"_id": user_id})
        return None if doc is None else user_record(doc)

    async def find_user_by_email(self, email: str) -> UserRecord | None:
        doc = await self._users.find_one({"email": email.casefold()})
        return None if doc is None else user_record(doc)

    async def set_user_active(self, user_id: str, active: bool) -> bool:
        return await self._update(self._users, {"_id": user_id}, {"$set": {"isActive": active}})

    async def count_users(self) -> int:
        return await self._users.count_documents({})

    async def existing_user_ids(self, user_ids: Sequence[str]) -> set[str]:
        cursor = self._users.find({"_id": {"$in": list(user_ids)}}, projection={"_id": 1})
        docs = await cursor.to_list()
        return {d["_id"] for d in docs}

    async def create_participant(
        self, *, conversation_id: str, link_id: str, nickname: str, token_hash: str, now: datetime
    ) -> ParticipantRecord:
        doc = {
            "_id": str(ObjectId()),
            "conversationId": conversation_id,
            "shareLinkId": link_id,
            "nickname": nickname,
            "sessionTokenHash": token_hash,
            "isActive": True,
            "joinedAt": now,
            **_presence_fields(),
        }
        await self._participants.insert_one(doc)
        return _participant(doc)

    async def get_participant(self, participant_id: str) -> ParticipantRecord | None:
        doc = await self._participants.find_one({"_id": participant_id})
        return None if doc is None else _participant(doc)

    async def find_participant_by_token_hash(self, token_hash: str) -> ParticipantRecord | None:
        doc = await self._participants.find_one({"sessionTokenHash": token_hash})
        return None if doc is None else _participant(doc)

    async def set_participant_active(self, participant_id: str, active: bool) -> bool:
        return await self._update(
            self._participants, {"_id": participant_id}, {"$set": {"isActive": active}}
        )

    async def count_participants(self) -> int:
        return await self._participants.count_documents({"isActive": True})

    async def list_participants(self, conversation_id: str) -> list[ParticipantRecord]:
        docs = await self._participants.find(
            {"conversationId": conversation_id, "isActive": True},
            sort=[("joinedAt", ASCENDING), ("_id", ASCENDING)],
        ).to_list()
        return [_participant(d) for d in docs]

    async def create_share_link(
        self, *, conversation_id: str, created_by: str, expires_at: datetime | None, now: datetime
    ) -> ShareLinkRecord:
        doc = {
            "_id": str(ObjectId()),
            "conversationId": conversation_id,
            "createdBy": created_by,
            "expiresAt": expires_at,
            "isActive": True,
            "createdAt": now,
        }
        await self._links.insert_one(doc)
        return _link(doc)

    async def get_share_link(self, link_id: str) -> ShareLinkRecord | None:
        doc = await self._links.find_one({"_id": link_id})
        return None if doc is None else _link(doc)

    async def record_activity(
        self, subject: SubjectRef, at: datetime, *, mark_online: bool
    ) -> bool:
        update: dict[str, Any] = {"$max": {"lastActiveAt": at}}
        if mark_online:
            update["$set"] = {"isOnline": True}
        return await self._update(self._collection(subject), {"_id": subject.id}, update)

    async def set_online(
        self, subject: SubjectRef, online: bool, *, last_seen: datetime | None = None
    ) -> bool:
        update: dict[str, Any] = {"$set": {"isOnline": online}}
        if last_seen is not None:
            update["$max"] = {"lastSeen": last_seen}
        return await self._update(self._collection(subject), {"_id": subject.id}, update)

    async def set_online_many(self, changes: Sequence[OnlineChange]) -> int:
        by_collection: dict[SubjectKind, list[UpdateOne]] = {}
        for change in changes:
            update: dict[str, Any] = {"$set": {"isOnline": change.online}}
            if change.last_seen is not None:
                update["$max"] = {"lastSeen": change.last_seen}
            by_collection.setdefault(change.subject.kind, []).append(
                UpdateOne({"_id": change.subject.id}, update)
            )
        return await self._bulk(by_collection)

    async def get_presence(
        self, subjects: Sequence[SubjectRef]
    ) -> dict[SubjectRef, StoredPresence]:
        found: dict[SubjectRef, StoredPresence] = {}
        projection = {
            "username": 1,
            "nickname": 1,
            "isOnline": 1,
            "manualStatus": 1,
            "lastActiveAt": 1,
            "lastSeen": 1,
            "statusText": 1,
            "statusUntil": 1,
            "lastSeenPrivacy": 1,
        }
        for kind, coll, name_field in (
            (SubjectKind.USER, self._users, "username"),
            (SubjectKind.ANONYMOUS, self._participants, "nickname"),
        ):
            ids = [s.id for s in subjects if s.kind is kind]
            if not ids:
                continue
            # An equality match for the common single subject: some MongoDB-compatible
            # servers plan "$in" far worse than an _id lookup.
            query = {"_id": ids[0]} if len(ids) == 1 else {"_id": {"$in": ids}}
            for doc in await coll.find(query, projection=projection).to_list():
                subject = SubjectRef(kind, doc["_id"])
                found[subject] = StoredPresence(
                    subject=subject,
                    name=doc[name_field],
                    is_online=bool(doc.get("isOnline", False)),
                    manual_status=ManualStatus(doc.get("manualStatus") or "online"),
                    last_active_at=doc.get("lastActiveAt"),
                    last_seen=doc.get("lastSeen"),
                    status_text=doc.get("statusText"),
                    status_until=doc.get("statusUntil"),
                    privacy=LastSeenPrivacy(doc.get("lastSeenPrivacy") or "exact"),
                )
        return found

    async def next_leader_epoch(self) -> int:
        doc = await self._leases.find_one_and_update(
            {"_id": "maintenance"},
            {"$inc": {"epoch": 1}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        assert doc is not None
        return int(doc["epoch"])

    async def leader_epoch(self) -> int:
        doc = await self._leases.find_one({"_id": "maintenance"})
        return 0 if doc is None else int(doc["epoch"])

    async def sweep_offline(
        self, sweeps: Sequence[Sweep], *, epoch: int, worker_id: str, at: datetime
    ) -> int:
        # One round trip per collection and ``max_batch`` operations. The database is the
        # fence: a document last written under a newer epoch does not match.
        fence = [{"presenceEpoch": {"$exists": False}}, {"presenceEpoch": {"$lte": epoch}}]
        by_collection: dict[SubjectKind, list[UpdateOne]] = {}
        for subject, last_seen in sweeps:
            by_collection.setdefault(subject.kind, []).append(
                UpdateOne(
                    {"_id": subject.id, "$or": fence},
                    {
                        "$set": {
                            "isOnline": False,
                            "presenceEpoch": epoch,
                            "sweptBy": worker_id,
                            "sweptAt": at,
                        },
                        "$max": {"lastSeen": last_seen},
                    },
                )
            )
        return await self._bulk(by_collection)

    async def _bulk(self, by_collection: dict[SubjectKind, list[UpdateOne]]) -> int:
        """Unordered bulk writes of at most ``max_batch`` operations each (a MongoDB-compatible
        server may hold a bulk larger than its connection pool); returns how many matched."""
        written = 0
        for kind, operations in by_collection.items():
            coll = self._participants if kind is SubjectKind.ANONYMOUS else self._users
            for start in range(0, len(operations), self._max_batch):
                chunk = operations[start : start + self._max_batch]
                result = await coll.bulk_write(chunk, ordered=False)
                written += result.matched_count
        return written
