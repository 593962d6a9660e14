"""What a subject chooses for itself in MongoDB: its manual status with a text and an end, and
(users only) how much of its last seen it shows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from presence.domain import LastSeenPrivacy, ManualStatus, SubjectKind, SubjectRef
from presence.store.base import ManualChoice
from presence.store.mongo_errors import driver_errors_translated

# The fields a choice consists of; clearing it writes them all.
_AUTOMATIC = {"manualStatus": ManualStatus.ONLINE.value, "statusText": None, "statusUntil": None}


@driver_errors_translated
class MongoStatus:
    _users: AsyncCollection[dict[str, Any]]
    _participants: AsyncCollection[dict[str, Any]]

    def _subject_collection(self, subject: SubjectRef) -> AsyncCollection[dict[str, Any]]:
        return self._participants if subject.is_anonymous else self._users

    async def _ensure_status_indexes(self) -> None:
        for coll in (self._users, self._participants):
            # The maintenance leader lists the statuses that end (a Redis that lost its
            # schedule gets it back from here).
            await coll.create_index("statusUntil")

    async def set_manual_status(self, subject: SubjectRef, choice: ManualChoice) -> bool:
        update = {
            "manualStatus": choice.status.value,
            "statusText": choice.text,
            "statusUntil": choice.until,
        }
        result = await self._subject_collection(subject).update_one(
            {"_id": subject.id}, {"$set": update}
        )
        return result.matched_count > 0

    async def clear_expired_status(self, subject: SubjectRef, until: datetime) -> bool:
        result = await self._subject_collection(subject).update_one(
            {"_id": subject.id, "statusUntil": until}, {"$set": _AUTOMATIC}
        )
        return result.modified_count > 0

    async def expiring_statuses(self, limit: int) -> list[tuple[SubjectRef, datetime]]:
        found: list[tuple[SubjectRef, datetime]] = []
        collections = ((SubjectKind.USER, self._users), (SubjectKind.ANONYMOUS, self._participants))
        for kind, coll in collections:
            cursor = (
                coll.find({"statusUntil": {"$type": "date"}}, projection={"statusUntil": 1})
                .sort("statusUntil", 1)
                .limit(limit)
            )
            found += [(SubjectRef(kind, d["_id"]), d["statusUntil"]) async for d in cursor]
        return sorted(found, key=lambda item: item[1])[:limit]

    async def set_last_seen_privacy(self, user_id: str, privacy: LastSeenPrivacy) -> bool:
        result = await self._users.update_one(
            {"_id": user_id}, {"$set": {"lastSeenPrivacy": privacy.value}}
        )
        return result.matched_count > 0
