"""Venue-agnostic simulated exchange: places, matches, rests and cancels orders against the market's books."""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable

from perpbot.sim.faults import FaultBoard
from perpbot.sim.trading.fee_tiers import FeeSchedule
from perpbot.sim.trading.accounts import (
    ZERO, FundingPayment, SimAccount, SimFill, SimOrder, snapshot_account,
)
from perpbot.sim.trading.margin import HEDGE, leg_json
from perpbot.sim.trading.margin_engine import MARGIN_CALL_RATIO, MarginEngine
from perpbot.sim.trading.matching import (
    SimInstrumentRules, SimReject, resting_fill_qty, round_down_to_lot, sweep, validate_order,
)

START_BALANCE = Decimal(100000)
QUOTE_BY_VENUE = {"hyperliquid": "USDC"}
log = logging.getLogger("perpbot.sim")


@dataclass(frozen=True, slots=True)
class SimEvent:
    """One change the matching engine made, published to listeners (the private streams).

    kind: "order" (a state change without a fill: accepted, cancelled, IOC remainder cancelled),
    "fill" (one execution; `order` is in its state after the fill), "reject" (refused before it
    was recorded: `reason`, `client_id`), "funding" (a settled payment) and "account" (positions or
    balance changed; `reason` ORDER / FUNDING_FEE / ADJUSTMENT) and "margin_call"
    (the account's maintenance margin reached MARGIN_CALL_RATIO of its equity). A liquidation or ADL
    is an "order" + "fill" pair whose order has `origin` "liquidation" / "adl" and no client id.
    `order` is the live object: listeners render it synchronously, inside the publish call.
    """

    kind: str
    ts_ms: int
    symbol: str | None = None
    order: SimOrder | None = None
    fill: SimFill | None = None
    funding: FundingPayment | None = None
    reason: str | None = None
    client_id: str | None = None


Listener = Callable[[SimEvent], None]


def clock_ms(clock: Any) -> int:
    """Milliseconds from the server's clock: an object with now_ms(), a callable, or None (wall time)."""
    if clock is None:
        return int(time.time() * 1000)
    if hasattr(clock, "now_ms"):
        return int(clock.now_ms())
    value = clock()
    # A seconds clock (time.time-like) is below 1e11; a milliseconds clock is above it.
    return int(value * 1000) if value < 1e11 else int(value)


