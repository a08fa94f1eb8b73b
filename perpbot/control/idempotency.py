"""Idempotency-Key for state-changing requests: a retry within http.idempotency_window_s gets the
first answer back instead of acting twice (a resume or a close-all retried after a lost answer).

Keys are per route. A retry arriving while the first request still runs waits for it. The stored
answer of a long operation is its id: the retry answers the operation as it stands then (its result
once done), like a poll. The same key with a different body is refused (422); answers of 5xx are
not kept (the request did not run to an answer: a retry may act).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

MAX_KEY_CHARS = 200
MAX_ENTRIES = 5_000


class BadKey(ValueError):
    """An Idempotency-Key that is empty, too long or not printable ASCII."""


def check_key(key: str) -> str:
    key = key.strip()
    if not key or len(key) > MAX_KEY_CHARS or not key.isascii() or not key.isprintable():
        raise BadKey(f"Idempotency-Key must be 1..{MAX_KEY_CHARS} printable ASCII characters")
    return key


def fingerprint(method: str, path: str, query: str, body: bytes) -> str:
    return hashlib.sha256(b"\0".join((method.encode(), path.encode(), query.encode(), body))).hexdigest()


@dataclass(frozen=True, slots=True)
class Stored:
    """A first answer kept for its retries: the response's status and JSON body, or an operation id."""

    status: int
    body: bytes
    operation_id: str | None = None


@dataclass(slots=True)
class _Entry:
    fingerprint: str
    done: asyncio.Future[Stored]
    stored_at: float | None = None


class Conflict(Exception):
    """The key was used for a different request on this route."""


class IdempotencyCache:
    def __init__(self, window_s: float, clock: Callable[[], float] = time.monotonic,
                 max_entries: int = MAX_ENTRIES) -> None:
        self.window_s = window_s
        self.clock = clock
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()

    async def run(self, route: str, key: str, request_fingerprint: str,
                  produce: Callable[[], Awaitable[Stored]]) -> tuple[Stored, bool]:
        """(answer, replayed): the first answer for (route, key) within the window, else produce() one."""
        self._expire()
        entry = self._entries.get((route, key))
        if entry is not None:
            if entry.fingerprint != request_fingerprint:
                raise Conflict("Idempotency-Key already used for a different request on this route")
            try:
                return await asyncio.shield(entry.done), True
            except _NotKept:
                pass  # the first attempt ended without an answer worth keeping: act now
        entry = _Entry(request_fingerprint, asyncio.get_running_loop().create_future())
        self._entries[(route, key)] = entry
        try:
            stored = await produce()
        except BaseException:
            self._drop(route, key, entry)
            raise
        if stored.status >= 500:
            self._drop(route, key, entry)
            return stored, False
        entry.stored_at = self.clock()
        entry.done.set_result(stored)
        return stored, False

    def _drop(self, route: str, key: str, entry: _Entry) -> None:
        if self._entries.get((route, key)) is entry:
            del self._entries[(route, key)]
        if not entry.done.done():
            entry.done.set_exception(_NotKept())
            entry.done.exception()  # retrieved: no "never retrieved" warning when nobody waited

    def _expire(self) -> None:
        now = self.clock()
        for key, entry in list(self._entries.items()):
            if entry.stored_at is not None and now - entry.stored_at > self.window_s:
                del self._entries[key]
        while len(self._entries) > self.max_entries:
            oldest = next(iter(self._entries))
            if self._entries[oldest].stored_at is None:
                break  # still running: kept
            del self._entries[oldest]


class _NotKept(Exception):
    pass
