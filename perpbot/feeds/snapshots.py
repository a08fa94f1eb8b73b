"""REST book snapshots for `adapter.rest_snapshot` venues (Binance style), used by the feed supervisor.

`fetch_snapshot` GETs `adapter.snapshot_url(rest_url, symbol)` and parses it; on failure it
backs off and queues the symbol again ("snapshot_retry"). `apply_snapshot` applies the
snapshot and then the deltas buffered while it was in flight, and answers the reason the
book needs another resync (or None). The supervisor carries out that resync.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

import aiohttp

from perpbot.book.store import BookStore
from perpbot.book.sync import apply_update
from perpbot.core.events import BookUpdate
from perpbot.feeds.connection import backoff_delay
from perpbot.feeds.state import VenueFeed
from perpbot.settings import FeedSettings

# The supervisor's logger: these lines belong to its resync story.
log = logging.getLogger("perpbot.feeds.supervisor")


async def fetch_snapshot(
    session: aiohttp.ClientSession,
    feed: VenueFeed,
    symbol: str,
    settings: FeedSettings,
    rng: random.Random,
) -> BookUpdate | None:
    """The parsed snapshot, or None after a failure (logged, backed off, symbol queued again)."""
    adapter = feed.adapter
    url = adapter.snapshot_url(feed.rest_url, symbol)
    try:
        async with session.get(url) as response:
            body = await response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {body[:200]!r}")
        update = adapter.parse_snapshot(body, symbol, time.time())
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        failures = feed.snapshot_failures.get(symbol, 0) + 1
        feed.snapshot_failures[symbol] = failures
        delay = backoff_delay(failures, settings.backoff_initial_s, settings.backoff_max_s, rng)
        log.warning("Book snapshot failed: venue=%s symbol=%s url=%s reason=%s; retry in %.1fs",
                    adapter.venue, symbol, url, f"{exc.__class__.__name__}: {exc}", delay)
        await asyncio.sleep(delay)
        feed.pending.setdefault(symbol, "snapshot_retry")
        return None
    feed.snapshot_failures.pop(symbol, None)
    return update


def apply_snapshot(store: BookStore, feed: VenueFeed, symbol: str, update: BookUpdate) -> str | None:
    """Apply the snapshot, then the buffered deltas; the resync reason, or None (book marked dirty if valid)."""
    adapter = feed.adapter
    venue = adapter.venue
    book = store.get(venue, symbol)
    if book is None:
        return None
    buffered = feed.buffers.pop(symbol, None) or ()
    # The snapshot alone never makes the book valid: the venue rules clear this flag
    # when a delta bridges the snapshot's sequence.
    book.awaiting_first_delta = True
    reason = apply_update(book, update, adapter.rules)
    if reason is None:
        for event in buffered:
            reason = apply_update(book, event, adapter.rules)
            if reason is not None:
                break
    if reason is None and book.valid:
        store.mark_dirty(venue, symbol)
    return reason
