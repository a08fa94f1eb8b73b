"""The control API's audit trail in the journal (table control_audit): every state-changing request
and every refusal, written in batches off the request path, read back by GET /api/audit.

`AuditTrail` owns its own connection to the journal file (WAL: the engine's connection writes beside
it) so the control API keeps its trail whether or not the trading side is wired. `record` never
waits: entries queue (bounded; the oldest are dropped and counted when a flood outruns the disk) and
one writer task commits them, a batch per transaction. `since` flushes the queue first, so a read
sees every request answered before it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from perpbot.journal.sqlite import Journal

log = logging.getLogger("perpbot.journal.audit")

MAX_PENDING = 10_000
MAX_TEXT = 300
COLUMNS = ("ts", "method", "path", "scope", "remote", "origin", "status", "outcome", "idempotency_key",
           "operation_id")


def clean(text: str | None, limit: int = MAX_TEXT) -> str | None:
    """Header text as storable UTF-8 (raw bytes a client sent become escapes), bounded."""
    if text is None:
        return None
    try:  # aiohttp keeps header bytes that are not UTF-8 as surrogate escapes: back to those bytes
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace")[:limit]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One control request: what was asked, by which scope, from where, and what it got."""

    ts: float
    method: str
    path: str
    scope: str | None  # "trade", "read", or None (no token, or a wrong one)
    remote: str | None
    origin: str | None
    status: int
    outcome: str  # "ok", or the refusal's / error's message
    idempotency_key: str | None = None
    operation_id: str | None = None

    def row(self) -> tuple[Any, ...]:
        return (self.ts, clean(self.method, 16), clean(self.path), clean(self.scope, 16), clean(self.remote, 64),
                clean(self.origin), self.status, clean(self.outcome), clean(self.idempotency_key),
                clean(self.operation_id, 64))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class AuditTrail:
    """open() before use, close() at the end; record() from any request, since() to read back."""

    def __init__(self, path: str, clock: Callable[[], float] = time.time, max_pending: int = MAX_PENDING) -> None:
        self.path = path
        self.clock = clock
        self.dropped = 0
        self._journal = Journal(path, clock)
        self._pending: deque[AuditEntry] = deque()
        self._max_pending = max_pending
        self._queued = 0  # entries ever queued (dropped ones included) ...
        self._done = 0  # ... and ever written or dropped: flush() waits until they meet
        self._wake = asyncio.Event()
        self._progress = asyncio.Condition()
        self._writer: asyncio.Task[None] | None = None

    async def open(self) -> None:
        await self._journal.open()  # applies the migrations, control_audit included
        # Audit rows may be lost in a power cut (the request was answered already); NORMAL keeps a
        # flood of refusals from costing an fsync each while the engine's own connection stays FULL.
        await self._journal.db.execute("PRAGMA synchronous=NORMAL")
        self._writer = asyncio.get_running_loop().create_task(self._write_forever(), name="control-audit")

    async def close(self) -> None:
        if self._writer is not None:
            try:
                await asyncio.wait_for(self.flush(), 5.0)
            except (TimeoutError, asyncio.TimeoutError):
                log.error("Audit trail: %d entries not written at close", self._queued - self._done)
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None
        await self._journal.close()

    def record(self, entry: AuditEntry) -> None:
        """Queue one entry (never waits). Past max_pending the oldest queued entry is dropped."""
        if len(self._pending) >= self._max_pending:
            self._pending.popleft()
            self.dropped += 1
            self._done += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.error("Audit trail: %d entries dropped (requests faster than the journal)", self.dropped)
        self._pending.append(entry)
        self._queued += 1
        self._wake.set()

    async def flush(self) -> None:
        """Returns once every entry queued before the call is written (or dropped)."""
        target = self._queued
        if self._writer is None:
            return
        async with self._progress:
            await self._progress.wait_for(lambda: self._done >= target)

    async def since(self, since_ts: float, limit: int = 10_000) -> list[AuditEntry]:
        """Entries from `since_ts` on, oldest first (at most `limit`, the newest kept)."""
        await self.flush()
        async with self._journal.db.execute(
                f"SELECT {', '.join(COLUMNS)} FROM control_audit WHERE ts >= ? ORDER BY id DESC LIMIT ?",
                (since_ts, limit)) as cursor:
            rows = await cursor.fetchall()
        return [AuditEntry(*row) for row in reversed(list(rows))]

    async def _write_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = list(self._pending)
                self._pending.clear()
                try:
                    await self._write(batch)
                except Exception:  # the trail must never take the control API down
                    log.exception("Audit trail: %d entries not written", len(batch))
                async with self._progress:
                    self._done += len(batch)
                    self._progress.notify_all()

    async def _write(self, batch: list[AuditEntry]) -> None:
        # One hop to the database thread for the whole batch (Journal._transaction): the write lock is never
        # held across an await. The engine's write-ahead rows are written from the event loop's thread on the
        # same file; a transaction that waited for the loop while holding the lock would stall them.
        sql = f"INSERT INTO control_audit ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
        await self._journal._transaction([(sql, entry.row()) for entry in batch])  # noqa: SLF001


async def record_bot_change(journal: Journal, kind: str, details: dict[str, Any]) -> None:
    """A change the bot made on its own (the account preflight's fixes: position mode, margin mode, leverage)
    in the same trail as the operators' requests: method BOT, path `<kind>/<venue>`, scope "bot", the change as
    its outcome. Written through the engine's journal (one hop, like every explicit transaction)."""
    venue = str(details.get("venue", ""))
    outcome = "; ".join(f"{key} {value}" for key, value in details.items() if key != "venue") or "ok"
    entry = AuditEntry(ts=time.time(), method="BOT", path=f"{kind}/{venue}", scope="bot", remote=None, origin=None,
                       status=200, outcome=outcome)
    sql = f"INSERT INTO control_audit ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    await journal._transaction([(sql, entry.row())])  # noqa: SLF001


async def last_bot_changes(journal: Journal, kind: str) -> dict[str, float]:
    """venue -> when the bot last recorded a change of `kind` there (record_bot_change), from the trail."""
    async with journal.db.execute(
            "SELECT path, MAX(ts) FROM control_audit WHERE method = 'BOT' AND path LIKE ? GROUP BY path",
            (f"{kind}/%",)) as cursor:
        rows = await cursor.fetchall()
    return {str(path)[len(kind) + 1:]: float(ts) for path, ts in rows}

