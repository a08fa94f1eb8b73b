"""Fault gate shared by the simulated venues' REST handlers: maintenance, rate limits, 5xx, timeouts, lost replies.

A rate_limit (429) or ip_ban (418) fault answers with Retry-After; until that time has passed every further
order is answered the same way, as the live venues do, and counted in the fault board as
`retry_after_ignored` (a client that respects Retry-After never shows one; the WebSocket order handlers
share the same stop, perpbot.sim.private.order_faults).
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any, Callable, Protocol

import orjson
from aiohttp import web

from perpbot.sim.faults import RETRY_AFTER_IGNORED
from perpbot.sim.trading.exchange import SimExchange
from perpbot.sim.trading.matching import SimReject

# Faults that hit every private request unless their params say {"on": "order"} (orders only) or
# {"on": "read"} (every private request but orders: a venue whose reads fail while it trades);
# the others only ever hit order placement.
_ANY_REQUEST_FAULTS = ("maintenance", "rate_limit", "ip_ban", "rest_5xx")

_ORDER_FAULTS = ("timeout", "lost_response")


class VenueWire(Protocol):
    """What a venue adapter tells the gate about its wire: how its errors look."""

    def error(self, reason: str, message: str) -> web.Response: ...

    def maintenance(self) -> web.Response: ...

    def rate_limited(self, retry_after_s: int) -> web.Response: ...


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json",
                        headers=headers)


class FaultGate:
    """Runs one REST action under the venue's fault board and turns SimReject into the venue's error reply."""

    def __init__(self, sim: SimExchange, wire: VenueWire, app: web.Application) -> None:
        self.sim = sim
        self.wire = wire
        self._closing = asyncio.Event()

        async def _on_shutdown(_app: web.Application) -> None:
            # Releases held (timeout-fault) responses so the server can stop promptly.
            self._closing.set()

        app.on_shutdown.append(_on_shutdown)

    def _take(self, kind: str, symbol: str | None, is_order: bool):
        fault = self.sim.faults.active(self.sim.venue, kind, symbol)
        if fault is None:
            return None
        default_on = "any" if kind in _ANY_REQUEST_FAULTS else "order"
        on = fault.params.get("on", default_on)
        if (on == "order" and not is_order) or (on == "read" and is_order):
            return None
        return self.sim.faults.take(self.sim.venue, kind, symbol)

    async def run(self, kind: str, symbol: str | None, action: Callable[[Decimal | None], Any]) -> web.Response:
        """`kind` is public / private / order; `action(fill_ratio)` returns a web.Response or raises SimReject."""
        if kind == "public":
            return self._call(action, None)
        is_order = kind == "order"
        if self._take("maintenance", symbol, is_order):
            return self.wire.maintenance()
        stopped = self._still_stopped(is_order)
        if stopped is not None:
            return stopped
        for fault_kind, status in (("rate_limit", 429), ("ip_ban", 418)):
            fault = self._take(fault_kind, symbol, is_order)
            if fault:
                retry_after = int(fault.params.get("retry_after_s", 1))
                self.sim.faults.stop_orders(self.sim.venue, status, retry_after)
                return self._stop_response(retry_after, status)
        fault = self._take("rest_5xx", symbol, is_order)
        if fault:
            status = int(fault.params.get("status", 503))
            return web.Response(status=status, text="Service Unavailable", content_type="text/html")
        if not is_order:
            return self._call(action, None)

        if self.sim.faults.take(self.sim.venue, "reject", symbol):
            return self.wire.error("reject", "order rejected by the venue")
        if self.sim.faults.take(self.sim.venue, "insufficient_margin", symbol):
            return self.wire.error("insufficient_margin", "insufficient margin")
        ratio = None
        fault = self.sim.faults.take(self.sim.venue, "partial_fill", symbol)
        if fault:
            ratio = Decimal(str(fault.params.get("ratio", "0.5")))

        fault = self._take("timeout", symbol, True)
        if fault:
            if fault.params.get("placed", True):
                self._call(action, ratio)
            hold = float(fault.params.get("hold_s", 15))
            try:
                await asyncio.wait_for(self._closing.wait(), hold)
            except asyncio.TimeoutError:
                pass
            return web.Response(status=504, text="Gateway Timeout")
        fault = self._take("lost_response", symbol, True)
        if fault:
            self._call(action, ratio)  # the order IS placed; only the answer is lost
            if fault.params.get("mode", "drop") == "drop":
                raise _DropConnection()
            return web.Response(status=int(fault.params.get("status", 502)), text="Bad Gateway")
        return self._call(action, ratio)

    def _stop_response(self, retry_after: int, status: int) -> web.Response:
        response = self.wire.rate_limited(retry_after)
        response.set_status(status)
        response.headers["Retry-After"] = str(retry_after)
        return response

    def _still_stopped(self, is_order: bool) -> web.Response | None:
        """An order inside the venue's Retry-After: answered with the stop again (and counted by the board)."""
        stopped = self.sim.faults.order_stopped(self.sim.venue) if is_order else None
        return None if stopped is None else self._stop_response(*stopped)

    def _call(self, action: Callable[[Decimal | None], Any], ratio: Decimal | None) -> web.Response:
        try:
            return action(ratio)
        except SimReject as reject:
            return self.wire.error(reject.reason, reject.message)


class _DropConnection(Exception):
    """Raised to make the drop middleware close the socket without an HTTP answer."""


@web.middleware
async def drop_connection_middleware(request: web.Request, handler):
    try:
        return await handler(request)
    except _DropConnection:
        transport = request.transport
        if transport is not None:
            transport.close()
        # The socket is closed; aiohttp's write of this reply goes nowhere.
        return web.Response(status=500)
