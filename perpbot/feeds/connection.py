"""One venue WebSocket connection: connect, (re)subscribe, keepalive, watchdog, capped jittered backoff.

Venue-agnostic: everything venue-specific comes from the FeedAdapter (ping text, interval)
and the ConnectionSpec (URL, subscribe frames). Frames are handed, synchronously and in
order, to `on_frame(connection, frame, recv_ts)`; the supervisor owns what they mean.

Lifecycle of `run()`:
    connect -> on_connect() -> send every stored subscription -> read frames until the
    socket closes, the watchdog fires (no frame for `watchdog_s`), or `set_url` / `stop`
    interrupts -> on_disconnect(reason) -> sleep a capped, fully jittered backoff -> again.
The backoff attempt counter resets only once a frame has been received on a connection,
so a server that accepts and immediately drops us still backs off.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection, connect

from perpbot.core.venue import ConnectionSpec
from perpbot.settings import FeedSettings

log = logging.getLogger("perpbot.feeds.connection")

FrameHandler = Callable[["Connection", "str | bytes", float], None]
ConnectHandler = Callable[["Connection"], None]
DisconnectHandler = Callable[["Connection", str], None]

LATENCY_ALPHA = 0.1  # EWMA weight of the newest latency sample
MAX_FRAME_BYTES = 16 * 1024 * 1024  # Hyperliquid/Binance snapshots can be large
OPEN_TIMEOUT_S = 10.0


def backoff_delay(attempt: int, initial_s: float, max_s: float, rng: random.Random) -> float:
    """Full jitter over a capped exponential window: uniform(initial, min(max, initial * 2**attempt)).

    The lower bound `initial_s` (not 0) keeps a refused connection from spinning.
    """
    cap = min(max_s, initial_s * (2 ** min(attempt, 32)))
    return rng.uniform(initial_s, cap) if cap > initial_s else initial_s


class Connection:
    """A supervised WebSocket connection feeding one venue connection's frames to a handler."""

    def __init__(
        self,
        venue: str,
        spec: ConnectionSpec,
        settings: FeedSettings,
        on_frame: FrameHandler,
        *,
        ping_frame: str | None = None,
        ping_interval_s: float | None = None,
        on_connect: ConnectHandler | None = None,
        on_disconnect: DisconnectHandler | None = None,
        metrics: Any = None,
        rng: random.Random | None = None,
        pong_is_liveness: bool = False,
    ) -> None:
        self.venue = venue
        self.spec = spec
        self.name = spec.name
        self.url = spec.url
        self.settings = settings
        self.on_frame = on_frame
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.ping_frame = ping_frame
        self.ping_interval_s = ping_interval_s or settings.ping_interval_s
        # A quiet private stream sends no data for minutes: its pongs (text or protocol) keep the
        # watchdog fed. A market-data feed's watchdog counts data frames only.
        self.pong_is_liveness = pong_is_liveness
        self.url_token_redacted = False  # set for a stream whose URL carries a key (Binance's listen key)
        self.subscriptions: list[str] = list(spec.subscribe_frames)
        self._rng = rng or random.Random()
        self._ws: ClientConnection | None = None
        self._stopping = False
        self._wake = asyncio.Event()
        self._attempt = 0
        self._ping_sent_mono: float | None = None
        self._close_reason = "closed"
        # --- status ------------------------------------------------------------------
        self.connected = False
        self.connected_since: float | None = None
        self.last_message_ts: float | None = None
        self._last_message_mono = 0.0
        self.reconnects = 0
        self.resyncs = 0
        self.messages = 0
        self.latency_s: float | None = None
        self.ping_rtt_s: float | None = None
        self.last_error: str | None = None
        self.next_retry_s: float | None = None
        self.connects = 0  # successful opens, for tests and status
        self.opened = asyncio.Event()  # set on every successful open, cleared on close
        # Metric children are resolved once: labels() is not free on the hot path.
        self._metrics = metrics
        self._m_messages = metrics.websocket_messages_total.labels(venue) if metrics else None

    def shown_url(self, url: str) -> str:
        """The URL as logs and status show it: a token in the path (Binance's listen key) is not."""
        if self.url_token_redacted and "/ws/" in url:
            return url.rsplit("/ws/", 1)[0] + "/ws/<listenKey>"
        return url

    # -- control ------------------------------------------------------------------------
    async def set_url(self, url: str) -> None:
        """Point the connection at another endpoint now (backup URL); reconnects at once."""
        self.url = url
        self._attempt = 0
        self._wake.set()
        ws = self._ws
        if ws is not None:
            self._close_reason = "url changed"
            await ws.close(code=1000, reason="url changed")

    async def subscribe(self, frame: str) -> None:
        """Store a subscription (sent now if connected, and on every reconnect)."""
        self.subscriptions.append(frame)
        await self.send(frame)

    async def send(self, frame: str) -> bool:
        """Send a text frame on the live socket; False when not connected (the next connect resyncs)."""
        ws = self._ws
        if ws is None or not self.connected:
            return False
        return await self._send_quietly(ws, frame)

    async def _send_quietly(self, ws: ClientConnection, frame: str) -> bool:
        try:
            await ws.send(frame)
            return True
        except websockets.ConnectionClosed:
            return False  # the read loop sees the close and reconnects

    async def reconnect(self, reason: str) -> None:
        """Close the live socket; the loop reconnects after its usual backoff (unlike set_url)."""
        ws = self._ws
        if ws is not None:
            self._close_reason = reason
            await ws.close(code=1000, reason=reason[:100])

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._ws is not None:
            await self._ws.close()

    # -- measurements fed back by the supervisor ---------------------------------------
    def note_pong(self, recv_mono: float | None = None) -> None:
        """A text pong arrived: record the round trip of the outstanding text ping."""
        if self._ping_sent_mono is None:
            return
        now = time.monotonic() if recv_mono is None else recv_mono
        self._set_rtt(now - self._ping_sent_mono)
        self._ping_sent_mono = None
        if self.pong_is_liveness:
            self._last_message_mono = now

    def note_latency(self, seconds: float) -> None:
        """EWMA of receive time minus exchange time (clock skew included, by definition)."""
        current = self.latency_s
        self.latency_s = seconds if current is None else current + LATENCY_ALPHA * (seconds - current)

    def _set_rtt(self, rtt: float) -> None:
        self.ping_rtt_s = rtt
        if self._metrics is not None:
            self._metrics.websocket_ping_rtt.labels(self.venue).set(rtt)

    def status(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        return {
            "name": self.name,
            "url": self.shown_url(self.url),
            "connected": self.connected,
            "connected_since": self.connected_since,
            "last_message_ts": self.last_message_ts,
            "last_message_age_s": None if self.last_message_ts is None else round(now - self.last_message_ts, 3),
            "reconnects": self.reconnects,
            "resyncs": self.resyncs,
            "messages": self.messages,
            "latency_ms": None if self.latency_s is None else round(self.latency_s * 1000, 3),
            "ping_rtt_ms": None if self.ping_rtt_s is None else round(self.ping_rtt_s * 1000, 3),
            "last_error": self.last_error,
            "next_retry_s": self.next_retry_s,
        }

    # -- the loop ------------------------------------------------------------------------
    async def run(self) -> None:
        """Connect and keep connected until `stop()`; never raises for network trouble."""
        first = True
        while not self._stopping:
            if not first:
                self.reconnects += 1
            first = False
            reason = await self._session()
            if self._stopping:
                break
            if self._metrics is not None:
                self._metrics.websocket_reconnects_total.labels(self.venue, reason.split(":")[0]).inc()
            delay = backoff_delay(self._attempt, self.settings.backoff_initial_s, self.settings.backoff_max_s, self._rng)
            self._attempt += 1
            self.next_retry_s = round(delay, 3)
            self._wake.clear()
            try:
                # set_url/stop wake us early; otherwise wait out the backoff.
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass
            self.next_retry_s = None

    async def _session(self) -> str:
        """One connect-read cycle. Returns the reason it ended (a metric label prefix)."""
        url = self.url
        self._close_reason = "closed"
        try:
            ws = await connect(
                url,
                open_timeout=OPEN_TIMEOUT_S,
                ping_interval=None,  # keepalive is ours: venue rules differ and we time the pong
                ping_timeout=None,
                close_timeout=2,
                max_size=MAX_FRAME_BYTES,
                max_queue=1024,
                proxy=None,  # never route venue traffic through an environment proxy
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # refused, DNS, TLS, HTTP 5xx on upgrade, timeout...
            reason = _describe(exc)
            self.last_error = reason
            log.warning("WebSocket connection failed: venue=%s connection=%s url=%s reason=%s",
                        self.venue, self.name, self.shown_url(url), reason)
            return "connect:" + reason
        if self._stopping:  # stop() came while connecting: it saw no socket to close
            await ws.close()
            return "stopped"
        self._ws = ws
        now = time.time()
        self.connected = True
        self.connected_since = now
        self.connects += 1
        self._last_message_mono = time.monotonic()
        self._ping_sent_mono = None
        self.last_error = None
        self.opened.set()
        log.info("WebSocket connected: venue=%s connection=%s url=%s", self.venue, self.name, self.shown_url(url))
        keepalive = asyncio.get_running_loop().create_task(self._keepalive(ws))
        reason = "closed"
        try:
            if self.on_connect is not None:
                self.on_connect(self)
            for frame in self.subscriptions:
                await ws.send(frame)
            reason = await self._read(ws)
        except websockets.ConnectionClosed as exc:
            reason = self._close_reason if self._close_reason != "closed" else f"closed: {_describe(exc)}"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a handler bug must not kill the feed silently
            reason = f"error: {_describe(exc)}"
            log.exception("WebSocket connection failed: venue=%s connection=%s reason=%s",
                          self.venue, self.name, reason)
        finally:
            keepalive.cancel()
            self.connected = False
            self.connected_since = None
            self._ws = None
            self.opened.clear()
            try:
                await asyncio.shield(ws.close())
            except Exception:  # already closed / transport gone
                pass
            if self.on_disconnect is not None:
                self.on_disconnect(self, reason)
        if not self._stopping:
            self.last_error = reason
            log.warning("WebSocket connection failed: venue=%s connection=%s url=%s reason=%s",
                        self.venue, self.name, self.shown_url(url), reason)
        return reason

    async def _read(self, ws: ClientConnection) -> str:
        handler = self.on_frame
        messages = self._m_messages
        clock = time.time
        mono = time.monotonic
        async for frame in ws:
            recv_ts = clock()
            self._last_message_mono = mono()
            self.last_message_ts = recv_ts
            self.messages += 1
            if messages is not None:
                messages.inc()
            if self._attempt:
                self._attempt = 0  # a frame arrived: the endpoint works, forget old failures
            handler(self, frame, recv_ts)
        return self._close_reason if self._close_reason != "closed" else "closed: by server"

    async def _keepalive(self, ws: ClientConnection) -> None:
        """Ping after `ping_interval_s` of silence; close when nothing arrived for `watchdog_s`."""
        watchdog = self.settings.watchdog_s
        interval = self.ping_interval_s
        tick = max(0.02, min(0.5, watchdog / 4, interval / 4))
        last_ping = 0.0
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            silence = now - self._last_message_mono
            if silence >= watchdog:
                log.warning("WebSocket watchdog: venue=%s connection=%s silent for %.1fs (limit %.1fs)",
                            self.venue, self.name, silence, watchdog)
                self._close_reason = "watchdog"
                await ws.close(code=1000, reason="watchdog")
                return
            if silence >= interval and now - last_ping >= interval:
                last_ping = now
                if self.ping_frame is not None:
                    self._ping_sent_mono = now
                    if not await self._send_quietly(ws, self.ping_frame):
                        return
                else:
                    try:
                        waiter = await ws.ping()
                    except websockets.ConnectionClosed:
                        return
                    asyncio.ensure_future(waiter).add_done_callback(self._protocol_pong)

    def _protocol_pong(self, fut: asyncio.Future[float]) -> None:
        if not fut.cancelled() and fut.exception() is None:
            self._set_rtt(fut.result())
            if self.pong_is_liveness:
                self._last_message_mono = time.monotonic()


def _describe(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused ({text})"
    return f"{exc.__class__.__name__}: {text}"[:300]
