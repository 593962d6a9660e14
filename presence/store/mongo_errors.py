"""Every driver error of a MongoDB store becomes :class:`StoreError` (a duplicate key
:class:`DuplicateError`), in one place, so callers count and retry instead of crashing."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pymongo.errors import DuplicateKeyError, PyMongoError

from presence.store.base import DuplicateError, StoreError

C = TypeVar("C", bound=type)


def _translated(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return await method(*args, **kwargs)
        except DuplicateKeyError as exc:
            raise DuplicateError("already exists") from exc
        except PyMongoError as exc:
            raise StoreError(str(exc)) from exc

    return call


def driver_errors_translated(cls: C) -> C:
    """Every coroutine method of ``cls`` raises StoreError for a driver error, never the
    driver's own exception."""
    for name, member in list(vars(cls).items()):
        # Public methods only: the private helpers run inside them.
        if inspect.iscoroutinefunction(member) and not name.startswith("_"):
            setattr(cls, name, _translated(member))
    return cls
