"""Feed supervisor: frames -> adapter.parse -> integrity-checked books, funding store, resyncs, feed metrics.

The frame handler is synchronous and allocation-lean (it runs for every WebSocket frame);
anything that needs I/O -- resubscribe frames, Binance-style REST snapshots -- is queued as
a "pending resync" and carried out by a worker task. Integrity policy:

| what happened                              | books affected               | action                            |
|--------------------------------------------|------------------------------|-----------------------------------|
| apply_update returns a reason (gap,        | that symbol                  | log one line, count               |
| checksum, crossed, malformed levels)       |                              | book_resyncs{exchange,reason},    |
|                                            |                              | resync that symbol                |
| adapter.parse raises (ParseError or a bug) | every book of the connection | invalidate all, resync each       |
|                                            |                              | (we cannot know whose frame it    |
|                                            |                              | was), count parse_errors          |
| connection (re)opened                      | every book of the connection | invalidate; the stored subscribe  |
|                                            |                              | frames bring fresh snapshots (or  |
|                                            |                              | a REST snapshot for rest venues)  |
| connection lost                            | every book of the connection | invalidate ("disconnected")       |

A resync is `adapter.resync_frames(symbol)` sent on the symbol's connection, or for
`adapter.rest_snapshot` venues a REST GET of `adapter.snapshot_url(rest_url, symbol)`;
that symbol's deltas are buffered while the snapshot is in flight and replayed after it,
with `book.awaiting_first_delta = True` so the venue rules decide when the book is valid.
Resyncs of one symbol are spaced by at least RESYNC_COOLDOWN_S so a venue that keeps
sending bad data cannot make us hammer it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from decimal import Decimal
from typing import Any

import aiohttp

from perpbot.book.store import BookStore
from perpbot.book.sync import apply_update
from perpbot.core.events import BookUpdate, FundingUpdate, ParseError, Pong, SubscribeAck, VenueError
from perpbot.core.venue import FeedAdapter
from perpbot.feeds.connection import Connection
from perpbot.feeds.snapshots import apply_snapshot, fetch_snapshot
from perpbot.feeds.state import VenueFeed
from perpbot.feeds.status import build_status
from perpbot.scanner.protocol import FundingMap
from perpbot.settings import FeedSettings

log = logging.getLogger("perpbot.feeds.supervisor")

RESYNC_COOLDOWN_S = 1.0
SNAPSHOT_TIMEOUT_S = 10.0
# Deltas flowing for this long while a book still waits for its WebSocket snapshot mean the
# snapshot was lost (e.g. swallowed by a stall): subscribe again instead of waiting forever.
SNAPSHOT_WAIT_S = 5.0
MAX_BUFFERED_DELTAS = 20_000  # per symbol while a REST snapshot is in flight
GAUGE_INTERVAL_S = 1.0
STOP_GRACE_S = 3.0


class FundingStore:
    """Latest FundingUpdate per (venue, symbol)."""

    def __init__(self) -> None:
        # A FundingMap (a dict counting its writes) lets the scanner skip funding re-checks.
        self.latest: dict[tuple[str, str], FundingUpdate] = FundingMap()

    def update(self, event: FundingUpdate) -> None:
        self.latest[(event.venue, event.symbol)] = event

    def get(self, venue: str, symbol: str) -> FundingUpdate | None:
        return self.latest.get((venue, symbol))

    def of_symbol_pairs(self) -> list[FundingUpdate]:
        return list(self.latest.values())


class FeedSupervisor:
    """Owns every venue connection and keeps the BookStore's books exact."""

    def __init__(
        self,
        store: BookStore,
        metrics: Any,
        settings: FeedSettings,
        *,
        funding: FundingStore | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.settings = settings
        self.funding = funding or FundingStore()
        self.venues: dict[str, VenueFeed] = {}
        self.started = asyncio.Event()
        self._stop = asyncio.Event()
        self._work = asyncio.Event()
        self._rng = rng or random.Random()
        self._session: aiohttp.ClientSession | None = None
        self._tg: asyncio.TaskGroup | None = None

    # -- building ---------------------------------------------------------------------
    def add_venue(
        self,
        adapter: FeedAdapter,
        ws_url: str,
        rest_url: str,
        symbols: list[str],
        contract_sizes: dict[str, Decimal] | None = None,
    ) -> list[Connection]:
        """Create the books and connections of one venue (nothing is opened until run())."""
        venue = adapter.venue
        feed = VenueFeed(adapter=adapter, rest_url=rest_url, symbols=list(symbols))
        for symbol in symbols:
            size = (contract_sizes or {}).get(symbol, Decimal(1))
            self.store.add(venue, symbol, size, keep_raw=adapter.keep_raw)
        for spec in adapter.connections(ws_url, list(symbols)):
            conn = Connection(
                venue,
                spec,
                self.settings,
                self._frame_handler(feed),
                ping_frame=adapter.ping_frame(),
                ping_interval_s=adapter.ping_interval_s,
                on_connect=self._on_connect(feed),
                on_disconnect=self._on_disconnect(feed),
                metrics=self.metrics,
                rng=self._rng,
            )
            feed.connections.append(conn)
            for symbol in spec.symbols:
                feed.book_connection.setdefault(symbol, conn)
        self.venues[venue] = feed
        if self.metrics is not None:
            self.metrics.websocket_connected.labels(venue).set(0)
            self.metrics.books_valid.labels(venue).set(0)
        return feed.connections

    def connections(self) -> list[Connection]:
        return [c for feed in self.venues.values() for c in feed.connections]

    # -- running ----------------------------------------------------------------------
    async def run(self) -> None:
        """Run every connection plus the resync worker until stop()."""
        timeout = aiohttp.ClientTimeout(total=SNAPSHOT_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as session:
            self._session = session
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                runs = [tg.create_task(conn.run(), name=f"feed:{conn.name}") for conn in self.connections()]
                worker = tg.create_task(self._resync_worker(), name="feed:resync")
                gauges = tg.create_task(self._gauge_loop(), name="feed:gauges")
                self.started.set()
                await self._stop.wait()
                for conn in self.connections():
                    await conn.stop()
                worker.cancel()
                gauges.cancel()
                if runs:
                    # A connection stuck in its opening handshake is cancelled after a grace period.
                    _, stuck = await asyncio.wait(runs, timeout=STOP_GRACE_S)
                    for task in stuck:
                        task.cancel()
            self._tg = None
        self._session = None

    async def stop(self) -> None:
        self._stop.set()

    # -- hot path -----------------------------------------------------------------------
    def _frame_handler(self, feed: VenueFeed):
        adapter = feed.adapter
        parse = adapter.parse
        rules = adapter.rules
        venue = adapter.venue
        books = self.store.books
        mark_dirty = self.store.mark_dirty
        funding = self.funding
        latency_hist = self.metrics.websocket_latency.labels(venue) if self.metrics else None
        buffers = feed.buffers
        rest_snapshot = adapter.rest_snapshot
        # The venue's book hot path (FeedAdapter.apply_books_frame: OKX `books` updates...): decodes
        # straight into a synced book and answers (book, ts, reason); None hands the frame, untouched,
        # to parse + apply_update below.
        fast = adapter.apply_books_frame

        def on_frame(conn: Connection, frame: str | bytes, recv_ts: float) -> None:
            if not buffers:
                done = fast(frame, recv_ts, books)
                if done is not None:
                    book, ts_ms, reason = done
                    if ts_ms:  # as below: the latency of every book frame carrying an exchange ts
                        latency = recv_ts - ts_ms / 1000.0
                        conn.note_latency(latency)
                        if latency_hist is not None and latency >= 0:
                            latency_hist.observe(latency)
                    if reason is not None:
                        self._resync(feed, book.symbol, reason)
                    elif book.valid:
                        mark_dirty(venue, book.symbol)
                    return
            try:
                events = parse(frame, recv_ts)
            except Exception as exc:  # ParseError, or an adapter bug: the frame cannot be trusted
                self._parse_failure(feed, conn, exc)
                return
            for event in events:
                if type(event) is BookUpdate:
                    target = books.get((venue, event.symbol))
                    if target is None:
                        continue  # a symbol we did not ask for
                    if event.exchange_ts_ms:
                        latency = recv_ts - event.exchange_ts_ms / 1000.0
                        conn.note_latency(latency)
                        if latency_hist is not None and latency >= 0:
                            latency_hist.observe(latency)
                    if buffers and not event.snapshot:
                        buffer = buffers.get(event.symbol)
                        if buffer is not None:
                            buffer.append(event)
                            continue
                    if target.seq is None and not rest_snapshot:
                        self._note_awaiting(feed, event)
                    reason = apply_update(target, event, rules)
                    if reason is not None:
                        self._resync(feed, event.symbol, reason)
                    elif target.valid:
                        mark_dirty(venue, event.symbol)
                elif type(event) is FundingUpdate:
                    funding.update(event)
                elif type(event) is Pong:
                    conn.note_pong()
                elif type(event) is VenueError:
                    log.warning("Venue error frame: venue=%s connection=%s code=%s message=%s",
                                venue, conn.name, event.code, event.message)
                elif type(event) is SubscribeAck:
                    log.debug("Subscribed: venue=%s connection=%s %s", venue, conn.name, event.detail)

        return on_frame

    # -- integrity ----------------------------------------------------------------------
    def _note_awaiting(self, feed: VenueFeed, event: BookUpdate) -> None:
        """A frame for a book with no snapshot yet (WebSocket-snapshot venues only)."""
        symbol = event.symbol
        if event.snapshot:
            feed.awaiting_since.pop(symbol, None)
            return
        if symbol in feed.pending or symbol in feed.inflight:
            return
        now = time.monotonic()
        since = feed.awaiting_since.setdefault(symbol, now)
        if now - since > SNAPSHOT_WAIT_S:
            del feed.awaiting_since[symbol]
            self._resync(feed, symbol, "no snapshot")

    def _parse_failure(self, feed: VenueFeed, conn: Connection, exc: Exception) -> None:
        venue = feed.adapter.venue
        reason = exc.reason if isinstance(exc, ParseError) else f"{exc.__class__.__name__}: {exc}"
        if self.metrics is not None:
            self.metrics.parse_errors_total.labels(venue).inc()
        log.warning("Unparseable frame: venue=%s connection=%s reason=%s; resyncing its %d books",
                    venue, conn.name, reason, len(conn.spec.symbols))
        for symbol in conn.spec.symbols:
            if symbol in feed.symbols:
                self._resync(feed, symbol, "parse_error")

    def _resync(self, feed: VenueFeed, symbol: str, reason: str) -> None:
        """Invalidate one book, count it, and queue the venue's way of getting a fresh snapshot."""
        venue = feed.adapter.venue
        label = reason.split(":", 1)[0].strip() or "unknown"
        book = self.store.get(venue, symbol)
        if book is not None:
            book.invalidate(reason)
            book.seq = None
        log.warning("Book resync: venue=%s symbol=%s reason=%s", venue, symbol, reason)
        if self.metrics is not None:
            self.metrics.book_resyncs_total.labels(venue, label).inc()
        conn = feed.book_connection.get(symbol)
        if conn is not None:
            conn.resyncs += 1
        if feed.adapter.rest_snapshot and symbol not in feed.buffers:
            feed.buffers[symbol] = deque(maxlen=MAX_BUFFERED_DELTAS)
        feed.pending.setdefault(symbol, label)
        self._work.set()

    def _on_connect(self, feed: VenueFeed):
        def on_connect(conn: Connection) -> None:
            venue = feed.adapter.venue
            for symbol in conn.spec.symbols:
                feed.awaiting_since.pop(symbol, None)
                book = self.store.get(venue, symbol)
                if book is not None:
                    book.invalidate("awaiting snapshot after connect")
                    book.seq = None
                if feed.adapter.rest_snapshot:
                    # Start buffering before the subscribe frames go out, then fetch.
                    feed.buffers[symbol] = deque(maxlen=MAX_BUFFERED_DELTAS)
                    feed.pending[symbol] = "connect"
                    self._work.set()
                else:
                    feed.pending.pop(symbol, None)  # the re-sent subscriptions bring a snapshot
            self._set_connected_gauge(feed)

        return on_connect

    def _on_disconnect(self, feed: VenueFeed):
        def on_disconnect(conn: Connection, reason: str) -> None:
            venue = feed.adapter.venue
            for symbol in conn.spec.symbols:
                book = self.store.get(venue, symbol)
                if book is not None:
                    book.invalidate("disconnected")
                    book.seq = None
            self._set_connected_gauge(feed)
            self._set_books_gauge(feed)

        return on_disconnect

    # -- worker: carries out pending resyncs --------------------------------------------
    async def _resync_worker(self) -> None:
        while True:
            await self._work.wait()
            self._work.clear()
            for feed in self.venues.values():
                for symbol in list(feed.pending):
                    if symbol in feed.inflight:
                        continue  # picked up again when the in-flight one finishes
                    feed.pending.pop(symbol)
                    feed.inflight.add(symbol)
                    assert self._tg is not None
                    self._tg.create_task(self._carry_out(feed, symbol), name=f"resync:{symbol}")

    async def _carry_out(self, feed: VenueFeed, symbol: str) -> None:
        try:
            wait = feed.last_resync.get(symbol, 0.0) + RESYNC_COOLDOWN_S - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            feed.last_resync[symbol] = time.monotonic()
            if feed.adapter.rest_snapshot:
                await self._rest_snapshot(feed, symbol)
            else:
                conn = feed.book_connection.get(symbol)
                if conn is not None:
                    for frame in feed.adapter.resync_frames(symbol):
                        if not await conn.send(frame):
                            break  # disconnected: the reconnect resubscribes anyway
        finally:
            feed.inflight.discard(symbol)
            if symbol in feed.pending:
                self._work.set()

    async def _rest_snapshot(self, feed: VenueFeed, symbol: str) -> None:
        """Fetch and apply a REST snapshot (perpbot.feeds.snapshots); resync again if it does not hold."""
        assert self._session is not None
        update = await fetch_snapshot(self._session, feed, symbol, self.settings, self._rng)
        if update is None:
            return
        reason = apply_snapshot(self.store, feed, symbol, update)
        if reason is not None:
            self._resync(feed, symbol, reason)

    # -- gauges and status ----------------------------------------------------------------
    def _set_connected_gauge(self, feed: VenueFeed) -> None:
        if self.metrics is not None:
            up = all(c.connected for c in feed.connections) and bool(feed.connections)
            self.metrics.websocket_connected.labels(feed.adapter.venue).set(1 if up else 0)

    def _set_books_gauge(self, feed: VenueFeed) -> None:
        if self.metrics is not None:
            valid = sum(1 for b in self.store.of_venue(feed.adapter.venue) if b.valid)
            self.metrics.books_valid.labels(feed.adapter.venue).set(valid)

    async def _gauge_loop(self) -> None:
        while True:
            for venue, feed in self.venues.items():
                self._set_connected_gauge(feed)
                self._set_books_gauge(feed)
                latencies = [c.latency_s for c in feed.connections if c.latency_s is not None]
                if latencies and self.metrics is not None:
                    self.metrics.websocket_latency_current.labels(venue).set(max(latencies))
            await asyncio.sleep(GAUGE_INTERVAL_S)

    def status(self, now: float | None = None) -> dict[str, Any]:
        """Per venue: connected, since when, last message age, reconnects, resyncs, latency, books."""
        now = time.time() if now is None else now
        return build_status(self.venues, self.store, now)