class SimExchange(MarginEngine):
    """One simulated venue's trading engine; wire adapters (okx.py, ...) translate to and from it."""

    # The account's fee tiers (perpbot.sim.trading.fee_tiers); None: the instruments' list rates.
    fee_schedule: FeeSchedule | None = None
    # Benchmarks only (bench/order_entry.py): called as an order reaches the matching engine, with
    # (venue, client id, time.perf_counter()); None in the product.
    arrival_hook: Callable[[str, str | None, float], None] | None = None

    def __init__(self, venue: str, market: Any, faults: FaultBoard | None = None, clock: Any = None,
                 start_balance: Decimal = START_BALANCE, order_id_start: int = 1) -> None:
        self.venue = venue
        self.market = market
        self.faults = faults if faults is not None else FaultBoard()
        self.clock = clock
        currency = QUOTE_BY_VENUE.get(venue, "USDT")
        self.account = SimAccount(currency=currency, balances={currency: start_balance})
        self._order_ids = itertools.count(order_id_start)
        self._trade_ids = itertools.count(1)
        self._funding_due: dict[str, int] = {}
        self.id_format: Callable[[int], str] = str
        self.listeners: list[Listener] = []
        # REST query view (the rest_lag fault: perpbot.sim.private.lag.RestLag); None = the plain truth.
        self.query_view: Any = None
        self._margin_called = False

    # ----------------------------------------------------------------- pub/sub
    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call `listener(event)` for every change; returns the function that removes it."""
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener) if listener in self.listeners else None

    def publish(self, kind: str, **fields: Any) -> None:
        if not self.listeners:
            return
        event = SimEvent(kind, self.now_ms(), **fields)
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:  # a broken stream must never break matching
                log.exception("simulator %s: private listener failed on %s", self.venue, kind)

    # ----------------------------------------------------------------- helpers
    def now_ms(self) -> int:
        return clock_ms(self.clock)

    def instrument(self, symbol: str) -> Any:
        try:
            inst = self.market.instrument(self.venue, symbol)
        except (KeyError, ValueError, LookupError) as exc:
            raise SimReject("unknown_symbol", f"instrument {symbol} does not exist") from exc
        if inst is None:
            raise SimReject("unknown_symbol", f"instrument {symbol} does not exist")
        return inst

    def rules(self, symbol: str) -> SimInstrumentRules:
        inst = self.instrument(symbol)
        return SimInstrumentRules(Decimal(inst.tick), Decimal(inst.lot), Decimal(inst.min_qty),
                                  Decimal(inst.min_notional), Decimal(inst.contract_size))

    def symbols(self) -> list[str]:
        return list(self.market.symbols(self.venue))

    def max_leverage(self, symbol: str) -> Decimal:
        return Decimal(self.instrument(symbol).max_leverage)

    def _marks(self) -> tuple[dict[str, Decimal], dict[str, Decimal]]:
        symbols = {s for s, p in self.account.positions.items() if p.size}
        symbols |= {o.symbol for o in self.account.open_orders()}
        marks = {s: Decimal(self.market.mark(self.venue, s)) for s in symbols}
        sizes = {s: Decimal(self.instrument(s).contract_size) for s in symbols}
        return marks, sizes

    def margin(self) -> dict[str, Decimal]:
        marks, sizes = self._marks()
        return self.account.margin_summary(marks, sizes)

    def take_fault(self, kind: str, symbol: str | None = None):
        return self.faults.take(self.venue, kind, symbol)

    # ----------------------------------------------------------------- leverage
    def set_leverage(self, symbol: str, leverage: Decimal) -> Decimal:
        maximum = self.max_leverage(symbol)
        if leverage < 1 or leverage > maximum:
            raise SimReject("bad_leverage", f"leverage {leverage} outside 1..{maximum} for {symbol}")
        self.account.leverage[symbol] = leverage
        return leverage

    # ----------------------------------------------------------------- orders
    def place_order(self, symbol: str, side: str, type: str, qty: Decimal, price: Decimal | None = None,
                    time_in_force: str = "GTC", reduce_only: bool = False, client_id: str | None = None,
                    fill_cap: Decimal | None = None) -> SimOrder:
        """Validate, margin-check, match and (for GTC) rest an order. `qty` is in venue units.

        `fill_cap` (partial_fill fault) caps the immediate fill; the remainder of an IOC is cancelled.
        Raises SimReject; a rejected order is not recorded (but is published as a "reject" event).
        """
        if self.arrival_hook is not None:
            self.arrival_hook(self.venue, client_id, time.perf_counter())
        try:
            return self._place_order(symbol, side, type, qty, price, time_in_force, reduce_only, client_id,
                                     fill_cap)
        except SimReject as reject:
            self.publish("reject", symbol=symbol, reason=reject.reason, client_id=client_id)
            raise

    def _place_order(self, symbol: str, side: str, type: str, qty: Decimal, price: Decimal | None,
                     time_in_force: str, reduce_only: bool, client_id: str | None,
                     fill_cap: Decimal | None) -> SimOrder:
        self.match_resting()
        side = side.lower()
        if side not in ("buy", "sell"):
            raise SimReject("bad_request", f"side {side!r} must be buy or sell")
        rules = self.rules(symbol)
        bids, asks = self.market.levels(self.venue, symbol)
        if type == "market":
            price = None
            time_in_force = "IOC"
        elif price is None:
            raise SimReject("bad_request", "limit order requires a price")
        if client_id is not None and client_id in self.account.client_ids:
            raise SimReject("duplicate_client_id", f"client order id {client_id} already used")
        if self.account.position_mode == HEDGE:
            # A one-way order (no position side) on a hedge-mode account, as the venues refuse it.
            raise SimReject("position_mode", "order has no position side but the account is in hedge mode")
        mark = Decimal(self.market.mark(self.venue, symbol))
        validate_order(rules, qty, price, mark, reduce_only)

        position = self.account.position(symbol)
        base_qty = qty * rules.contract_size
        signed = base_qty if side == "buy" else -base_qty
        reducing = position.size != 0 and (position.size > 0) != (signed > 0)
        if reduce_only:
            if not reducing:
                raise SimReject("reduce_only", "reduce-only order would open or increase a position")
            if base_qty > abs(position.size):
                raise SimReject("reduce_only", "reduce-only order would flip the position")

        if time_in_force == "POST_ONLY":
            best = asks if side == "buy" else bids
            if best and price is not None and ((side == "buy" and best[0][0] <= price)
                                               or (side == "sell" and best[0][0] >= price)):
                raise SimReject("post_only_cross", "post-only order would take liquidity")

        leverage = self.account.leverage_of(symbol)
        increasing_base = base_qty
        if reducing:
            increasing_base = max(ZERO, base_qty - abs(position.size))
        reference = price if price is not None else (asks[0][0] if side == "buy" and asks else
                                                     bids[0][0] if side == "sell" and bids else mark)
        inst = self.instrument(symbol)
        required = increasing_base * reference / leverage + base_qty * reference * Decimal(inst.taker_fee)
        if increasing_base > 0 and required > self.margin()["available"]:
            raise SimReject("insufficient_margin",
                            f"order needs {required} {self.account.currency} margin, available "
                            f"{self.margin()['available']}")

        now = self.now_ms()
        order = SimOrder(
            order_id=self.id_format(next(self._order_ids)), client_id=client_id, symbol=symbol, side=side,
            type=type, time_in_force=time_in_force, price=price, qty=qty, reduce_only=reduce_only,
            created_ms=now, updated_ms=now, leverage=leverage,
        )
        self.account.add_order(order)
        self.publish("order", symbol=symbol, order=order)

        if time_in_force != "POST_ONLY":
            take_qty = qty if fill_cap is None else min(qty, fill_cap)
            fills = sweep(side, take_qty, price, bids, asks)
            if time_in_force == "FOK" and sum(q for _, q in fills) < qty:
                fills = []
            for fill_price, fill_qty in fills:
                self._fill(order, fill_price, fill_qty, "taker", Decimal(inst.taker_fee), now)
        if order.remaining == 0:
            order.status = "filled"
        elif time_in_force in ("IOC", "FOK"):
            order.status = "canceled"  # the unfilled remainder of an immediate order is cancelled
            self.publish("order", symbol=symbol, order=order)
        return order

    def _fill(self, order: SimOrder, price: Decimal, qty: Decimal, liquidity: str, fee_rate: Decimal,
              now: int) -> SimFill:
        inst = self.instrument(order.symbol)
        base_qty = qty * Decimal(inst.contract_size)
        if self.fee_schedule is not None:  # the account's fee tier, when one is set
            fee_rate = self.fee_schedule.rate(liquidity, fee_rate, base_qty * price)
        fee = base_qty * price * fee_rate
        signed = base_qty if order.side == "buy" else -base_qty
        realized = self.account.position(order.symbol).apply(signed, price, now)
        self.account.credit(realized - fee)
        self.account.fees_paid += fee
        order.filled += qty
        order.notional_filled += qty * price
        order.fee += fee
        order.updated_ms = now
        order.status = "filled" if order.remaining == 0 else "partially_filled"
        fill = SimFill(
            trade_id=str(next(self._trade_ids)), order_id=order.order_id, client_id=order.client_id,
            symbol=order.symbol, side=order.side, price=price, qty=qty, base_qty=base_qty, fee=fee,
            fee_currency=self.account.currency, liquidity=liquidity, realized_pnl=realized, ts_ms=now,
        )
        self.account.add_fill(fill)
        self.publish("fill", symbol=order.symbol, order=order, fill=fill)
        self.publish("account", symbol=order.symbol, reason="ORDER")
        return fill

    def match_resting(self) -> list[SimFill]:
        """Fill resting limit orders the market has moved through (maker fills at the order's price)."""
        fills: list[SimFill] = []
        for order in self.account.open_orders():
            if order.price is None:
                continue
            bids, asks = self.market.levels(self.venue, order.symbol)
            qty = resting_fill_qty(order.side, order.price, order.remaining, bids, asks)
            if order.reduce_only and qty > 0:
                # A reduce-only order never trades past flat.
                rules = self.rules(order.symbol)
                pos = self.account.position(order.symbol).size
                closable = round_down_to_lot(abs(pos) / rules.contract_size, rules.lot)
                if pos == 0 or (pos > 0) == (order.side == "buy"):
                    order.status = "canceled"
                    order.updated_ms = self.now_ms()
                    self.publish("order", symbol=order.symbol, order=order)
                    continue
                qty = min(qty, closable)
            if qty > 0:
                fee_rate = Decimal(self.instrument(order.symbol).maker_fee)
                fills.append(self._fill(order, order.price, qty, "maker", fee_rate, self.now_ms()))
        return fills

    def cancel_order(self, symbol: str | None, order_id: str | None = None, client_id: str | None = None) -> SimOrder:
        self.match_resting()
        order = self.account.order_by(order_id, client_id)
        if order is None or (symbol is not None and order.symbol != symbol) or not order.is_open:
            raise SimReject("unknown_order", f"order {order_id or client_id} does not exist or is not open")
        order.status = "canceled"
        order.updated_ms = self.now_ms()
        self.publish("order", symbol=order.symbol, order=order)
        return order

    # REST queries: get_order, open_orders, fills and visible_fills answer through `query_view` when one is
    # installed (the rest_lag fault hides the newest fills from them); the engine itself never calls them.
    def get_order(self, symbol: str | None, order_id: str | None = None, client_id: str | None = None) -> SimOrder:
        self.match_resting()
        order = self.account.order_by(order_id, client_id)
        if order is None or (symbol is not None and order.symbol != symbol):
            raise SimReject("unknown_order", f"order {order_id or client_id} does not exist")
        return self.query_view.order(order) if self.query_view is not None else order

    def open_orders(self, symbol: str | None = None) -> list[SimOrder]:
        self.match_resting()
        if self.query_view is not None:
            return self.query_view.open_orders(symbol)
        return self.account.open_orders(symbol)

    def fills(self, symbol: str | None = None) -> list[SimFill]:
        self.match_resting()
        return [f for f in self.visible_fills() if symbol is None or f.symbol == symbol]

    def visible_fills(self) -> list[SimFill]:
        """Every fill a REST query may report (without matching first)."""
        if self.query_view is not None:
            return self.query_view.fills(self.account.fills)
        return self.account.fills

    # ----------------------------------------------------------------- funding
    def settle_funding(self, now_ms: int | None = None) -> list[FundingPayment]:
        """Apply every funding payment due by `now_ms`: longs pay shorts when the rate is positive."""
        now_ms = self.now_ms() if now_ms is None else now_ms
        payments: list[FundingPayment] = []
        for symbol in self.symbols():
            rate, interval_h, next_ms = self.market.funding(self.venue, symbol)
            due = self._funding_due.setdefault(symbol, int(next_ms))
            while now_ms >= due:
                pos = self.account.positions.get(symbol)
                if pos is not None and pos.size:
                    mark = Decimal(self.market.mark(self.venue, symbol))
                    amount = -pos.size * mark * Decimal(rate)
                    self.account.credit(amount)
                    payment = FundingPayment(symbol, Decimal(rate), amount, mark, pos.size, due)
                    self.account.funding.append(payment)
                    payments.append(payment)
                    self.publish("funding", symbol=symbol, funding=payment)
                    self.publish("account", symbol=symbol, reason="FUNDING_FEE")
                due += int(interval_h) * 3_600_000
            self._funding_due[symbol] = due
        return payments

    def settle_funding_now(self, symbol: str) -> list[FundingPayment]:
        """The next funding of `symbol` settled now (its interval cut short) and stamped with the clock:
        how a test puts a settlement inside a trade's holding time. Later ones follow at the interval."""
        now_ms = self.now_ms()
        self._funding_due[symbol] = now_ms
        return [payment for payment in self.settle_funding(now_ms) if payment.symbol == symbol]

    # ----------------------------------------------------------------- admin
    def set_position(self, symbol: str, size: Decimal, price: Decimal) -> None:
        """Change a position behind the bot's back (base units, signed); the balance is untouched."""
        self.instrument(symbol)
        pos = self.account.position(symbol)
        pos.size = Decimal(size)
        pos.entry = Decimal(price) if size else ZERO
        pos.updated_ms = self.now_ms()
        self.publish("account", symbol=symbol, reason="ADJUSTMENT")

    def snapshot(self) -> dict[str, Any]:
        data = snapshot_account(self.account)
        data["venue"] = self.venue
        summary = self.margin()
        data["margin"] = {k: format(v.normalize(), "f") for k, v in summary.items()}
        risk = self.risk()
        data["margin_modes"] = dict(self.account.margin_modes)
        data["position_mode"] = self.account.position_mode
        data["risk"] = {symbol: leg_json(leg) for symbol, leg in risk.legs.items()}
        return data


__all__ = ["MARGIN_CALL_RATIO", "SimEvent", "SimExchange", "SimReject", "clock_ms"]
