"""Pure book integrity: apply a BookUpdate through the venue's sequence and checksum rules.

Every venue supplies a `BookRules` object (perpbot/venues/<venue>/parse.py). This module is
the one place that decides whether an update may touch a book, so every venue gets the
same guarantees: a failed check invalidates the book at once and returns a reason the
supervisor turns into a resync; deltas are ignored while a book awaits its snapshot.
"""

from __future__ import annotations

from typing import Protocol

from perpbot.book.l2 import L2Book
from perpbot.core.events import BookUpdate

APPLY = "apply"
DROP = "drop"  # harmless duplicate/old message: ignore without invalidating


class BookRules(Protocol):
    """Venue-specific integrity rules."""

    def check_sequence(self, book: L2Book, update: BookUpdate) -> str:
        """APPLY, DROP, or a gap reason (any other string) for a delta on a synced book."""
        ...

    def verify_checksum(self, book: L2Book, checksum: int) -> bool:
        """True when the book after the update matches the venue's checksum."""
        ...


def apply_update(book: L2Book, update: BookUpdate, rules: BookRules) -> str | None:
    """Apply one update. Returns None when the book is fine (or the update was dropped),
    otherwise the reason the book was invalidated (the caller resyncs)."""
    if update.snapshot:
        try:
            book.replace(update.bids, update.asks)
        except (ValueError, IndexError, TypeError) as exc:
            book.clear()
            book.invalidate("malformed")
            return f"malformed: {exc}"
        book.seq = update.seq
    else:
        if book.seq is None:
            # No snapshot yet (or resync pending): deltas cannot be placed. Not an error.
            return None
        verdict = rules.check_sequence(book, update)
        if verdict == DROP:
            return None
        if verdict != APPLY:
            book.invalidate(verdict)
            book.seq = None
            return verdict
        try:
            book.apply_side(update.bids, True)
            book.apply_side(update.asks, False)
        except (ValueError, IndexError, TypeError) as exc:
            book.invalidate("malformed")
            book.seq = None
            return f"malformed: {exc}"
        book.seq = update.seq
    book.exchange_ts_ms = update.exchange_ts_ms
    book.recv_ts = update.recv_ts
    book.updates += 1
    if update.checksum is not None and not rules.verify_checksum(book, update.checksum):
        book.invalidate("checksum")
        book.seq = None
        return "checksum"
    bid_keys = book.bid_keys
    ask_keys = book.ask_keys
    if bid_keys and ask_keys and bid_keys[-1] >= ask_keys[0]:  # book.is_crossed(), inlined
        book.invalidate("crossed")
        book.seq = None
        return "crossed"
    if book.awaiting_first_delta:
        # Venues whose snapshot comes from REST (Binance) stay invalid until the first
        # delta has bridged the snapshot; their rules clear this flag.
        return None
    book.valid = True
    book.invalid_reason = None
    return None


def apply_checked_delta(
    book: L2Book, bids: list, asks: list, seq: int, exchange_ts_ms: int, recv_ts: float
) -> str | None:
    """apply_update's APPLY branch for a delta whose sequence the caller has already checked
    (a venue fast path), for venues that send no checksum: the same book state and the same
    reasons ("malformed: ...", "crossed"). The book must be synced and not awaiting its first delta."""
    try:
        book.apply_levels(bids, asks)
    except (ValueError, IndexError, TypeError) as exc:
        book.invalidate("malformed")
        book.seq = None
        return f"malformed: {exc}"
    book.seq = seq
    book.exchange_ts_ms = exchange_ts_ms
    book.recv_ts = recv_ts
    book.updates += 1
    bid_keys = book.bid_keys
    ask_keys = book.ask_keys
    if bid_keys and ask_keys and bid_keys[-1] >= ask_keys[0]:
        book.invalidate("crossed")
        book.seq = None
        return "crossed"
    book.valid = True
    book.invalid_reason = None
    return None
