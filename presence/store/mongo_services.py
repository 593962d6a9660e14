"""The service tokens of a MongoDB store (collection ``service_tokens``, one document per name,
the token's SHA-256 under a unique index)."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from presence.store.base import ServiceTokenRecord
from presence.store.mongo_errors import driver_errors_translated


def _service_token(doc: dict[str, Any]) -> ServiceTokenRecord:
    return ServiceTokenRecord(
        name=doc["_id"],
        token_hash=doc["tokenHash"],
        scopes=tuple(doc["scopes"]),
        created_at=doc["createdAt"],
    )


@driver_errors_translated
class MongoServiceTokens:
    _service_tokens: AsyncCollection[dict[str, Any]]

    async def create_service_token(self, record: ServiceTokenRecord) -> None:
        await self._service_tokens.insert_one(
            {
                "_id": record.name,
                "tokenHash": record.token_hash,
                "scopes": list(record.scopes),
                "createdAt": record.created_at,
            }
        )

    async def find_service_token(self, token_hash: str) -> ServiceTokenRecord | None:
        doc = await self._service_tokens.find_one({"tokenHash": token_hash})
        return None if doc is None else _service_token(doc)

    async def list_service_tokens(self) -> list[ServiceTokenRecord]:
        docs = await self._service_tokens.find({}).sort("_id", ASCENDING).to_list(None)
        return [_service_token(d) for d in docs]

    async def delete_service_token(self, name: str) -> bool:
        result = await self._service_tokens.delete_one({"_id": name})
        return result.deleted_count == 1
