"""Venue-agnostic plumbing of the simulator's public WebSockets: sessions, fault hooks, keepalive.

Each venue module (ws_okx, ws_binance, ws_bybit, ws_hyperliquid) subclasses `VenueFeed`: it
turns client messages into subscriptions and acks, and market ticks into the venue's frames.
Frames are rendered once per stream per tick and fanned out; market-data faults are applied
per connection in `push`, so a fault hits exactly one client's stream the way a lost,
corrupted or late packet would. Every connection has its own writer task, so one slow or
delayed client never holds the others back.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any, cast

import orjson
from aiohttp import WSMsgType, web

from perpbot.sim.faults import FaultBoard
from perpbot.sim.market import Market

log = logging.getLogger("perpbot.sim")

MAX_QUEUED_FRAMES = 20_000  # a client this far behind is disconnected, as venues do
_CLOSE = object()


def dumps(obj: Any) -> str:
    """Compact JSON, key order as built (the venues send compact JSON)."""
    return orjson.dumps(obj).decode()


class Grid:
    """Exact rendering of integer steps (ticks or lots) as decimal strings."""

    __slots__ = ("mantissa", "decimals")

    def __init__(self, step: Decimal) -> None:
        sign, digits, raw_exponent = step.as_tuple()
        exponent = cast(int, raw_exponent)  # a grid step is finite
        mantissa = int("".join(map(str, digits)))
        if exponent >= 0:
            self.mantissa, self.decimals = mantissa * 10**exponent, 0
        else:
            self.mantissa, self.decimals = mantissa, -exponent

    def fixed(self, steps: int) -> str:
        """With the step's own decimals: 0.10 grid -> '63982.70' (Binance, Bybit)."""
        units = steps * self.mantissa
        if not self.decimals:
            return str(units)
        whole, frac = divmod(units, 10**self.decimals)
        return f"{whole}.{frac:0{self.decimals}d}"

    def trimmed(self, steps: int) -> str:
        """Trailing zeros removed: '30244', '0.08' (OKX)."""
        text = self.fixed(steps)
        return text.rstrip("0").rstrip(".") if "." in text else text

    def one_decimal(self, steps: int) -> str:
        """Trimmed but always with a fraction: '64094.0', '12.29409' (Hyperliquid)."""
        text = self.trimmed(steps)
        return text if "." in text else text + ".0"


class SimStats:
    def __init__(self) -> None:
        # Benchmarks only (bench/order_entry.py): called as each frame is handed to its socket, with
        # (venue, text, time.perf_counter()); None in the product.
        self.frame_hook: Callable[[str, str, float], None] | None = None
        self.frames_sent: Counter[str] = Counter()
        self.connections: Counter[str] = Counter()
        self.faults_applied: Counter[tuple[str, str]] = Counter()

    def as_dict(self, faults: FaultBoard) -> dict[str, Any]:
        fired: dict[str, dict[str, int]] = {}
        for (venue, kind), count in sorted(faults.fired.items()):
            fired.setdefault(venue, {})[kind] = count
        return {
            "frames_sent": dict(sorted(self.frames_sent.items())),
            "connections": dict(sorted(self.connections.items())),
            "faults_fired": fired,
        }


class Session:
    """One client WebSocket: its subscriptions, outgoing queue and per-connection fault state."""

    def __init__(self, feed: "VenueFeed", ws: web.WebSocketResponse, request: web.Request, conn_id: str) -> None:
        self.feed = feed
        self.ws = ws
        self.request = request
        self.conn_id = conn_id
        self.subs: set[Any] = set()
        self.state: dict[Any, Any] = {}  # venue module's per-connection stream state
        loop = asyncio.get_running_loop()
        self.last_recv = self.last_send = loop.time()
        self.stalled_until = 0.0
        self.held: str | None = None  # frame held back by a reorder fault
        self.queue: asyncio.Queue = asyncio.Queue()
        self.closing = False
        self.writer = loop.create_task(self._write(), name=f"sim-{feed.venue}-{conn_id}")

    def enqueue(self, text: str, delay_s: float = 0.0) -> None:
        if self.closing:
            return
        if self.queue.qsize() >= MAX_QUEUED_FRAMES:
            log.warning("simulator %s: client %s too slow, disconnecting", self.feed.venue, self.conn_id)
            self.close()
            return
        self.queue.put_nowait((delay_s, text))

    def close(self, abort: bool = False) -> None:
        if self.closing:
            return
        self.closing = True
        if abort and self.request.transport is not None:
            # No close frame: the client sees the TCP connection vanish.
            self.request.transport.abort()
        self.queue.put_nowait((0.0, _CLOSE))

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                delay_s, text = await self.queue.get()
                if text is _CLOSE:
                    await self.ws.close(code=1001, message=b"simulated drop")
                    return
                if delay_s:
                    await asyncio.sleep(delay_s)
                if self.feed.stats.frame_hook is not None:  # as the frame is handed to the socket
                    self.feed.stats.frame_hook(self.feed.venue, text, time.perf_counter())
                await self.ws.send_str(text)
                self.last_send = loop.time()
                self.feed.stats.frames_sent[self.feed.venue] += 1
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            return


