"""Risk rules, one pure function each: the facts in, a Refusal (rule, detail) or None out.

Quantities in OrderRequests are venue units; every rule converts to base units through the
instrument's contract size before it reasons about positions or notionals (USDT).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from collections.abc import Sequence
from decimal import Decimal

from perpbot.core.decisions import Decision, Refusal
from perpbot.core.instruments import Instrument
from perpbot.core.orders import OrderRequest
from perpbot.risk.context import Key, OrderBudget, RiskContext
from perpbot.risk.quotes import to_usdt
from perpbot.risk.states import TradingState

ENTRY = "entry"
EXIT = "exit"
HEDGE = "hedge"
UNWIND = "unwind"
FLATTEN = "flatten"
PURPOSES = frozenset({ENTRY, EXIT, HEDGE, UNWIND, FLATTEN})
# Orders that lower exposure and so stay allowed when not ACTIVE (a hedge re-covers a naked leg).
RISK_REDUCING = frozenset({EXIT, HEDGE, UNWIND, FLATTEN})
_HUNDRED = Decimal(100)
_ZERO = Decimal(0)
_ONE = Decimal(1)
_MINUTE = 60.0


def signed_base(order: OrderRequest, instrument: Instrument) -> Decimal:
    """The order's effect on the position in base units (+ buy, - sell)."""
    qty = order.qty * instrument.contract_size
    return qty if order.side == "buy" else -qty


def _deltas(orders: Sequence[OrderRequest], ctx: RiskContext) -> dict[Key, Decimal]:
    deltas: dict[Key, Decimal] = {}
    for order in orders:
        key = (order.venue, order.symbol)
        deltas[key] = deltas.get(key, _ZERO) + signed_base(order, ctx.instruments[key])
    return deltas


def _mark(ctx: RiskContext, key: Key, orders: Sequence[OrderRequest]) -> Decimal:
    mark = ctx.mark_prices.get(key)
    if mark is not None:
        return mark
    for order in orders:
        if (order.venue, order.symbol) == key:
            return order.price
    return _ZERO


def _all_venue_grosses(ctx: RiskContext, deltas: dict[Key, Decimal], orders: Sequence[OrderRequest]) -> dict[str, tuple[Decimal, Decimal]]:
    """(gross notional now, gross notional after the orders) at mark for every venue the deltas
    touch, over every symbol of that venue held or traded, in one pass over the positions."""
    before = {key[0]: _ZERO for key in deltas}
    after = dict(before)
    marks = ctx.mark_prices
    for key, position in ctx.positions.items():
        venue = key[0]
        if venue in before:
            mark = marks.get(key)
            if mark is None:
                mark = _mark(ctx, key, orders)
            delta = deltas.get(key)
            gross = abs(position) * mark
            before[venue] += gross
            # A symbol the orders do not trade keeps its notional: the same product on both sides.
            after[venue] += gross if delta is None else abs(position + delta) * mark
    positions = ctx.positions
    for key, delta in deltas.items():
        if key not in positions:
            after[key[0]] += abs(delta) * _mark(ctx, key, orders)
    return {venue: (before[venue], after[venue]) for venue in before}


# --- state and shape -------------------------------------------------------------------
def rule_trading_state(state: TradingState, purpose: str, reduce_only: bool) -> Refusal | None:
    """ACTIVE allows everything; any other state only risk-reducing orders. Flatten must be
    reduce-only in every state."""
    if purpose not in PURPOSES:
        return Refusal("trading_state", f"unknown order purpose {purpose!r}")
    if purpose == FLATTEN and not reduce_only:
        return Refusal("trading_state", "flatten orders must be reduce-only")
    if state is not TradingState.ACTIVE and purpose not in RISK_REDUCING:
        return Refusal("trading_state", f"{state.value}: only reduce-only orders, refused {purpose}")
    return None


def rule_hedge_shape(decision: Decision) -> Refusal | None:
    """An entry is one buy and one sell of the same base quantity on two different venues."""
    a, b = decision.legs
    if {a.side, b.side} != {"buy", "sell"}:
        return Refusal("hedge_shape", f"legs are {a.side}/{b.side}, need one buy and one sell")
    if a.venue == b.venue:
        return Refusal("hedge_shape", f"both legs on {a.venue}")
    if a.base_qty <= 0 or b.base_qty <= 0:
        return Refusal("hedge_shape", "non-positive leg quantity")
    if a.ref_price <= 0 or b.ref_price <= 0:
        return Refusal("hedge_shape", "non-positive reference price")
    return None


def rule_instrument_known(venue: str, symbol: str, ctx: RiskContext) -> Refusal | None:
    if (venue, symbol) not in ctx.instruments:
        return Refusal("instrument", f"no instrument for {venue} {symbol}")
    return None


# --- sizes and capital -----------------------------------------------------------------
def rule_max_position_size(
    orders: Sequence[OrderRequest], ctx: RiskContext, max_position_size_usdt: Decimal
) -> Refusal | None:
    """The resulting position per venue/symbol, at mark, stays within the limit (a position
    that shrinks always passes)."""
    return max_position_size_of(_deltas(orders, ctx), orders, ctx, max_position_size_usdt)


