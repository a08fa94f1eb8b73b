"""A venue's order-entry WebSocket: one supervised connection, logged in, that places and cancels
orders and matches each answer to its request (perpbot.core.ports.OrderChannel over an OrderLink).

Rules that keep money safe:
* `place` raises `ChannelDown` *before* anything is written when the socket is not ready (not
  connected, not logged in, stopping): the caller may then place the same order over REST.
* Once the frame may have reached the socket, the outcome is the venue's: a dropped connection, a
  write that failed halfway or a missing answer is `UnknownOutcome`, resolved by a query of the client
  order id, never re-sent (neither here nor over REST).
* A venue error in the answer is raised as the perpbot.core.errors value the link made of it
  (rejected, insufficient funds, rate limited with Retry-After, temporary).

Request ids are the socket's own counter (per connection life, as text); a reply whose id is not
pending (late, after a timeout) is counted and dropped. The connection itself (keepalive, watchdog,
capped jittered backoff) is perpbot.feeds.connection's.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from decimal import Decimal
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from perpbot.core import errors
from perpbot.core.approved import ApprovedOrder
from perpbot.core.events import ParseError
from perpbot.core.order_entry import LoginAnswer, OrderAnswer, Pong
from perpbot.core.orders import OrderResult
from perpbot.core.ports import OrderLink
from perpbot.core.venue import ConnectionSpec
from perpbot.feeds.connection import Connection
from perpbot.settings import FeedSettings

log = logging.getLogger("perpbot.feeds.order_socket")
ZERO = Decimal(0)

# The rate budget (perpbot.execution.rate_budget), when one is wired: charge(venue, endpoint) as a
# request leaves ("order" / "cancel"), observe(venue, status, headers) as its answer comes back.
Charge = Callable[[str, str], None]
Observe = Callable[[str, int, Mapping[str, str]], None]


def _no_charge(venue: str, endpoint: str) -> None:
    return None


def _no_observe(venue: str, status: int, headers: Mapping[str, str]) -> None:
    return None


class OrderSocket:
    """Order entry over one venue's WebSocket; the composition root runs `run()` beside the feeds."""

    def __init__(self, link: OrderLink, settings: FeedSettings, metrics: Any = None) -> None:
        self.link = link
        self.venue = link.venue
        self.settings = settings
        self.metrics = metrics
        self.logged_in = False
        self.connection: Connection | None = None
        self.charge: Charge = _no_charge
        self.observe: Observe = _no_observe
        self._pending: dict[str, tuple[asyncio.Future[OrderAnswer], str]] = {}
        self._ids = itertools.count(1)
        self._stopping = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self.sent = 0
        self.answers = 0
        self.late_answers = 0
        self.unknown = 0
        self.fallbacks = 0  # counted by the router when this socket was down
        self.login_failures = 0
        self.parse_errors = 0
        self.last_error: str | None = None

    # -- lifecycle -------------------------------------------------------------------------
    async def run(self) -> None:
        """Keep the socket up until `stop()`; never raises for venue trouble."""
        spec = ConnectionSpec(name=f"{self.venue}-orders", url=self.link.url(), subscribe_frames=[])
        ping_s = min(self.link.ping_interval_s, self.settings.ping_interval_s, self.settings.watchdog_s / 2)
        conn = Connection(self.venue, spec, self.settings, self._on_frame, ping_frame=self.link.ping_frame,
                          ping_interval_s=ping_s, on_connect=self._on_connect,
                          on_disconnect=self._on_disconnect, pong_is_liveness=True)
        self.connection = conn
        try:
            await conn.run()
        finally:
            self._lost("order socket stopped")
            for task in list(self._tasks):
                task.cancel()

    async def stop(self) -> None:
        self._stopping = True
        if self.connection is not None:
            await self.connection.stop()

    def ready(self) -> bool:
        conn = self.connection
        return not self._stopping and self.logged_in and conn is not None and conn.connected

    async def drop(self, reason: str) -> None:
        """Close the live socket (it comes back after the usual backoff): tests and operators."""
        if self.connection is not None:
            await self.connection.reconnect(reason)

    # -- the channel -----------------------------------------------------------------------
    async def place(self, order: ApprovedOrder) -> OrderResult:
        request = order.request
        answer = await self._request("order", lambda rid: self.link.place_frame(rid, request))
        self._learn(answer)
        if answer.error is not None:
            raise answer.error
        return OrderResult(
            venue=request.venue, symbol=request.symbol, client_order_id=request.client_order_id,
            venue_order_id=answer.venue_order_id, status=answer.status, side=request.side, qty=request.qty,
            filled_qty=answer.filled_qty if answer.filled_qty is not None else ZERO,
            avg_price=answer.avg_price, fee=answer.fee if answer.fee is not None else ZERO,
            details_complete=answer.complete,
        )

    async def cancel(self, symbol: str, client_order_id: str) -> bool:
        """True when the venue took the cancel; False when it says the order is not open (filled,
        cancelled or unknown). ChannelDown / UnknownOutcome as for placements."""
        answer = await self._request("cancel", lambda rid: self.link.cancel_frame(rid, symbol, client_order_id))
        self._learn(answer)
        if answer.error is None:
            return True
        if isinstance(answer.error, (errors.OrderRejected, errors.OrderNotFound)):
            return False
        raise answer.error

    async def _request(self, endpoint: str, build: Callable[[str], str]) -> OrderAnswer:
        conn = self.connection
        if not self.ready() or conn is None:
            raise errors.ChannelDown(self.venue, "order socket not ready")
        request_id = str(next(self._ids))
        frame = build(request_id)  # may raise (a bad order): nothing sent
        future: asyncio.Future[OrderAnswer] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = (future, endpoint)
        self.charge(self.venue, endpoint)
        try:
            self.sent += 1
            if not await conn.send(frame):
                # The socket closed under the write: it may or may not have left.
                self.unknown += 1
                raise errors.UnknownOutcome(self.venue, "order socket closed while sending")
            return await future
        finally:
            self._pending.pop(request_id, None)

    def _learn(self, answer: OrderAnswer) -> None:
        """Tell the rate budget what the venue said: its usage counters, a 429/418 and its Retry-After."""
        headers = dict(answer.usage)
        latest = getattr(self.link, "usage_headers", None)  # Bybit, Binance: the last answer's counters
        if latest is not None:
            headers = {**latest(), **headers}
        status = answer.status_code
        if isinstance(answer.error, errors.RateLimited):
            status = status if status in (418, 429) else 429
            if answer.error.retry_after_s is not None:
                headers.setdefault("Retry-After", str(int(answer.error.retry_after_s)))
        if headers or status != 200:
            self.observe(self.venue, status, headers)

    # -- connection callbacks --------------------------------------------------------------
    def _on_connect(self, conn: Connection) -> None:
        self.logged_in = False
        frames = self.link.login_frames()
        if not frames:
            self._set_ready(True)
            return
        self._spawn(self._send_all(conn, frames))

    def _on_disconnect(self, conn: Connection, reason: str) -> None:
        self._set_ready(False)
        self._lost(f"order socket dropped before the answer ({reason})")

    def _lost(self, reason: str) -> None:
        """Every request still waiting has an unknown outcome now."""
        for request_id, (future, _endpoint) in list(self._pending.items()):
            if not future.done():
                self.unknown += 1
                future.set_exception(errors.UnknownOutcome(self.venue, reason))
            self._pending.pop(request_id, None)

    def _on_frame(self, conn: Connection, frame: str | bytes, recv_ts: float) -> None:
        try:
            message = self.link.parse(frame)
        except ParseError as exc:
            self.parse_errors += 1
            log.warning("order socket %s: unreadable frame (%s)", self.venue, exc)
            return
        if message is None:
            return
        if isinstance(message, Pong):
            conn.note_pong()
            return
        if isinstance(message, LoginAnswer):
            if message.ok:
                self._set_ready(True)
            else:
                self.login_failures += 1
                self.last_error = f"login failed: {message.reason}"
                log.warning("order socket %s: %s", self.venue, self.last_error)
                self._spawn(conn.reconnect("login failed"))
            return
        pending = self._pending.get(message.request_id)
        if pending is None:
            self.late_answers += 1
            return
        self.answers += 1
        if not pending[0].done():
            pending[0].set_result(message)

    # -- helpers ---------------------------------------------------------------------------
    def _set_ready(self, ready: bool) -> None:
        if ready == self.logged_in:
            return
        self.logged_in = ready
        log.info("order socket %s %s", self.venue, "ready" if ready else "down")
        if self.metrics is not None:
            self.metrics.order_socket_up.labels(self.venue).set(1 if ready else 0)

    async def _send_all(self, conn: Connection, frames: list[str]) -> None:
        for frame in frames:
            await conn.send(frame)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def status(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        conn = self.connection
        return {
            "ready": self.ready(), "connected": bool(conn and conn.connected),
            "reconnects": conn.reconnects if conn is not None else 0, "sent": self.sent, "answers": self.answers,
            "unknown": self.unknown, "late_answers": self.late_answers, "fallbacks": self.fallbacks,
            "login_failures": self.login_failures, "parse_errors": self.parse_errors, "last_error": self.last_error,
        }




class OrderSockets:
    """Every venue's order socket, run together beside the feeds and private streams."""

    def __init__(self, sockets: list[OrderSocket]) -> None:
        self.sockets = {s.venue: s for s in sockets}

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for socket in self.sockets.values():
                tg.create_task(socket.run(), name=f"orders-{socket.venue}")

    async def stop(self) -> None:
        for socket in self.sockets.values():
            await socket.stop()

    def status(self) -> dict[str, dict[str, Any]]:
        now = time.time()
        return {venue: socket.status(now) for venue, socket in self.sockets.items()}
