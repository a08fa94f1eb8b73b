"""The journal's connection with every statement run to completion in one hop to the database thread.

aiosqlite's cursors step a SELECT lazily: between `execute` and the last `fetch`, the statement stays
active and keeps its read snapshot open across awaits. Another connection writing the file meanwhile
(the order path's write-ahead rows, written from the event loop's thread; the control audit trail) leaves
that snapshot stale, and the next write on this connection then fails at once with "database is
locked" (SQLITE_BUSY_SNAPSHOT: busy_timeout never applies to it). Here each `execute` runs the statement,
reads all its rows, its rowcount and lastrowid, and closes it, in the database thread, in one call: no
statement outlives its hop, every write starts from a fresh snapshot and waits for the lock as it should.
Journal reads are bounded (the engine's windows, the API's limits), so holding their rows is fine.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Generator, Iterable
from typing import Any

import aiosqlite


class EagerCursor:
    """A finished statement: its rows, rowcount and lastrowid (the subset of a cursor the journal uses)."""

    def __init__(self, rows: list[Any], rowcount: int, lastrowid: int | None) -> None:
        self._rows = rows
        self._next = 0
        self.rowcount = rowcount
        self.lastrowid = lastrowid

    async def fetchall(self) -> list[Any]:
        rows, self._next = self._rows[self._next:], len(self._rows)
        return rows

    async def fetchone(self) -> Any:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    async def __aiter__(self) -> AsyncIterator[Any]:
        while self._next < len(self._rows):
            self._next += 1
            yield self._rows[self._next - 1]

    async def close(self) -> None:
        return None


class _Statement:
    """What `execute` returns: awaitable (the cursor) and an async context manager (like aiosqlite's)."""

    def __init__(self, run: Any) -> None:
        self._run = run

    def __await__(self) -> Generator[Any, None, EagerCursor]:
        cursor: EagerCursor = yield from self._run.__await__()
        return cursor

    async def __aenter__(self) -> EagerCursor:
        cursor: EagerCursor = await self._run
        return cursor

    async def __aexit__(self, *exc_info: Any) -> None:
        return None


def _run_statement(conn: sqlite3.Connection, sql: str, params: Iterable[Any]) -> EagerCursor:
    cursor = conn.execute(sql, tuple(params))
    try:
        rows = cursor.fetchall()
        return EagerCursor(rows, cursor.rowcount, cursor.lastrowid)
    finally:
        cursor.close()


class EagerConnection:
    """An aiosqlite connection whose `execute` finishes each statement in one hop (see the module)."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.raw = db

    def execute(self, sql: str, parameters: Iterable[Any] = ()) -> _Statement:
        return _Statement(self.raw._execute(_run_statement, self.raw._conn, sql, parameters))  # noqa: SLF001

    async def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]) -> None:
        await self.raw._execute(_run_many, self.raw._conn, sql, [tuple(p) for p in parameters])  # noqa: SLF001

    async def execute_fetchall(self, sql: str, parameters: Iterable[Any] = ()) -> list[Any]:
        cursor = await self.execute(sql, parameters)
        return await cursor.fetchall()

    @property
    def in_transaction(self) -> bool:
        return self.raw.in_transaction

    async def _execute(self, fn: Any, *args: Any) -> Any:
        return await self.raw._execute(fn, *args)  # noqa: SLF001

    @property
    def _conn(self) -> sqlite3.Connection:
        return self.raw._conn  # noqa: SLF001

    async def close(self) -> None:
        await self.raw.close()

    def __getattr__(self, name: str) -> Any:
        # Anything else (commit, rollback, ...) is aiosqlite's own: none of it leaves a statement active.
        return getattr(self.raw, name)


def _run_many(conn: sqlite3.Connection, sql: str, rows: list[tuple[Any, ...]]) -> None:
    conn.executemany(sql, rows).close()
