"""rule_private_stream: no entry with a leg on a venue whose private stream is down; exits, hedges,
unwinds and flattens (the gate's single-order path) go on over REST regardless."""

from decimal import Decimal as D

import pytest
from market_helpers import BINANCE_BTC, OKX_BTC
from risk_fixtures import EXECUTION, context, entry, risk_settings

from perpbot.core.decisions import Refusal
from perpbot.core.orders import OrderRequest
from perpbot.risk import rules
from perpbot.risk.approved import ApprovedOrder
from perpbot.risk.gate import RiskGate
from perpbot.risk.states import TradingState
from perpbot.telemetry.metrics import Metrics

IDS = ("cid-okx-1", "cid-bin-1")
LONG = {OKX_BTC.key: D("0.09"), BINANCE_BTC.key: D("-0.09")}


def gate() -> RiskGate:
    return RiskGate(risk_settings(), EXECUTION, Metrics())


def order(venue: str, reduce_only: bool = True) -> OrderRequest:
    if venue == "okx":
        return OrderRequest("okx", "BTC-USDT-SWAP", "sell", D("9"), D("59990.0"), "cid-x", reduce_only)
    return OrderRequest("binance", "BTCUSDT", "buy", D("0.09"), D("60100.0"), "cid-y", reduce_only)


# -- the rule on its own ----------------------------------------------------------------------
def test_rule_passes_when_every_venue_of_the_orders_is_live():
    ctx = context(private_streams_down=frozenset({"bybit"}))
    assert rules.rule_private_stream((order("okx"), order("binance")), ctx) is None
    assert rules.rule_private_stream((order("okx"),), context()) is None  # default: nothing down


@pytest.mark.parametrize("down", ["okx", "binance"])
def test_rule_refuses_an_order_on_a_venue_whose_private_stream_is_down(down):
    ctx = context(private_streams_down=frozenset({down}))
    refusal = rules.rule_private_stream((order("okx"), order("binance")), ctx)
    assert isinstance(refusal, Refusal)
    assert refusal.rule == "private_stream_down"
    assert down in refusal.detail


# -- through the gate: entries ------------------------------------------------------------------
def test_entry_is_approved_with_every_private_stream_live():
    approved, refusals = gate().approve_entry(entry(), context(private_streams_down=frozenset()), "i-1", IDS)
    assert refusals == [] and len(approved) == 2


@pytest.mark.parametrize("down", [{"okx"}, {"binance"}, {"okx", "binance"}])
def test_entry_with_a_leg_on_a_venue_whose_private_stream_is_down_is_refused(down):
    ctx = context(private_streams_down=frozenset(down))
    risk_gate = gate()
    approved, refusals = risk_gate.approve_entry(entry(), ctx, "i-1", IDS)
    assert approved == []
    assert [r.rule for r in refusals] == ["private_stream_down"]  # the only rule that fails
    assert len(ctx.recent_order_times) == 0  # nothing recorded for the rate limit
    assert risk_gate.metrics.risk_refusals_total.labels("private_stream_down")._value.get() == 1


def test_entry_is_refused_by_every_failing_rule_including_the_private_stream():
    ctx = context(private_streams_down=frozenset({"okx"}), open_trades=10)
    _, refusals = gate().approve_entry(entry(), ctx, "i-1", IDS)
    assert {r.rule for r in refusals} == {"private_stream_down", "max_open_positions"}


# -- through the gate: single orders (exits and risk reduction go over REST) ----------------------
@pytest.mark.parametrize("purpose, venue, reduce_only, state", [
    ("exit", "okx", True, TradingState.ACTIVE),
    ("exit", "binance", True, TradingState.PAUSED),
    ("flatten", "okx", True, TradingState.REDUCING),
    ("unwind", "binance", True, TradingState.HALTED),
    ("hedge", "binance", False, TradingState.ACTIVE),
])
def test_single_orders_are_not_affected_by_a_private_stream_down(purpose, venue, reduce_only, state):
    ctx = context(state=state, positions=dict(LONG), private_streams_down=frozenset({"okx", "binance"}))
    request = order(venue, reduce_only)
    result = gate().approve_order(request, purpose, ctx, "intent-9")
    assert isinstance(result, ApprovedOrder), result
    assert (result.request, result.purpose) == (request, purpose)
