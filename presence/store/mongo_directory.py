"""What a directory sync writes to a MongoDB store: the host platform's users and conversations
under the platform's own ids, each an idempotent upsert that says what was there before."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from presence.domain import ManualStatus, Role
from presence.store.base import UserRecord
from presence.store.mongo_errors import driver_errors_translated


def user_record(doc: Mapping[str, Any]) -> UserRecord:
    return UserRecord(
        id=doc["_id"],
        username=doc["username"],
        email=doc["email"],
        password_hash=doc["passwordHash"],
        role=Role(doc.get("role", "user")),
        is_active=bool(doc.get("isActive", True)),
        created_at=doc["createdAt"],
    )


@driver_errors_translated
class MongoDirectory:
    _users: AsyncCollection[dict[str, Any]]
    _conversations: AsyncCollection[dict[str, Any]]

    async def put_user(
        self, *, user_id: str, username: str, is_active: bool, email: str, now: datetime
    ) -> UserRecord | None:
        update = {
            "$set": {"username": username, "isActive": is_active},
            "$setOnInsert": {
                "email": email,
                "passwordHash": "",
                "role": Role.USER.value,
                "createdAt": now,
                "isOnline": False,
                "manualStatus": ManualStatus.ONLINE.value,
                "lastActiveAt": None,
                "lastSeen": None,
            },
        }
        for attempt in range(2):
            try:
                before = await self._users.find_one_and_update(
                    {"_id": user_id}, update, upsert=True, return_document=ReturnDocument.BEFORE
                )
                return None if before is None else user_record(before)
            except DuplicateKeyError:
                if attempt:  # a concurrent first put of the same id made it: update it now
                    raise
        raise AssertionError("unreachable")
