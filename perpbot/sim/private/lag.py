"""The rest_lag fault: REST order and trade queries answer as if the newest fills had not happened yet.

Installed as SimExchange.query_view. While a rest_lag fault is active (duration_s; or each of the
next `count` REST order/trade lookups), fills newer than now - params.ms (default 1000) are left
out of trade lists, and an order with such a fill is reported without it: its filled quantity,
average price and fee exclude the hidden fills and it looks still working (new or
partially_filled). The private streams are not lagged, so the stream is ahead of REST.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

from perpbot.sim.trading.accounts import SimFill, SimOrder
from perpbot.sim.trading.exchange import SimExchange


class RestLag:
    def __init__(self, sim: SimExchange) -> None:
        self.sim = sim

    def cutoff(self) -> int | None:
        """The newest fill time a REST answer may show now, or None when no rest_lag fault is active."""
        if self.sim.faults.active(self.sim.venue, "rest_lag") is None:
            return None  # peek first: a counted fault is only consumed by a lookup it applies to
        fault = self.sim.faults.take(self.sim.venue, "rest_lag")
        if fault is None:
            return None
        return self.sim.now_ms() - int(fault.params.get("ms", 1000))

    def fills(self, fills: list[SimFill]) -> list[SimFill]:
        cutoff = self.cutoff()
        return fills if cutoff is None else [f for f in fills if f.ts_ms <= cutoff]

    def order(self, order: SimOrder, cutoff: int | None = None, peeked: bool = False) -> SimOrder:
        if not peeked:
            cutoff = self.cutoff()
        if cutoff is None:
            return order
        hidden = [f for f in self.sim.account.fills if f.order_id == order.order_id and f.ts_ms > cutoff]
        if not hidden:
            return order
        qty = sum((f.qty for f in hidden), Decimal(0))
        filled = order.filled - qty
        return dataclasses.replace(
            order, filled=filled, notional_filled=order.notional_filled - sum((f.qty * f.price for f in hidden),
                                                                                Decimal(0)),
            fee=order.fee - sum((f.fee for f in hidden), Decimal(0)),
            status="partially_filled" if filled > 0 else "new", updated_ms=min(f.ts_ms for f in hidden) - 1,
        )

    def open_orders(self, symbol: str | None) -> list[SimOrder]:
        cutoff = self.cutoff()
        orders: list[Any] = []
        for order in self.sim.account.orders.values():
            if symbol is not None and order.symbol != symbol:
                continue
            view = self.order(order, cutoff, peeked=True)
            if view.is_open:
                orders.append(view)
        return orders
