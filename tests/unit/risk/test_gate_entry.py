"""RiskGate.approve_entry: both legs or none, exact hedge sizes, limit prices on the tick, every rule."""

from collections import deque
from dataclasses import replace
from decimal import Decimal as D

import pytest
from hypothesis import given, settings as hsettings, strategies as st
from market_helpers import BINANCE_BTC, NOW, OKX_BTC, OKX_BTC_FINE, put_book
from risk_fixtures import EXECUTION, context, entry, risk_settings, with_leg

from perpbot.core.orders import OrderRequest
from perpbot.risk.approved import ApprovedOrder
from perpbot.risk.gate import RiskGate
from perpbot.risk.states import TradingState
from perpbot.settings import ExecutionSettings
from perpbot.telemetry.metrics import Metrics

IDS = ("cid-okx-1", "cid-bin-1")


def gate(**risk_overrides) -> RiskGate:
    return RiskGate(risk_settings(**risk_overrides), EXECUTION, Metrics())


def test_entry_within_every_limit_is_approved_as_two_hedged_ioc_orders():
    ctx = context()
    approved, refusals = gate().approve_entry(entry(), ctx, "intent-1", IDS)
    assert refusals == []
    okx, binance = (a.request for a in approved)
    # 0.0999 BTC wanted -> 0.09 on the common grid (1 OKX contract = 0.01 BTC) -> 9 contracts.
    assert okx == OrderRequest("okx", "BTC-USDT-SWAP", "buy", D("9"), D("60061.0"), "cid-okx-1", False, "IOC")
    assert binance == OrderRequest("binance", "BTCUSDT", "sell", D("0.090"), D("60030.0"), "cid-bin-1", False, "IOC")
    assert OKX_BTC.venue_to_base_qty(okx.qty) == binance.qty
    assert [(a.purpose, a.intent_id) for a in approved] == [("entry", "intent-1"), ("entry", "intent-1")]
    assert list(ctx.recent_order_times) == [NOW, NOW]  # recorded for the rate limit


def _set(attr, value):
    def mutate(ctx, decision):
        setattr(ctx, attr, value)
        return decision
    return mutate


def _stale_binance(ctx, decision):
    put_book(ctx.store, BINANCE_BTC, [("60090.0", "10")], [("60100.0", "10")], NOW - 3)
    return decision


def _invalid_okx(ctx, decision):
    ctx.store.get("okx", "BTC-USDT-SWAP").invalidate("checksum")
    return decision


def _instrument(key, **changes):
    def mutate(ctx, decision):
        ctx.instruments[key] = replace(ctx.instruments[key], **changes)
        return decision
    return mutate


REFUSED = [
    ("trading_state", _set("state", TradingState.PAUSED), {}),
    ("trading_state", _set("state", TradingState.HALTED), {}),
    ("trading_state", _set("state", TradingState.REDUCING), {}),
    ("max_position_size_usdt", lambda c, d: d, {"max_position_size_usdt": D("5000")}),
    ("max_position_size_usdt", _set("positions", {OKX_BTC.key: D("0.1")}), {"max_position_size_usdt": D("9000")}),
    # 5.4x also leaves the leg ~18 % from liquidation: the margin rule is eased to see max_leverage alone.
    ("max_leverage", _set("equity_usdt", {"okx": D("1000"), "binance": D("10000")}), {"liquidation_entry_min_pct": D("15")}),
    ("capital_utilization", _set("used_margin_usdt", {"okx": D("7000"), "binance": D("8000")}), {}),
    ("max_open_positions", _set("open_trades", 10), {}),
    ("min_edge", lambda c, d: replace(d, edge_bps=D("4.99")), {}),
    ("stale_book", _stale_binance, {}),
    ("stale_book", _invalid_okx, {}),
    ("venue_disconnected", _set("venue_connected", {"okx": True, "binance": False}), {}),
    ("venue_disconnected", _set("venue_connected", {"okx": True}), {}),
    ("lot_size", lambda c, d: with_leg(with_leg(d, 0, base_qty=D("0.005")), 1, base_qty=D("0.005")), {}),
    ("min_qty", _instrument(OKX_BTC.key, min_qty=D("10")), {}),
    ("min_notional", _instrument(BINANCE_BTC.key, min_notional=D("5500")), {}),
    ("daily_loss_limit", _set("daily_pnl_usdt", D("-200")), {}),
    ("order_rate", _set("recent_order_times", deque([NOW - 1] * 59)), {}),
    ("unhedged_budget", _set("unhedged_usdt_seconds", D("5000")), {}),
    ("hedge_shape", lambda c, d: with_leg(d, 1, side="buy"), {}),
    ("hedge_shape", lambda c, d: with_leg(d, 1, venue="okx", symbol="BTC-USDT-SWAP"), {}),
    ("instrument", lambda c, d: with_leg(d, 1, symbol="BTCUSDC"), {}),
]


