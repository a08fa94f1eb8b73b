"""Builders for risk tests: a healthy two-venue account and a profitable entry decision."""

from collections import deque
from dataclasses import replace
from decimal import Decimal as D

from market_helpers import BINANCE_BTC, NOW, OKX_BTC, instruments_map, put_book

from perpbot.book.store import BookStore
from perpbot.core.decisions import Decision, Leg
from perpbot.risk.context import RiskContext
from perpbot.risk.states import TradingState
from perpbot.settings import ExecutionSettings, RiskSettings


def risk_settings(**overrides) -> RiskSettings:
    values = dict(max_position_size_usdt=D("10000"), max_leverage=D("3"), max_capital_utilization_percent=D("80"),
                  max_open_positions=10, min_edge_bps=D("5"), daily_loss_limit_usdt=D("200"),
                  max_orders_per_minute=60, unhedged_budget_usdt_seconds=D("5000"), max_book_age_s=2.0)
    values.update(overrides)
    return RiskSettings(**values)


EXECUTION = ExecutionSettings(slippage_bps=D("10"))


def context(okx=OKX_BTC, binance=BINANCE_BTC, **overrides) -> RiskContext:
    store = BookStore(stale_after_s=5.0)
    put_book(store, okx, [("59990.0", "1000")], [("60000.0", "1000")])
    put_book(store, binance, [("60090.0", "10")], [("60100.0", "10")])
    values = dict(
        state=TradingState.ACTIVE,
        now=NOW,
        equity_usdt={"okx": D("10000"), "binance": D("10000")},
        used_margin_usdt={"okx": D("0"), "binance": D("0")},
        positions={},
        mark_prices={okx.key: D("60000"), binance.key: D("60000")},
        open_trades=0,
        daily_pnl_usdt=D("0"),
        recent_order_times=deque(),
        unhedged_usdt_seconds=D("0"),
        venue_connected={"okx": True, "binance": True},
        store=store,
        instruments=instruments_map(okx, binance),
        leverage={"okx": D("3"), "binance": D("3")},
    )
    values.update(overrides)
    return RiskContext(**values)


def entry(qty="0.0999", edge_bps="10", buy_ref="60001.0", sell_ref="60090.0") -> Decision:
    legs = (
        Leg("okx", "BTC-USDT-SWAP", "buy", D(qty), D(buy_ref)),
        Leg("binance", "BTCUSDT", "sell", D(qty), D(sell_ref)),
    )
    return Decision("price_spread", "open", "BTC", legs, D(edge_bps), D("5"), "test")


def with_leg(decision: Decision, index: int, **changes) -> Decision:
    legs = list(decision.legs)
    legs[index] = replace(legs[index], **changes)
    return replace(decision, legs=tuple(legs))
