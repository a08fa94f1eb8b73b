"""Each risk rule on its own: one order that breaks it is refused, one that does not passes."""

from collections import deque
from decimal import Decimal as D

import pytest
from market_helpers import BINANCE_BTC, NOW, OKX_BTC
from risk_fixtures import context

from perpbot.core.orders import OrderRequest
from perpbot.risk import rules
from perpbot.risk.states import TradingState


def okx(side, contracts, price="60000.0", reduce_only=False):
    return OrderRequest("okx", "BTC-USDT-SWAP", side, D(contracts), D(price), "c", reduce_only)


def binance(side, qty, price="60000.0", reduce_only=False):
    return OrderRequest("binance", "BTCUSDT", side, D(qty), D(price), "c", reduce_only)


GRID = [
    ("on grid", okx("buy", "9", "60000.1"), OKX_BTC, None),
    ("price off tick", okx("buy", "9", "60000.15"), OKX_BTC, "tick_size"),
    ("zero price", okx("buy", "9", "0"), OKX_BTC, "tick_size"),
    ("half a contract", okx("buy", "9.5"), OKX_BTC, "lot_size"),
    ("zero qty", binance("buy", "0"), BINANCE_BTC, "lot_size"),
    ("binance qty off 0.001", binance("buy", "0.0105"), BINANCE_BTC, "lot_size"),
    ("binance under min notional", binance("buy", "0.001", "4000.0"), BINANCE_BTC, "min_notional"),
    ("reduce-only exempt from min notional", binance("buy", "0.001", "4000.0", True), BINANCE_BTC, None),
]


@pytest.mark.parametrize("scenario, order, instrument, rule", GRID, ids=[g[0] for g in GRID])
def test_order_grid_rule(scenario, order, instrument, rule):
    found = rules.rule_order_grid(order, instrument)
    assert (found.rule if found else None) == rule


def test_order_grid_rule_refuses_below_min_qty():
    from dataclasses import replace

    strict = replace(OKX_BTC, min_qty=D("2"))
    assert rules.rule_order_grid(okx("buy", "1"), strict).rule == "min_qty"
    assert rules.rule_order_grid(okx("buy", "2"), strict) is None


def test_position_size_counts_the_resulting_position_and_lets_reductions_through():
    ctx = context(positions={OKX_BTC.key: D("0.15")})  # 9000 USDT at mark 60000
    limit = D("10000")
    assert rules.rule_max_position_size([okx("buy", "1")], ctx, limit) is None  # 0.16 -> 9600
    assert rules.rule_max_position_size([okx("buy", "2")], ctx, limit).rule == "max_position_size_usdt"  # 10200
    assert rules.rule_max_position_size([okx("sell", "1")], ctx, D("100")) is None  # shrinking
    assert rules.rule_max_position_size([okx("sell", "40")], ctx, limit).rule == "max_position_size_usdt"  # -0.25


def test_leverage_is_gross_notional_over_venue_equity():
    ctx = context(equity_usdt={"okx": D("3000"), "binance": D("3000")}, positions={OKX_BTC.key: D("0.1")})
    assert rules.rule_max_leverage([okx("buy", "5")], ctx, D("3")) is None  # 0.15 BTC = 9000 = 3x
    assert rules.rule_max_leverage([okx("buy", "6")], ctx, D("3")).rule == "max_leverage"
    assert rules.rule_max_leverage([okx("sell", "5")], ctx, D("1")) is None  # reduces exposure


def test_capital_utilisation_adds_new_margin_at_the_venue_leverage():
    ctx = context(equity_usdt={"okx": D("5000"), "binance": D("5000")},
                  used_margin_usdt={"okx": D("6000"), "binance": D("0")}, leverage={"okx": D("3")})
    assert rules.rule_capital_utilization([okx("buy", "3")], ctx, D("80")) is None  # 6000+600 = 66%
    assert rules.rule_capital_utilization([okx("buy", "15")], ctx, D("80")).rule == "capital_utilization"  # 90%
    # Binance has no leverage set: margin = full notional.
    assert rules.rule_capital_utilization([binance("buy", "0.04")], ctx, D("80")).rule == "capital_utilization"


def test_venue_connection_rule():
    ctx = context(venue_connected={"okx": True, "binance": False})
    assert rules.rule_venue_connected([okx("buy", "1")], ctx) is None
    assert rules.rule_venue_connected([okx("buy", "1"), binance("sell", "0.01")], ctx).rule == "venue_disconnected"


def test_book_rule_uses_the_stricter_of_store_freshness_and_max_book_age():
    ctx = context(now=NOW + 1.5)
    assert rules.rule_book_usable([okx("buy", "1")], ctx, 2.0) is None
    assert rules.rule_book_usable([okx("buy", "1")], ctx, 1.0).rule == "stale_book"
    ctx.now = NOW + 6  # past the store's 5 s even with a lax max age
    assert rules.rule_book_usable([okx("buy", "1")], ctx, 60.0).rule == "stale_book"


def test_order_rate_counts_only_the_last_minute():
    times = deque([NOW - 120, NOW - 61, NOW - 59, NOW - 1])
    assert rules.recent_orders(times, NOW) == 2
    ctx = context(recent_order_times=times)
    assert rules.rule_order_rate(ctx, 3, 1) is None
    assert rules.rule_order_rate(ctx, 3, 2).rule == "order_rate"


@pytest.mark.parametrize(
    "state, purpose, reduce_only, rule",
    [
        (TradingState.ACTIVE, "entry", False, None),
        (TradingState.PAUSED, "entry", False, "trading_state"),
        (TradingState.PAUSED, "exit", True, None),
        (TradingState.REDUCING, "hedge", False, None),
        (TradingState.HALTED, "unwind", True, None),
        (TradingState.HALTED, "flatten", True, None),
        (TradingState.ACTIVE, "flatten", False, "trading_state"),
    ],
)
def test_trading_state_rule(state, purpose, reduce_only, rule):
    found = rules.rule_trading_state(state, purpose, reduce_only)
    assert (found.rule if found else None) == rule


def test_budget_rules_refuse_at_the_limit():
    assert rules.rule_daily_loss(context(daily_pnl_usdt=D("-199")), D("200")) is None
    assert rules.rule_daily_loss(context(daily_pnl_usdt=D("-200")), D("200")).rule == "daily_loss_limit"
    assert rules.rule_unhedged_budget(context(unhedged_usdt_seconds=D("10")), D("11")) is None
    assert rules.rule_unhedged_budget(context(unhedged_usdt_seconds=D("11")), D("11")).rule == "unhedged_budget"
    assert rules.rule_max_open_positions(context(open_trades=2), 3) is None
    assert rules.rule_max_open_positions(context(open_trades=3), 3).rule == "max_open_positions"
    assert rules.rule_min_edge(D("5"), D("5")) is None
    assert rules.rule_min_edge(D("4.9"), D("5")).rule == "min_edge"
