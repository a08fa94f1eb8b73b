"""The simulated venues' margin actions, mixed into SimExchange: account modes, each position's margin figures
(perpbot.sim.trading.margin), liquidation when the mark crosses the liquidation price, ADL, margin calls.

`MarginEngine.check_margin` runs on every market tick (perpbot.sim.server). A liquidation or an ADL is an
order of the venue's own (no client id, `origin` "liquidation" / "adl") filled at the mark and published like
any other fill, so the private streams push it as each venue does.
"""

from __future__ import annotations

import itertools
import logging
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable

from perpbot.sim.faults import FaultBoard
from perpbot.sim.trading.accounts import ZERO, SimAccount, SimFill, SimOrder
from perpbot.sim.trading.margin import (
    MARGIN_MODES, POSITION_MODES, SimAccountRisk, SimLegRisk, account_risk, liquidation_order,
)
from perpbot.sim.trading.matching import SimInstrumentRules, SimReject, round_down_to_lot

log = logging.getLogger("perpbot.sim")
# The venue pushes a margin call once the maintenance margin reaches this share of the equity.
MARGIN_CALL_RATIO = Decimal("0.8")


class MarginEngine:
    """Margin behaviour of a SimExchange (the attributes below are SimExchange's)."""

    venue: str
    market: Any
    faults: FaultBoard
    account: SimAccount
    id_format: Callable[[int], str]
    _order_ids: itertools.count[int]
    _margin_called: bool

    if TYPE_CHECKING:  # SimExchange's own methods this mixin uses (declared for the type checker only)
        def now_ms(self) -> int: ...
        def instrument(self, symbol: str) -> Any: ...
        def rules(self, symbol: str) -> SimInstrumentRules: ...
        def max_leverage(self, symbol: str) -> Decimal: ...
        def publish(self, kind: str, **fields: Any) -> None: ...
        def _fill(self, order: SimOrder, price: Decimal, qty: Decimal, liquidity: str, fee_rate: Decimal,
                  now: int) -> SimFill: ...

    def risk(self) -> SimAccountRisk:
        """Every open position's maintenance margin, liquidation price and ADL rank at the current marks."""
        symbols = [s for s, p in self.account.positions.items() if p.size]
        marks = {s: Decimal(self.market.mark(self.venue, s)) for s in symbols}
        return account_risk(self.venue, self.account, marks, {s: self.max_leverage(s) for s in symbols})

    def leg_risk(self, symbol: str) -> SimLegRisk | None:
        """One position's figures (None when flat): what the venue's wires print for it."""
        return self.risk().legs.get(symbol)

    # ----------------------------------------------------------------- account modes
    def set_margin_mode(self, symbol: str, mode: str) -> str:
        """cross / isolated for one symbol; refused, as the venues do, while a position or an order is open."""
        self.instrument(symbol)
        if mode not in MARGIN_MODES:
            raise SimReject("bad_request", f"margin mode {mode!r} must be one of {', '.join(MARGIN_MODES)}")
        if mode != self.account.margin_mode_of(symbol):
            if self.account.position(symbol).size or self.account.open_orders(symbol):
                raise SimReject("mode_change_refused",
                                f"margin mode of {symbol} cannot change with an open position or order")
            self.account.margin_modes[symbol] = mode
        return mode

    def set_position_mode(self, mode: str) -> str:
        """one_way / hedge for the account; refused while any position or order is open."""
        if mode not in POSITION_MODES:
            raise SimReject("bad_request", f"position mode {mode!r} must be one of {', '.join(POSITION_MODES)}")
        if mode != self.account.position_mode:
            if any(p.size for p in self.account.positions.values()) or self.account.open_orders():
                raise SimReject("mode_change_refused", "position mode cannot change with open positions or orders")
            self.account.position_mode = mode
        return mode

    # ----------------------------------------------------------------- margin
    def check_margin(self) -> list[SimFill]:
        """Liquidate every position whose mark crossed its liquidation price (largest loss first, the
        figures taken again after each), then apply the `liquidate` and `adl` faults; push a margin call
        when the maintenance margin reaches MARGIN_CALL_RATIO of the equity. Run on every market tick."""
        if not any(p.size for p in self.account.positions.values()):
            self._margin_called = False
            return []
        fills: list[SimFill] = []
        while True:
            crossed = liquidation_order(self.risk())
            if not crossed:
                break
            fills.extend(self.force_close(crossed[0].symbol, "liquidation"))
        for symbol, pos in list(self.account.positions.items()):
            if pos.size and self.faults.active(self.venue, "liquidate", symbol) is not None:
                self.faults.take(self.venue, "liquidate", symbol)
                fills.extend(self.force_close(symbol, "liquidation"))
        fills.extend(self._adl_fault())
        self._margin_call()
        return fills

    def _adl_fault(self) -> list[SimFill]:
        legs = sorted(self.risk().legs.values(), key=lambda leg: (-leg.adl_rank, -leg.unrealized_pnl))
        for leg in legs:
            # ADL closes a position in profit (the counterparty of a bankrupt one), the highest rank first.
            if leg.unrealized_pnl > 0 and self.faults.active(self.venue, "adl", leg.symbol) is not None:
                fault = self.faults.take(self.venue, "adl", leg.symbol)
                share = Decimal(str(fault.params.get("fraction", 1))) if fault is not None else Decimal(1)
                return self.force_close(leg.symbol, "adl", share)
        return []

    def _margin_call(self) -> None:
        risk = self.risk()
        called = risk.maintenance_margin > 0 and risk.margin_ratio >= MARGIN_CALL_RATIO
        if called and not self._margin_called:
            worst = min(risk.legs.values(), key=lambda leg: leg.distance_pct if leg.distance_pct is not None
                        else Decimal("Infinity"))
            self.publish("margin_call", symbol=worst.symbol, reason=f"margin ratio {risk.margin_ratio}")
        self._margin_called = called

    def force_close(self, symbol: str, origin: str, share: Decimal = Decimal(1)) -> list[SimFill]:
        """The venue closes (a `share` of) a position itself at the mark: a liquidation (taker fee; the
        symbol's open orders are cancelled first, as the venues do) or an ADL (no fee)."""
        position = self.account.position(symbol)
        if not position.size:
            return []
        rules = self.rules(symbol)
        whole = abs(position.size) / rules.contract_size
        qty = whole if share >= 1 else round_down_to_lot(whole * share, rules.lot)
        if qty <= 0:
            return []
        now = self.now_ms()
        if origin == "liquidation":
            for order in self.account.open_orders(symbol):
                order.status = "canceled"
                order.updated_ms = now
                self.publish("order", symbol=symbol, order=order)
        mark = Decimal(self.market.mark(self.venue, symbol))
        side = "sell" if position.size > 0 else "buy"
        order = SimOrder(
            order_id=self.id_format(next(self._order_ids)), client_id=None, symbol=symbol, side=side,
            type="market", time_in_force="IOC", price=mark, qty=qty, reduce_only=True, created_ms=now,
            updated_ms=now, leverage=self.account.leverage_of(symbol), origin=origin,
        )
        self.account.add_order(order)
        fee_rate = Decimal(self.instrument(symbol).taker_fee) if origin == "liquidation" else ZERO
        log.warning("simulator %s: %s of %s %s at mark %s", self.venue, origin, symbol, position.size, mark)
        fill = self._fill(order, mark, qty, "taker", fee_rate, now)
        return [fill]


__all__ = ["MARGIN_CALL_RATIO", "MarginEngine"]
