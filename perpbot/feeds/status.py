"""The feed supervisor's status report (GET /api/websocket/status): built from its venue states.

Per venue: connected, since when, last message age, reconnects, resyncs, latency, ping
round trip, each book's validity and every connection's own status. The control API adds each
venue's private stream (perpbot.feeds.private_stream) under "private" (perpbot.control.server.with_private):
these fields stay the public market-data feed's only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from perpbot.book.store import BookStore
from perpbot.feeds.state import VenueFeed


def _max_present(values: Iterable[Any]) -> Any:
    """The largest of the values that are not None, or None when there is none."""
    present = [v for v in values if v is not None]
    return max(present) if present else None


def venue_status(feed: VenueFeed, store: BookStore, now: float) -> dict[str, Any]:
    """One venue's entry of the status report."""
    venue = feed.adapter.venue
    conns = [c.status(now) for c in feed.connections]
    since = [c.connected_since for c in feed.connections if c.connected_since is not None]
    books = {}
    for symbol in feed.symbols:
        book = store.get(venue, symbol)
        if book is not None:
            books[symbol] = {"valid": book.valid, "invalid_reason": book.invalid_reason}
    return {
        "connected": bool(feed.connections) and all(c.connected for c in feed.connections),
        "connected_since": min(since) if len(since) == len(conns) and since else None,
        "last_message_age_s": _max_present(s["last_message_age_s"] for s in conns),
        "reconnects": sum(c.reconnects for c in feed.connections),
        "resyncs": sum(c.resyncs for c in feed.connections),
        "latency_ms": _max_present(s["latency_ms"] for s in conns),
        "ping_rtt_ms": _max_present(s["ping_rtt_ms"] for s in conns),
        "books": books,
        "connections": conns,
    }


def build_status(venues: Mapping[str, VenueFeed], store: BookStore, now: float) -> dict[str, Any]:
    """The whole report: venue -> venue_status."""
    return {venue: venue_status(feed, store, now) for venue, feed in venues.items()}
