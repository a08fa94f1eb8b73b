"""rule_rate_budget through the gate: an order the venue's request budget cannot take now is refused
(counted by reason), never delayed; an entry keeps room for its repairs; while a venue's Retry-After runs
every order there is refused, risk-reducing ones included; the per-minute order limit still applies."""

from collections import deque
from decimal import Decimal as D

import pytest
from market_helpers import BINANCE_BTC, NOW, OKX_BTC
from risk_fixtures import EXECUTION, context, entry, risk_settings

from perpbot.core.orders import OrderRequest
from perpbot.execution.rate_budget import ORDER, RateBudget
from perpbot.execution.rate_limits import venue_limits
from perpbot.risk import rules
from perpbot.risk.approved import ApprovedOrder
from perpbot.risk.gate import RiskGate
from perpbot.risk.states import TradingState
from perpbot.telemetry.metrics import Metrics

IDS = ("cid-okx-1", "cid-bin-1")
LONG = {OKX_BTC.key: D("0.09"), BINANCE_BTC.key: D("-0.09")}


def budget() -> RateBudget:
    return RateBudget(venue_limits(), clock=lambda: NOW)


def gate(rate_budget: RateBudget | None) -> RiskGate:
    return RiskGate(risk_settings(), EXECUTION, Metrics(), rate_budget)


def refusals_counted(risk_gate: RiskGate, rule: str) -> float:
    return risk_gate.metrics.risk_refusals_total.labels(rule)._value.get()


def fill_okx_order_window(b: RateBudget, leave: int) -> None:
    """OKX allows 60 new orders per 2 s (rolling): use all but `leave` of them just now."""
    for _ in range(60 - leave):
        b.charge("okx", ORDER, now=NOW - 0.5)


def test_entry_is_approved_with_room_on_both_venues():
    approved, refusals = gate(budget()).approve_entry(entry(), context(), "i-1", IDS)
    assert refusals == [] and len(approved) == 2


def test_entry_is_refused_when_a_venue_cannot_also_take_its_repairs():
    b = budget()
    fill_okx_order_window(b, leave=4)  # 1 order + 4 kept for repairs = 5 > 4 left
    risk_gate = gate(b)
    ctx = context()
    approved, refusals = risk_gate.approve_entry(entry(), ctx, "i-1", IDS)
    assert approved == []
    assert [r.rule for r in refusals] == ["rate_budget"]
    assert "okx order_2s: 56 used + 1 > 60 per 2s, keeping 4 for repairs" in refusals[0].detail
    assert refusals_counted(risk_gate, "rate_budget") == 1
    assert len(ctx.recent_order_times) == 0


def test_a_hedge_may_use_the_room_an_entry_keeps():
    b = budget()
    fill_okx_order_window(b, leave=1)
    request = OrderRequest("okx", "BTC-USDT-SWAP", "sell", D("9"), D("59990.0"), "cid-h", False)
    result = gate(b).approve_order(request, "hedge", context(positions=dict(LONG)), "intent-1")
    assert isinstance(result, ApprovedOrder)


@pytest.mark.parametrize("purpose, reduce_only, state", [
    ("entry", False, TradingState.ACTIVE),
    ("exit", True, TradingState.ACTIVE),
    ("hedge", False, TradingState.ACTIVE),
    ("unwind", True, TradingState.HALTED),
    ("flatten", True, TradingState.REDUCING),
])
def test_every_order_on_a_venue_under_retry_after_is_refused_with_the_reason(purpose, reduce_only, state):
    b = budget()
    b.observe("binance", 418, {"Retry-After": "120"}, ORDER, now=NOW - 10)
    risk_gate = gate(b)
    request = OrderRequest("binance", "BTCUSDT", "buy", D("0.09"), D("60100.0"), "cid-y", reduce_only)
    result = risk_gate.approve_order(request, purpose, context(state=state, positions=dict(LONG)), "intent-2")
    assert not isinstance(result, ApprovedOrder)
    assert result.rule == "rate_limited"
    assert "HTTP 418 (Retry-After 120s)" in result.detail and "110.0s of its Retry-After left" in result.detail
    assert refusals_counted(risk_gate, "rate_limited") == 1


def test_after_the_retry_after_the_venue_takes_orders_again():
    b = budget()
    b.observe("okx", 429, {"Retry-After": "1"}, ORDER, now=NOW - 1.0)
    approved, refusals = gate(b).approve_entry(entry(), context(), "i-1", IDS)
    assert refusals == [] and len(approved) == 2


def test_entry_refusals_list_the_budget_beside_the_other_failing_rules():
    b = budget()
    b.observe("okx", 429, {"Retry-After": "5"}, ORDER, now=NOW)
    _, refusals = gate(b).approve_entry(entry(), context(open_trades=10), "i-1", IDS)
    assert {r.rule for r in refusals} == {"rate_limited", "max_open_positions"}


def test_the_per_minute_order_limit_still_applies_with_a_budget():
    ctx = context(recent_order_times=deque([NOW - 1.0] * 59))
    _, refusals = gate(budget()).approve_entry(entry(), ctx, "i-1", IDS)
    assert [r.rule for r in refusals] == ["order_rate"]


def test_without_a_budget_the_rule_passes():
    assert rules.rule_rate_budget((), None, NOW) is None
    approved, refusals = gate(None).approve_entry(entry(), context(), "i-1", IDS)
    assert refusals == [] and len(approved) == 2


def test_two_orders_on_one_venue_are_asked_together():
    b = budget()
    fill_okx_order_window(b, leave=1)
    request = OrderRequest("okx", "BTC-USDT-SWAP", "sell", D("9"), D("59990.0"), "cid-a", False)
    refusal = rules.rule_rate_budget((request, request), b, NOW)
    assert refusal is not None and "59 used + 2 > 60" in refusal.detail