@pytest.mark.parametrize("rule, mutate, risk_overrides", REFUSED, ids=[f"{r[0]}-{i}" for i, r in enumerate(REFUSED)])
def test_entry_breaking_one_rule_is_refused_with_no_leg_approved(rule, mutate, risk_overrides, caplog):
    ctx = context()
    decision = mutate(ctx, entry())
    risk_gate = gate(**risk_overrides)
    approved, refusals = risk_gate.approve_entry(decision, ctx, "intent-x", IDS)
    assert approved == []
    assert [r.rule for r in refusals] == [rule]
    sample = risk_gate.metrics.registry.get_sample_value("perpbot_risk_refusals_total", {"reason": rule})
    assert sample == 1.0
    lines = [rec.getMessage() for rec in caplog.records if rec.getMessage().startswith("Risk refusal:")]
    assert lines == [f"Risk refusal: {rule}: {refusals[0].detail}"]
    assert len(ctx.recent_order_times) == (59 if rule == "order_rate" else 0)


@pytest.mark.parametrize(
    "passes, mutate, risk_overrides",
    [
        ("position just under the limit", lambda c, d: d, {"max_position_size_usdt": D("5400")}),
        ("leverage exactly 3x", _set("equity_usdt", {"okx": D("1800"), "binance": D("10000")}), {}),
        ("utilisation at 80%", _set("used_margin_usdt", {"okx": D("6000"), "binance": D("6400")}), {}),
        ("nine trades open", _set("open_trades", 9), {}),
        ("edge exactly at minimum", lambda c, d: replace(d, edge_bps=D("5")), {}),
        ("book 2 s old", _set("now", NOW + 2), {}),
        ("loss under the limit", _set("daily_pnl_usdt", D("-199.99")), {}),
        ("58 orders this minute", _set("recent_order_times", deque([NOW - 1] * 58)), {}),
        ("old orders fall out of the window", _set("recent_order_times", deque([NOW - 61] * 100)), {}),
        ("unhedged budget not used up", _set("unhedged_usdt_seconds", D("4999.99")), {}),
    ],
)
def test_entry_at_the_edge_of_each_limit_is_approved(passes, mutate, risk_overrides):
    ctx = context()
    decision = mutate(ctx, entry())
    approved, refusals = gate(**risk_overrides).approve_entry(decision, ctx, "intent-ok", IDS)
    assert refusals == [], passes
    assert len(approved) == 2


def test_entry_breaking_several_rules_reports_each_once_and_approves_nothing():
    ctx = context(state=TradingState.PAUSED, open_trades=10, daily_pnl_usdt=D("-500"))
    approved, refusals = gate().approve_entry(entry(), ctx, "i", IDS)
    assert approved == []
    assert sorted(r.rule for r in refusals) == ["daily_loss_limit", "max_open_positions", "trading_state"]


def test_approved_order_cannot_be_built_outside_the_gate():
    request = OrderRequest("okx", "BTC-USDT-SWAP", "buy", D("1"), D("60000.0"), "cid")
    with pytest.raises(PermissionError):
        ApprovedOrder(object(), request, "entry", "intent")


@hsettings(max_examples=150, deadline=None)
@given(
    wanted=st.decimals(min_value=D("0.01"), max_value=D("5"), places=6),
    fine=st.booleans(),
)
def test_entry_legs_hold_equal_base_quantities_on_both_lot_grids(wanted, fine):
    okx = OKX_BTC_FINE if fine else OKX_BTC
    ctx = context(okx=okx, equity_usdt={"okx": D("10") ** 7, "binance": D("10") ** 7})
    risk_gate = gate(max_position_size_usdt=D("10") ** 7)
    approved, refusals = risk_gate.approve_entry(entry(qty=str(wanted)), ctx, "i", IDS)
    assert refusals == []
    okx_order, binance_order = (a.request for a in approved)
    base = okx.venue_to_base_qty(okx_order.qty)
    assert base == binance_order.qty  # the legs hedge exactly
    assert okx.on_lot(okx_order.qty) and BINANCE_BTC.on_lot(binance_order.qty)
    step = D("0.001") if fine else D("0.01")  # coarser of 0.0001 (fine OKX) / 0.01 (OKX) and 0.001
    assert base <= wanted < base + step


@hsettings(max_examples=200, deadline=None)
@given(
    ref_ticks=st.integers(min_value=10_000, max_value=2_000_000),
    slippage=st.decimals(min_value=D("0"), max_value=D("100"), places=2),
)
def test_limit_prices_are_on_the_tick_and_inside_the_slippage_band(ref_ticks, slippage):
    risk_gate = RiskGate(risk_settings(), ExecutionSettings(slippage_bps=slippage), Metrics())
    ref = ref_ticks * OKX_BTC.tick_size
    band = slippage / D(10000)
    buy = risk_gate.limit_price(OKX_BTC, "buy", ref)
    sell = risk_gate.limit_price(OKX_BTC, "sell", ref)
    assert OKX_BTC.on_tick(buy) and OKX_BTC.on_tick(sell)
    assert ref <= buy <= ref * (1 + band)
    assert ref * (1 - band) <= sell <= ref


def test_a_persisting_refusal_is_counted_every_time_but_logged_once_per_interval(caplog):
    ctx = context()
    decision = with_leg(entry(), 1, symbol="BTCUSDC")  # unknown instrument: refused every time
    risk_gate = gate()
    for _ in range(50):
        risk_gate.approve_entry(decision, ctx, "intent-x", IDS)
    sample = risk_gate.metrics.registry.get_sample_value("perpbot_risk_refusals_total", {"reason": "instrument"})
    assert sample == 50.0
    lines = [rec.getMessage() for rec in caplog.records if rec.getMessage().startswith("Risk refusal:")]
    assert len(lines) == 1