def max_position_size_of(
    deltas: dict[Key, Decimal], orders: Sequence[OrderRequest], ctx: RiskContext, max_position_size_usdt: Decimal
) -> Refusal | None:
    """rule_max_position_size with the orders' position deltas already computed (_deltas)."""
    for key, delta in deltas.items():
        before = ctx.positions.get(key, _ZERO)
        after = before + delta
        if abs(after) <= abs(before):
            continue
        notional = to_usdt(ctx, key, abs(after) * _mark(ctx, key, orders))  # a USDC notional at the rate
        if notional > max_position_size_usdt:
            return Refusal(
                "max_position_size_usdt",
                f"{key[0]} {key[1]} position would be {notional:.2f} USDT > {max_position_size_usdt}",
            )
    return None


def venue_grosses(
    deltas: dict[Key, Decimal], orders: Sequence[OrderRequest], ctx: RiskContext
) -> list[tuple[str, Decimal, Decimal]]:
    """(venue, gross before, gross after) for every venue the orders touch, venues sorted: the
    input rule_max_leverage and rule_capital_utilization share (computed once per entry)."""
    grosses = _all_venue_grosses(ctx, deltas, orders)
    return [(venue, *grosses[venue]) for venue in sorted(grosses)]


def rule_max_leverage(orders: Sequence[OrderRequest], ctx: RiskContext, max_leverage: Decimal) -> Refusal | None:
    """Gross notional per venue after the orders / that venue's equity stays <= max_leverage."""
    return max_leverage_of(venue_grosses(_deltas(orders, ctx), orders, ctx), ctx, max_leverage)


def max_leverage_of(
    grosses: list[tuple[str, Decimal, Decimal]], ctx: RiskContext, max_leverage: Decimal
) -> Refusal | None:
    """rule_max_leverage over precomputed venue_grosses."""
    for venue, before, after in grosses:
        if after <= before:
            continue
        equity = ctx.equity_usdt.get(venue, _ZERO)
        if equity <= 0:
            return Refusal("max_leverage", f"{venue} has no equity ({equity} USDT)")
        if after > equity * max_leverage:
            return Refusal(
                "max_leverage", f"{venue} leverage would be {after / equity:.2f}x > {max_leverage}x"
            )
    return None


def rule_capital_utilization(
    orders: Sequence[OrderRequest], ctx: RiskContext, max_percent: Decimal
) -> Refusal | None:
    """Used margin across venues after the orders (new notional / venue leverage) stays within
    max_percent of total equity."""
    equity = sum(ctx.equity_usdt.values(), _ZERO)
    if equity <= 0:
        return Refusal("capital_utilization", "no equity")
    return capital_utilization_of(venue_grosses(_deltas(orders, ctx), orders, ctx), ctx, max_percent)


def capital_utilization_of(
    grosses: list[tuple[str, Decimal, Decimal]], ctx: RiskContext, max_percent: Decimal
) -> Refusal | None:
    """rule_capital_utilization over precomputed venue_grosses."""
    equity = sum(ctx.equity_usdt.values(), _ZERO)
    if equity <= 0:
        return Refusal("capital_utilization", "no equity")
    used = sum(ctx.used_margin_usdt.values(), _ZERO)
    for venue, before, after in grosses:
        if after > before:
            used += (after - before) / ctx.leverage.get(venue, _ONE)
    percent = used / equity * _HUNDRED
    if percent > max_percent:
        return Refusal("capital_utilization", f"utilisation would be {percent:.1f}% > {max_percent}%")
    return None


def rule_max_open_positions(ctx: RiskContext, max_open_positions: int) -> Refusal | None:
    if ctx.open_trades >= max_open_positions:
        return Refusal("max_open_positions", f"{ctx.open_trades} trades open, limit {max_open_positions}")
    return None


def rule_min_edge(edge_bps: Decimal, min_edge_bps: Decimal) -> Refusal | None:
    if edge_bps < min_edge_bps:
        return Refusal("min_edge", f"edge {edge_bps:.2f}bps < {min_edge_bps}bps")
    return None


# --- market data and connectivity ---------------------------------------------------------
def rule_book_usable(orders: Sequence[OrderRequest], ctx: RiskContext, max_book_age_s: float) -> Refusal | None:
    """Every leg's book exists, is valid, fresh in the store's sense and younger than max_book_age_s."""
    for order in orders:
        book = ctx.store.get(order.venue, order.symbol)
        if book is None:
            return Refusal("stale_book", f"{order.venue} {order.symbol}: no book")
        if not book.valid:
            return Refusal("stale_book", f"{order.venue} {order.symbol}: invalid ({book.invalid_reason})")
        age = ctx.now - book.recv_ts
        if age > max_book_age_s or not ctx.store.is_usable(book, ctx.now):
            return Refusal("stale_book", f"{order.venue} {order.symbol}: {age:.2f}s old > {max_book_age_s}s")
    return None