class VenueFeed:
    """Base of the per-venue public WebSocket: subclass hooks are `on_text` and `on_tick`."""

    venue = ""
    #: close a connection with no traffic either way for this long (None: never)
    idle_timeout_s: float | None = None
    #: aiohttp protocol ping interval (Binance pings its clients)
    heartbeat_s: float | None = None

    def __init__(
        self, market: Market, faults: FaultBoard, clock: Callable[[], float], sim: Any, stats: SimStats
    ) -> None:
        self.market = market
        self.faults = faults
        self.clock = clock
        self.sim = sim
        self.stats = stats
        self.sessions: list[Session] = []
        self._conn_rng = random.Random(f"{market.seed}:{self.venue}:connections")

    # -- helpers for subclasses --------------------------------------------------------
    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def new_conn_id(self) -> str:
        return "%08x" % self._conn_rng.getrandbits(32)

    def reply(self, session: Session, obj: Any) -> None:
        """Acks, errors, pongs: subject only to a stall (a stalled venue answers nothing)."""
        if self._stalled(session, None):
            return
        session.enqueue(obj if isinstance(obj, str) else dumps(obj))

    def push(
        self,
        session: Session,
        text: str,
        symbol: str | None,
        *,
        book_delta: bool = False,
        bad_checksum: Callable[[], str] | None = None,
    ) -> None:
        """Send one market-data frame through this connection's fault hooks."""
        venue, take = self.venue, self.faults.take
        if session.closing:
            return
        fault = take(venue, "drop", symbol)
        if fault is not None:
            session.close(abort=bool(fault.params.get("abort")))
            return
        if self._stalled(session, symbol):
            return
        if book_delta and take(venue, "gap", symbol) is not None:
            return  # the frame is lost: the next one breaks the sequence
        if bad_checksum is not None and take(venue, "bad_checksum", symbol) is not None:
            text = bad_checksum()
        if take(venue, "malformed", symbol) is not None:
            text = text[: max(1, len(text) // 2)]  # cut mid-frame: not JSON any more
        delay_s = 0.0
        fault = take(venue, "delay", symbol)
        if fault is not None:
            delay_s = float(fault.params.get("ms", 500)) / 1000
        if take(venue, "reorder", symbol) is not None and session.held is None:
            session.held = text
            return
        session.enqueue(text, delay_s)
        if session.held is not None:
            held, session.held = session.held, None
            session.enqueue(held)

    def _stalled(self, session: Session, symbol: str | None) -> bool:
        now = asyncio.get_running_loop().time()
        if session.stalled_until > now:
            return True
        fault = self.faults.take(self.venue, "stall", symbol)
        if fault is None:
            return False
        seconds = fault.duration_s if fault.duration_s is not None else float(fault.params.get("seconds", 5.0))
        if fault.expires_at is not None:
            seconds = max(0.0, fault.expires_at - self.faults._clock())
        session.stalled_until = now + seconds
        return True

    # -- server side -------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        """aiohttp handler of one WebSocket connection."""
        refusal = self.check_path(request)
        if refusal is not None:
            return refusal
        ws = web.WebSocketResponse(heartbeat=self.heartbeat_s, autoping=True, max_msg_size=1 << 20)
        await ws.prepare(request)
        session = Session(self, ws, request, self.new_conn_id())
        self.sessions.append(session)
        self.stats.connections[self.venue] += 1
        loop = asyncio.get_running_loop()
        try:
            self.on_open(session)
            async for msg in ws:
                session.last_recv = loop.time()
                if msg.type == WSMsgType.TEXT:
                    self.on_text(session, msg.data)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            if session in self.sessions:
                self.sessions.remove(session)
            session.closing = True
            session.writer.cancel()
        return ws

    def check_path(self, request: web.Request) -> web.StreamResponse | None:
        """A response refusing the handshake, or None to accept it."""
        return None

    def on_open(self, session: Session) -> None:
        """Called after the handshake (Binance URL streams subscribe here)."""

    def on_text(self, session: Session, text: str) -> None:
        raise RuntimeError(f"{type(self).__name__} must implement on_text")

    def on_tick(self) -> None:
        raise RuntimeError(f"{type(self).__name__} must implement on_tick")

    def routes(self, app: web.Application) -> None:
        raise RuntimeError(f"{type(self).__name__} must implement routes")

    async def watchdog(self) -> None:
        """Close connections idle (no message either way) longer than the venue allows."""
        timeout = self.idle_timeout_s
        if not timeout:
            return
        loop = asyncio.get_running_loop()
        period = min(timeout / 4, 1.0)
        while True:
            await asyncio.sleep(period)
            now = loop.time()
            for session in list(self.sessions):
                if now - max(session.last_recv, session.last_send) > timeout and not session.closing:
                    log.info("simulator %s: closing idle connection %s", self.venue, session.conn_id)
                    session.close()

    def subscribers(self, key: Any) -> list[Session]:
        return [s for s in self.sessions if key in s.subs and not s.closing]
