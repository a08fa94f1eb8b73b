"""The store of all books: lookup, freshness, and the dirty set that wakes the scanner."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

from perpbot.book.l2 import L2Book


class BookStore:
    def __init__(self, stale_after_s: float = 5.0) -> None:
        self.books: dict[tuple[str, str], L2Book] = {}
        self.stale_after_s = stale_after_s
        self.dirty: set[tuple[str, str]] = set()
        self.changed = asyncio.Event()
        # Counts add(): readers holding a book's objects (the scanner's C screen) rebind when it moves.
        self.generation = 0

    def add(
        self, venue: str, symbol: str, contract_size: Decimal = Decimal(1), keep_raw: bool = False
    ) -> L2Book:
        book = L2Book(venue, symbol, contract_size, keep_raw)
        self.books[(venue, symbol)] = book
        self.generation += 1
        return book

    def get(self, venue: str, symbol: str) -> L2Book | None:
        return self.books.get((venue, symbol))

    def mark_dirty(self, venue: str, symbol: str) -> None:
        self.dirty.add((venue, symbol))
        self.changed.set()

    def take_dirty(self) -> set[tuple[str, str]]:
        dirty, self.dirty = self.dirty, set()
        self.changed.clear()
        return dirty

    def is_usable(self, book: L2Book, now: float | None = None) -> bool:
        """Valid and fresh: the only books the scanner and risk gate may read."""
        if not book.valid:
            return False
        now = time.time() if now is None else now
        return (now - book.recv_ts) <= self.stale_after_s

    def of_venue(self, venue: str) -> list[L2Book]:
        return [b for (v, _), b in self.books.items() if v == venue]