def rule_venue_connected(orders: Sequence[OrderRequest], ctx: RiskContext) -> Refusal | None:
    for order in orders:
        if not ctx.venue_connected.get(order.venue, False):
            return Refusal("venue_disconnected", f"{order.venue} feed is not connected")
    return None


def rule_private_stream(orders: Sequence[OrderRequest], ctx: RiskContext) -> Refusal | None:
    """Entries only on venues whose private stream is live: without it a fill, a cancel or a
    liquidation is learnt late (exits, hedges and flattening do not ask, they go over REST)."""
    for order in orders:
        if order.venue in ctx.private_streams_down:
            return Refusal("private_stream_down", f"{order.venue} private stream is not live")
    return None


def rule_order_grid(order: OrderRequest, instrument: Instrument) -> Refusal | None:
    """Price on the tick, quantity on the lot, at least min_qty, and (unless reduce-only, which
    venues exempt so dust can be closed) at least min_notional."""
    # Instrument.on_tick / on_lot, each with its one division done once.
    steps = order.price / instrument.tick_size if order.price > 0 else None
    if steps is None or steps != steps.to_integral_value():
        where = f"{order.venue} {order.symbol}"
        return Refusal("tick_size", f"{where}: price {order.price} not on tick {instrument.tick_size}")
    steps = order.qty / instrument.lot_size if order.qty > 0 else None
    if steps is None or steps != steps.to_integral_value():
        where = f"{order.venue} {order.symbol}"
        return Refusal("lot_size", f"{where}: qty {order.qty} not on lot {instrument.lot_size}")
    if order.qty < instrument.min_qty:
        return Refusal("min_qty", f"{order.venue} {order.symbol}: qty {order.qty} < min {instrument.min_qty}")
    if not order.reduce_only:
        notional = order.qty * instrument.contract_size * order.price
        if notional < instrument.min_notional:
            return Refusal("min_notional", f"{order.venue} {order.symbol}: {notional} < min notional "
                           f"{instrument.min_notional}")
    return None


def rule_reduce_only(order: OrderRequest, ctx: RiskContext) -> Refusal | None:
    """A reduce-only order must shrink the current position without flipping it."""
    if not order.reduce_only:
        return None
    key = (order.venue, order.symbol)
    position = ctx.positions.get(key, _ZERO)
    delta = signed_base(order, ctx.instruments[key])
    if position == 0 or (position > 0) == (delta > 0) or abs(delta) > abs(position):
        return Refusal(
            "reduce_only", f"{order.venue} {order.symbol}: {order.side} {abs(delta)} does not reduce position {position}"
        )
    return None


# --- account budgets -----------------------------------------------------------------------
def rule_daily_loss(ctx: RiskContext, daily_loss_limit_usdt: Decimal) -> Refusal | None:
    if -ctx.daily_pnl_usdt >= daily_loss_limit_usdt:
        return Refusal("daily_loss_limit", f"today's PnL {ctx.daily_pnl_usdt} USDT, limit -{daily_loss_limit_usdt}")
    return None


def recent_orders(times: deque[float], now: float) -> int:
    """Orders in the last minute (times are appended in order: a binary search for the horizon)."""
    return len(times) - bisect_right(times, now - _MINUTE)


def rule_order_rate(ctx: RiskContext, max_orders_per_minute: int, new_orders: int) -> Refusal | None:
    count = recent_orders(ctx.recent_order_times, ctx.now)
    if count + new_orders > max_orders_per_minute:
        return Refusal(
            "order_rate", f"{count} orders in the last minute + {new_orders} > {max_orders_per_minute}/min"
        )
    return None


def rule_rate_budget(
    orders: Sequence[OrderRequest], budget: OrderBudget | None, now: float, reserve: int = 0
) -> Refusal | None:
    """Every order's venue can take it now within its request limits (entries also keep `reserve`
    orders free there for their repairs), and none goes to a venue whose Retry-After (after a 429 or
    418) still runs: refused, never delayed. Rules `rate_limited` and `rate_budget` (the budget's)."""
    if budget is None:
        return None
    counts: dict[str, int] = {}
    for order in orders:
        counts[order.venue] = counts.get(order.venue, 0) + 1
    for venue, count in counts.items():
        refusal = budget.try_order(venue, count, reserve, now)
        if refusal is not None:
            return refusal
    return None


def rule_unhedged_budget(ctx: RiskContext, budget_usdt_seconds: Decimal) -> Refusal | None:
    if ctx.unhedged_usdt_seconds >= budget_usdt_seconds:
        return Refusal(
            "unhedged_budget", f"{ctx.unhedged_usdt_seconds} USDT*s unhedged today >= {budget_usdt_seconds}"
        )
    return None


def position_deltas(orders: Sequence[OrderRequest], ctx: RiskContext) -> dict[Key, Decimal]:
    """Each (venue, symbol)'s position change in base units if all `orders` filled."""
    return _deltas(orders, ctx)
