"""One venue's private WebSocket stream: connect, log in, subscribe, parse, hand events on.

Venue-agnostic: the venue's `PrivateLink` (perpbot/venues/<venue>/private_link.py) says where to
connect, what to send and what frames mean; the shared `Connection` gives keepalive, capped
jittered backoff and the silence watchdog. Lifecycle of one connection:

    url() (Binance: listen key) -> connect -> login frames -> (login_ok) -> subscribe frames ->
    (subscribed) live -> events to the sink ... -> closed -> not live -> backoff -> again

The stream is *live* only between the venue's acknowledgement and the close: while it is not,
the risk gate refuses entries on the venue (exits and flattening go on over REST) and orders are
confirmed over REST. A login the venue refuses is logged with its reason and retried with
backoff. A listen key the venue reports expired (or unknown on keepalive) is replaced and the
stream reconnected at once: a key that silently stops delivering while pings still succeed is
the failure users of Binance's user-data stream report most.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from perpbot.core.events import ParseError
from perpbot.core.ports import PrivateLink
from perpbot.core.private_events import PrivateEvent, StreamControl
from perpbot.core.venue import ConnectionSpec
from perpbot.feeds.connection import Connection
from perpbot.settings import FeedSettings

log = logging.getLogger("perpbot.feeds.private")

Sink = Callable[[list[PrivateEvent]], None]
LiveHook = Callable[[str, bool], None]


class PrivateStream:
    """A supervised private connection of one venue, feeding parsed events to `sink`."""

    def __init__(self, link: PrivateLink, settings: FeedSettings, sink: Sink, on_live: LiveHook,
                 metrics: Any = None) -> None:
        self.link = link
        self.venue = link.venue
        self.settings = settings
        self.sink = sink
        self.on_live = on_live
        self.metrics = metrics
        self.live = False
        self.logged_in = False
        self.login_failures = 0
        self.parse_errors = 0
        self.key_renewals = 0
        self.last_error: str | None = None
        self.connection: Connection | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False

    # -- lifecycle -----------------------------------------------------------------------
    async def run(self) -> None:
        """Keep the stream up until `stop()`; never raises for venue trouble."""
        url = await self._first_url()
        if url is None:
            return
        spec = ConnectionSpec(name=f"{self.venue}-private", url=url, subscribe_frames=[])
        # A quiet account sends nothing for minutes: pings (the venue's own rule, or sooner when the
        # watchdog is tighter) keep the connection and its watchdog fed by the pongs.
        ping_s = min(self.link.ping_interval_s, self.settings.ping_interval_s, self.settings.watchdog_s / 2)
        conn = Connection(self.venue, spec, self.settings, self._on_frame, ping_frame=self.link.ping_frame,
                          ping_interval_s=ping_s, on_connect=self._on_connect,
                          on_disconnect=self._on_disconnect, pong_is_liveness=True)
        conn.url_token_redacted = self.link.keepalive_interval_s is not None  # a listen key in the URL
        self.connection = conn
        keepalive = None
        if self.link.keepalive_interval_s:
            keepalive = asyncio.get_running_loop().create_task(self._keepalive(self.link.keepalive_interval_s))
        try:
            await conn.run()
        finally:
            if keepalive is not None:
                keepalive.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keepalive
            for task in list(self._tasks):
                task.cancel()
            self._set_live(False)

    async def _first_url(self) -> str | None:
        """The first URL (a listen key may need creating: retried with backoff until it works)."""
        delay = self.settings.backoff_initial_s
        while not self._stopping:
            try:
                return await self.link.url()
            except Exception as exc:  # the venue's REST is down or refuses the key
                self.last_error = f"no stream URL: {exc}"
                log.warning("private stream %s: %s; retrying in %.1fs", self.venue, self.last_error, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.settings.backoff_max_s)
        return None

    def restart(self, reason: str) -> None:
        """Not live now; the connection is closed and comes back after the usual backoff."""
        self._set_live(False)
        if self.connection is not None:
            self._spawn(self.connection.reconnect(reason))

    async def stop(self) -> None:
        self._stopping = True
        if self.connection is not None:
            await self.connection.stop()
        with contextlib.suppress(Exception):
            await self.link.close()

    # -- connection callbacks ------------------------------------------------------------
    def _on_connect(self, conn: Connection) -> None:
        self.logged_in = False
        frames = self.link.login_frames()
        if not frames:
            self.logged_in = True
            frames = self.link.subscribe_frames()
            if not self.link.needs_ack:
                self._set_live(True)
        self._spawn(self._send_all(conn, frames))

    def _on_disconnect(self, conn: Connection, reason: str) -> None:
        self._set_live(False)
        self.logged_in = False
        if self.metrics is not None:
            self.metrics.private_stream_reconnects_total.labels(self.venue, reason.split(":")[0]).inc()
        if self.link.keepalive_interval_s and not self._stopping:
            # A listen-key stream closed: the key may be what failed; make sure it is good first.
            self._spawn(self._renew_url(conn, forget=False))

    def _on_frame(self, conn: Connection, frame: str | bytes, recv_ts: float) -> None:
        try:
            events = self.link.parse(frame, recv_ts)
        except ParseError as exc:
            self.parse_errors += 1
            log.warning("private stream %s: unreadable frame (%s)", self.venue, exc.reason)
            return
        data: list[PrivateEvent] = []
        for event in events:
            if isinstance(event, StreamControl):
                self._on_control(conn, event)
            else:
                data.append(event)
        if data:
            self.sink(data)

    def _on_control(self, conn: Connection, event: StreamControl) -> None:
        kind = event.kind
        if kind == "login_ok":
            self.logged_in = True
            self._spawn(self._send_all(conn, self.link.subscribe_frames()))
            if not self.link.needs_ack:
                self._set_live(True)
        elif kind == "subscribed":
            if self.logged_in:
                self._set_live(True)
        elif kind == "pong":
            conn.note_pong()
        elif kind == "key_expired":
            log.warning("private stream %s: the venue says the key expired; renewing and reconnecting", self.venue)
            self._set_live(False)
            self._spawn(self._renew_url(conn, forget=True))
        elif kind in ("login_failed", "subscribe_failed", "error"):
            self.last_error = f"{kind}: {event.detail}"
            if kind == "login_failed":
                self.login_failures += 1
            log.warning("private stream %s: %s", self.venue, self.last_error)
            if kind != "error":
                self._set_live(False)
                self._spawn(conn.reconnect(kind))  # again after the usual backoff, with a fresh login

    # -- helpers -------------------------------------------------------------------------
    async def _send_all(self, conn: Connection, frames: list[str]) -> None:
        for frame in frames:
            await conn.send(frame)

    async def _keepalive(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                alive = await self.link.keepalive()
            except Exception as exc:  # REST trouble: the next round tries again; the key lives 60 min
                log.warning("private stream %s: keepalive failed: %s", self.venue, exc)
                continue
            if not alive and self.connection is not None:
                log.warning("private stream %s: the venue no longer knows the key; renewing", self.venue)
                await self._renew_url(self.connection, forget=True)

    async def _renew_url(self, conn: Connection, forget: bool) -> None:
        if forget:
            self.link.key_expired()
            self.key_renewals += 1
        try:
            url = await self.link.url()
        except Exception as exc:
            self.last_error = f"key renewal failed: {exc}"
            log.warning("private stream %s: %s", self.venue, self.last_error)
            return
        if url != conn.url or forget:
            await conn.set_url(url)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _set_live(self, live: bool) -> None:
        if live == self.live:
            return
        self.live = live
        log.info("private stream %s %s", self.venue, "live" if live else "down")
        if self.metrics is not None:
            self.metrics.private_stream_connected.labels(self.venue).set(1 if live else 0)
        self.on_live(self.venue, live)

    # -- status --------------------------------------------------------------------------
    def status(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        conn = self.connection
        last = conn.last_message_ts if conn is not None else None
        age = None if last is None else round(now - last, 3)
        if self.metrics is not None and age is not None:
            self.metrics.private_stream_last_message_age.labels(self.venue).set(age)
        return {
            "live": self.live,
            "connected": bool(conn and conn.connected),
            "logged_in": self.logged_in,
            "connected_since": conn.connected_since if conn is not None else None,
            "last_message_age_s": age,
            "reconnects": conn.reconnects if conn is not None else 0,
            "messages": conn.messages if conn is not None else 0,
            "login_failures": self.login_failures,
            "key_renewals": self.key_renewals,
            "parse_errors": self.parse_errors,
            "last_error": self.last_error,
        }


class PrivateStreams:
    """Every venue's private stream, run together; the sink and live hook are the engine's."""

    def __init__(self, streams: list[PrivateStream]) -> None:
        self.streams = {s.venue: s for s in streams}

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for stream in self.streams.values():
                tg.create_task(stream.run(), name=f"private-{stream.venue}")

    async def stop(self) -> None:
        for stream in self.streams.values():
            await stream.stop()

    def status(self) -> dict[str, dict[str, Any]]:
        now = time.time()
        return {venue: stream.status(now) for venue, stream in self.streams.items()}

    def reconnect(self, venue: str) -> None:
        """Drop one venue's private connection (it looks open but confirms nothing); it reconnects
        after the usual backoff and is live again once the venue acknowledges the subscription."""
        stream = self.streams.get(venue)
        if stream is not None:
            stream.restart("not confirming")

    def down(self) -> frozenset[str]:
        return frozenset(v for v, s in self.streams.items() if not s.live)
