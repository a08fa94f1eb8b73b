"""Fault board of the built-in simulator: faults queued by scenario or admin call, taken once.

Market-data faults are taken by the simulator's WebSocket side, trading faults by its REST
side, private-stream faults by perpbot.sim.private (rest_lag by the REST order/trade queries). A fault with `count` n fires on the next n occasions; `duration_s` faults (stall,
maintenance) stay active until they expire. Every fault that fires is counted in `fired`.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

MARKET_FAULTS = ("drop", "stall", "gap", "bad_checksum", "malformed", "delay", "reorder", "price_jump")
TRADING_FAULTS = (
    "rest_5xx", "timeout", "rate_limit", "reject", "insufficient_margin", "partial_fill",
    "lost_response", "maintenance", "ip_ban",
)
# rate_limit answers HTTP 429 and ip_ban HTTP 418, both with Retry-After (params.retry_after_s, default 1 s);
# the venue then answers every order the same way until that time has passed (perpbot.sim.trading.gate).
# Private streams (perpbot.sim.private): private_drop closes every private socket of the venue at its next
# push; private_stall swallows pushes (socket stays open); fill_duplicate pushes a fill's frames twice;
# fill_out_of_order pushes the order's state before its fill; listenkey_expire (Binance) expires the listen
# keys now; stream_lag delays pushes by params.ms; rest_lag hides fills newer than params.ms from REST
# order/trade queries.
PRIVATE_FAULTS = (
    "private_drop", "private_stall", "fill_duplicate", "fill_out_of_order", "listenkey_expire", "stream_lag",
    "rest_lag",
)
# Order-entry WebSockets (perpbot.sim.private.order_faults): ws_order_drop cuts the order socket when an
# order arrives (params.placed, default true: placed first); ws_answer_lost places it and never answers.
ORDER_WS_FAULTS = ("ws_order_drop", "ws_answer_lost")
# Margin (perpbot.sim.trading.margin, run by SimExchange.check_margin on every tick): liquidate closes the
# venue's position (on `symbol`, or any) as a liquidation at the mark with the taker fee; adl deleverages a
# position in profit (params.fraction, default 1); mark_shock moves one venue's prices by params.bps and
# holds them there (no decay, unlike price_jump) until a shock of the opposite sign. Outside FAULT_KINDS.
MARGIN_FAULTS = ("liquidate", "adl", "mark_shock")
FAULT_KINDS = MARKET_FAULTS + TRADING_FAULTS
RETRY_AFTER_IGNORED = "retry_after_ignored"  # counted in FaultBoard.fired (an order inside a Retry-After), no kind
# Every kind the board accepts. PRIVATE_FAULTS stay out of FAULT_KINDS, the set the reliability scenario
# matrix (perpbot.reliability.scenarios) promises to cover, until that matrix drives private streams.
ALL_FAULT_KINDS = FAULT_KINDS + PRIVATE_FAULTS + ORDER_WS_FAULTS + MARGIN_FAULTS


@dataclass(slots=True)
class Fault:
    kind: str
    venue: str
    symbol: str | None = None
    count: int = 1
    duration_s: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    expires_at: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ALL_FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; allowed: {', '.join(ALL_FAULT_KINDS)}")
        if self.count < 1:
            raise ValueError("count must be >= 1")


class FaultBoard:
    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._faults: list[Fault] = []
        self.fired: Counter[tuple[str, str]] = Counter()
        self._stops: dict[str, tuple[float, int]] = {}  # venue -> (end of its Retry-After, status)

    def stop_orders(self, venue: str, status: int, retry_after_s: float) -> None:
        """A 429 / 418 with Retry-After went out: `venue` answers every order the same (REST or WebSocket)
        until it has passed. Not undone by clear(): the venue's word stands."""
        self._stops[venue] = (self._clock() + retry_after_s, status)

    def order_stopped(self, venue: str) -> tuple[int, int] | None:
        """(seconds left, rounded up; status) while `venue`'s Retry-After runs, else None. The order asking
        is counted in `fired` as RETRY_AFTER_IGNORED: a client that respects Retry-After never shows one."""
        until, status = self._stops.get(venue, (0.0, 429))
        left = until - self._clock()
        if left <= 0:
            return None
        self.fired[(venue, RETRY_AFTER_IGNORED)] += 1
        return max(1, math.ceil(left)), status

    def add(self, fault: Fault) -> Fault:
        if fault.duration_s is not None:
            fault.expires_at = self._clock() + fault.duration_s
        self._faults.append(fault)
        return fault

    def _match(self, fault: Fault, venue: str, kind: str, symbol: str | None) -> bool:
        return (
            fault.kind == kind
            and fault.venue in (venue, "*")
            and (fault.symbol is None or symbol is None or fault.symbol == symbol)
        )

    def take(self, venue: str, kind: str, symbol: str | None = None) -> Fault | None:
        """Consume one occurrence of a counted fault (or report an active timed one)."""
        now = self._clock()
        for fault in list(self._faults):
            if fault.expires_at is not None and now >= fault.expires_at:
                self._faults.remove(fault)
                continue
            if not self._match(fault, venue, kind, symbol):
                continue
            if fault.expires_at is None:
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
            self.fired[(venue, kind)] += 1
            return fault
        return None

    def active(self, venue: str, kind: str, symbol: str | None = None) -> Fault | None:
        """Peek at a timed fault without consuming it."""
        now = self._clock()
        for fault in self._faults:
            if fault.expires_at is not None and now >= fault.expires_at:
                continue
            if self._match(fault, venue, kind, symbol):
                return fault
        return None

    def pending(self) -> list[dict[str, Any]]:
        return [
            {"kind": f.kind, "venue": f.venue, "symbol": f.symbol, "count": f.count,
             "duration_s": f.duration_s, "params": f.params}
            for f in self._faults
        ]

    def clear(self) -> None:
        self._faults.clear()
