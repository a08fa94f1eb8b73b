"""RiskGate.approve_order for exits, hedges, unwinds and flattens; breach() reasons for an automatic HALT."""

from collections import deque
from dataclasses import replace
from decimal import Decimal as D

import pytest
from market_helpers import BINANCE_BTC, NOW, OKX_BTC, put_book
from risk_fixtures import EXECUTION, context, risk_settings

from perpbot.core.decisions import Refusal
from perpbot.core.orders import OrderRequest
from perpbot.risk.approved import ApprovedOrder
from perpbot.risk.gate import RiskGate
from perpbot.risk.states import TradingState
from perpbot.telemetry.metrics import Metrics

LONG = {OKX_BTC.key: D("0.09"), BINANCE_BTC.key: D("-0.09")}


def sell_okx(contracts="9", price="59990.0", reduce_only=True):
    return OrderRequest("okx", "BTC-USDT-SWAP", "sell", D(contracts), D(price), "cid-x", reduce_only)


def buy_binance(qty="0.09", price="60100.0", reduce_only=True):
    return OrderRequest("binance", "BTCUSDT", "buy", D(qty), D(price), "cid-y", reduce_only)


def stale(ctx):
    put_book(ctx.store, OKX_BTC, [("59990.0", "1000")], [("60000.0", "1000")], NOW - 30)
    ctx.venue_connected = {"okx": False, "binance": False}


CASES = [
    # (scenario, state, request, purpose, prepare, expected rule or None)
    ("exit while paused", TradingState.PAUSED, sell_okx(), "exit", None, None),
    ("exit while halted", TradingState.HALTED, buy_binance(), "exit", None, None),
    ("entry while reducing", TradingState.REDUCING, sell_okx(reduce_only=False), "entry", None, "trading_state"),
    ("flatten that is not reduce-only", TradingState.ACTIVE, sell_okx(reduce_only=False), "flatten", None,
     "trading_state"),
    ("flatten while halted on a dead feed", TradingState.HALTED, sell_okx(), "flatten", stale, None),
    ("unwind while halted on a dead feed", TradingState.HALTED, buy_binance(), "unwind", stale, None),
    ("hedge of a naked leg while halted", TradingState.HALTED, buy_binance(reduce_only=False), "hedge", stale, None),
    ("exit on a stale book", TradingState.ACTIVE, sell_okx(), "exit", stale, "stale_book"),
    ("reduce-only bigger than the position", TradingState.PAUSED, sell_okx("10"), "exit", None, "reduce_only"),
    ("reduce-only in the position's direction", TradingState.PAUSED,
     OrderRequest("okx", "BTC-USDT-SWAP", "buy", D("1"), D("60000.0"), "c", True), "exit", None, "reduce_only"),
    ("price off the tick", TradingState.ACTIVE, sell_okx(price="59990.05"), "exit", None, "tick_size"),
    ("qty off the lot", TradingState.ACTIVE, buy_binance(qty="0.0905"), "exit", None, "lot_size"),
    ("unknown purpose", TradingState.ACTIVE, sell_okx(), "yolo", None, "trading_state"),
    ("unknown instrument", TradingState.ACTIVE, OrderRequest("okx", "ETH-USDT-SWAP", "sell", D(1), D(1), "c", True),
     "exit", None, "instrument"),
]


@pytest.mark.parametrize("scenario, state, request_, purpose, prepare, rule", CASES, ids=[c[0] for c in CASES])
def test_single_order_rules_by_purpose_and_state(scenario, state, request_, purpose, prepare, rule):
    ctx = context(state=state, positions=dict(LONG))
    if prepare:
        prepare(ctx)
    result = RiskGate(risk_settings(), EXECUTION, Metrics()).approve_order(request_, purpose, ctx, "intent-7")
    if rule is None:
        assert isinstance(result, ApprovedOrder), result
        assert (result.request, result.purpose, result.intent_id) == (request_, purpose, "intent-7")
    else:
        assert isinstance(result, Refusal) and result.rule == rule


