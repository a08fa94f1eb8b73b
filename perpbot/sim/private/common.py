"""Venue-agnostic part of the simulator's private streams: SimExchange events -> venue frames -> sockets.

A venue module subclasses `PrivateStream`: `render(event)` turns one SimExchange event into the
venue's frames, each tagged with the subscription key a socket must hold to receive it and a
role ("fill" for frames that carry an execution, "state" for order states, "account" for
positions and balances). `PrivateStream.on_event` applies the private-stream faults once per
event, so every private socket of the venue sees the same fault:

* private_drop: every private socket of the venue is closed (params.abort: no close frame);
* private_stall: the event's frames are swallowed, the sockets stay open;
* fill_duplicate: the fill frames are pushed twice;
* fill_out_of_order: the order's state frames go first; the fill frames are held until the
  order's next event (an IOC's cancelled remainder) has been pushed, or the end of the current
  matching step;
* stream_lag: the event's frames are delayed by params.ms (default 500), so REST is ahead.

Sockets are `ws_common.Session`s (own writer task, queue, close); OKX, Bybit and Binance private
sockets are served by `PrivateFeed`, Hyperliquid's share the public /ws feed's sessions.
"""

from __future__ import annotations

import abc

import asyncio
import base64
import hashlib
import hmac
import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from aiohttp import web

from perpbot.sim.trading.accounts import SimOrder, dec_str
from perpbot.sim.trading.exchange import SimEvent, SimExchange
from perpbot.sim.ws_common import Session, SimStats, VenueFeed, dumps

log = logging.getLogger("perpbot.sim")

# The simulator's API credentials (perpbot.sim.trading.clients gives them to ccxt).
SIM_API_KEY = "sim-key"
SIM_SECRET = "sim-secret"
SIM_PASSPHRASE = "sim-pass"


def hmac_sha256(secret: str, payload: str) -> bytes:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()


def okx_sign(secret: str, timestamp: str) -> str:
    """OKX WS login sign: base64(HMAC-SHA256(secret, timestamp + 'GET' + '/users/self/verify'))."""
    return base64.b64encode(hmac_sha256(secret, f"{timestamp}GET/users/self/verify")).decode()


def bybit_sign(secret: str, expires: int | str) -> str:
    """Bybit WS auth signature: hex(HMAC-SHA256(secret, 'GET/realtime' + expires))."""
    return hmac_sha256(secret, f"GET/realtime{expires}").hex()


def num(value: Decimal | None) -> str:
    return dec_str(value) if value is not None else ""


@dataclass(frozen=True, slots=True)
class Frame:
    key: Any  # the subscription key a session must hold (in session.subs) to receive this frame
    text: str
    role: str = "state"  # fill / state / account


class PrivateStream(abc.ABC):
    """One venue's private pushes: subscribes to the SimExchange and fans its events out as frames."""

    venue = ""

    def __init__(self, sim: SimExchange) -> None:
        self.sim = sim
        self.faults = sim.faults
        self._held: dict[str, tuple[list[Frame], float]] = {}  # order id -> fill frames held back
        self.remove_listener = sim.add_listener(self.on_event)

    # -- to implement ------------------------------------------------------------------
    @abc.abstractmethod
    def sessions(self) -> list[Session]:
        """Every open socket that may receive this venue's private frames."""

    @abc.abstractmethod
    def render(self, event: SimEvent) -> list[Frame]:
        """The venue's frames for one engine event (none when the venue pushes nothing for it)."""

    def state_frames(self, order: SimOrder) -> list[Frame]:
        """A pure order-state frame, for venues whose fill frame is also the state frame (OKX)."""
        return []

    # -- fan-out -------------------------------------------------------------------------
    def wants(self, session: Session, key: Any) -> bool:
        return key in session.subs

    def connected(self) -> list[Session]:
        return [s for s in self.sessions() if not s.closing and s.state.get("private")]

    def on_event(self, event: SimEvent) -> None:
        targets = self.connected()
        if not targets:
            return  # nobody listens: no frame is rendered and no fault is consumed
        frames = self.render(event)
        if not frames:
            return  # an event this venue does not push (a reject, ...) consumes no fault either
        take, venue, symbol = self.faults.take, self.venue, event.symbol
        fault = take(venue, "private_drop", symbol)
        if fault is not None:
            for session in targets:
                session.close(abort=bool(fault.params.get("abort")))
            return
        if take(venue, "private_stall", symbol) is not None:
            return
        delay = 0.0
        fault = take(venue, "stream_lag", symbol)
        if fault is not None:
            delay = float(fault.params.get("ms", 500)) / 1000
        order_id = event.order.order_id if event.order is not None else None
        held = self._held.pop(order_id, None) if order_id is not None else None
        if event.kind == "fill" and order_id is not None and event.order is not None:
            frames = self._fill_faults(frames, event.order, delay)
        self.emit(targets, frames, delay)
        if held is not None:
            self.emit(targets, held[0], held[1])

    def _fill_faults(self, frames: list[Frame], order: SimOrder, delay: float) -> list[Frame]:
        take, venue = self.faults.take, self.venue
        fills = [f for f in frames if f.role == "fill"]
        if take(venue, "fill_out_of_order", order.symbol) is not None:
            rest = [f for f in frames if f.role != "fill"]
            states = [f for f in rest if f.role == "state"] or self.state_frames(order)
            others = [f for f in rest if f.role != "state"]
            self._held[order.order_id] = (fills, delay)
            # Released after the order's next event, or once the current matching step is over.
            asyncio.get_running_loop().call_soon(self._release, order.order_id)
            return states + others
        if take(venue, "fill_duplicate", order.symbol) is not None:
            return frames + fills
        return frames

    def _release(self, order_id: str) -> None:
        held = self._held.pop(order_id, None)
        if held is not None:
            self.emit(self.connected(), held[0], held[1])

    def emit(self, targets: list[Session], frames: list[Frame], delay: float = 0.0) -> None:
        for session in targets:
            first = True
            for frame in frames:
                if self.wants(session, frame.key):
                    # Only the first frame waits: the writer is sequential, later ones queue behind it.
                    session.enqueue(frame.text, delay if first else 0.0)
                    first = False

    def close_all(self) -> None:
        for session in list(self.sessions()):
            if session.state.get("private"):
                session.close()


class PrivateFeed(VenueFeed):
    """A private WebSocket endpoint (its own sessions); the venue module answers its messages."""

    def __init__(self, venue: str, stats: SimStats, handler: Any, idle_timeout_s: float | None = None) -> None:
        # VenueFeed's market/faults/clock/sim are for market data; a private feed needs none of them.
        # Its stats key is "<venue>-private", so /admin/stats counts private frames apart.
        self.venue = f"{venue}-private"
        self.stats = stats
        self.sessions = []
        self.handler = handler
        self.idle_timeout_s = idle_timeout_s
        self._counter = 0

    def new_conn_id(self) -> str:
        self._counter += 1
        return f"{self.venue[:2]}p{self._counter:06x}"

    def check_path(self, request: web.Request) -> web.StreamResponse | None:
        return self.handler.check_path(request)

    def on_open(self, session: Session) -> None:
        self.handler.on_open(session)

    def on_text(self, session: Session, text: str) -> None:
        self.handler.on_text(session, text)

    def on_tick(self) -> None:
        return None

    def routes(self, app: web.Application) -> None:
        return None

    def send(self, session: Session, obj: Any) -> None:
        """A control reply (login/subscribe ack, pong): not subject to the stream faults."""
        session.enqueue(obj if isinstance(obj, str) else dumps(obj))


def shutdown_hook(stream: PrivateStream) -> Any:
    async def _close(_app: web.Application) -> None:
        stream.close_all()
    return _close