def test_reduce_only_dust_below_min_notional_can_still_be_closed_but_not_opened():
    ctx = context(positions={BINANCE_BTC.key: D("-0.001")})
    ctx.instruments[BINANCE_BTC.key] = replace(BINANCE_BTC, min_notional=D("100"))
    risk_gate = RiskGate(risk_settings(), EXECUTION, Metrics())
    dust = buy_binance("0.001", price="60100.0")  # 60.1 USDT < 100
    assert isinstance(risk_gate.approve_order(dust, "flatten", ctx, "i"), ApprovedOrder)
    opening = buy_binance("0.001", price="60100.0", reduce_only=False)
    assert risk_gate.approve_order(opening, "entry", ctx, "i").rule == "min_notional"


def test_exits_respect_the_order_rate_but_flatten_does_not():
    ctx = context(positions=dict(LONG), recent_order_times=deque([NOW - 1] * 60))
    risk_gate = RiskGate(risk_settings(), EXECUTION, Metrics())
    assert risk_gate.approve_order(sell_okx(), "exit", ctx, "i").rule == "order_rate"
    assert isinstance(risk_gate.approve_order(sell_okx(), "flatten", ctx, "i"), ApprovedOrder)


def test_a_trades_exits_are_approved_together_and_a_half_refused_pair_takes_no_order_rate_slot():
    # The OKX exit would pass, the Binance one is refused (it is larger than the short): neither is approved,
    # and the order-rate window is untouched, so a strategy retrying such a close cannot fill it.
    ctx = context(positions=dict(LONG), recent_order_times=deque([NOW - 1] * 10))
    risk_gate = RiskGate(risk_settings(), EXECUTION, Metrics())
    approved, refusals = risk_gate.approve_orders([sell_okx(), buy_binance("0.10")], "exit", ctx, "i")
    assert approved == [] and [r.rule for r in refusals] == ["reduce_only"]
    assert len(ctx.recent_order_times) == 10
    # Both fine: both approved, both recorded.
    approved, refusals = risk_gate.approve_orders([sell_okx(), buy_binance()], "exit", ctx, "i")
    assert refusals == [] and [a.request.venue for a in approved] == ["okx", "binance"]
    assert len(ctx.recent_order_times) == 12


def test_one_order_rate_slot_left_refuses_both_exits_of_a_pair():
    ctx = context(positions=dict(LONG), recent_order_times=deque([NOW - 1] * 59))
    risk_gate = RiskGate(risk_settings(), EXECUTION, Metrics())
    approved, refusals = risk_gate.approve_orders([sell_okx(), buy_binance()], "exit", ctx, "i")
    assert approved == [] and {r.rule for r in refusals} == {"order_rate"}
    assert len(ctx.recent_order_times) == 59
    assert isinstance(risk_gate.approve_order(sell_okx(), "exit", ctx, "i"), ApprovedOrder)


def test_single_entry_order_gets_the_entry_rules():
    ctx = context(open_trades=10)
    result = RiskGate(risk_settings(), EXECUTION, Metrics()).approve_order(
        sell_okx(reduce_only=False), "entry", ctx, "i")
    assert result.rule == "max_open_positions"


@pytest.mark.parametrize(
    "pnl, unhedged, reason",
    [
        ("0", "0", None),
        ("-199.99", "4999", None),
        ("-200", "0", "daily loss limit hit"),
        ("-350", "6000", "daily loss limit hit"),
        ("50", "5000", "unhedged budget exhausted"),
    ],
)
def test_breach_names_the_reason_to_halt(pnl, unhedged, reason):
    ctx = context(daily_pnl_usdt=D(pnl), unhedged_usdt_seconds=D(unhedged))
    found = RiskGate(risk_settings(), EXECUTION, Metrics()).breach(ctx)
    assert (found.split(":")[0] if found else None) == reason
