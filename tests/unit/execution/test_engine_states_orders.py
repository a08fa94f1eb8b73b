"""TradingStates and OrderLifecycle on an in-memory desk (no SQLite, no venue)."""

from __future__ import annotations

import dataclasses
from decimal import Decimal as D

from engine_fakes import OKX, journal, make_desk, ready, venue

from perpbot.execution.orders import OrderLifecycle
from perpbot.execution.states import TradingStates
from perpbot.risk.context import RiskContext
from perpbot.risk.states import TradingState


async def test_a_move_is_journalled_and_shown_in_the_metric():
    desk = make_desk()
    states = TradingStates(desk)
    assert await states.set_state("ACTIVE", "reconciled", "recovery")
    assert (desk.state, desk.state_reason) == ("ACTIVE", "reconciled")
    assert journal(desk).states == [("PAUSED", "ACTIVE", "reconciled", "recovery")]
    assert desk.metrics.trading_state.labels("ACTIVE")._value.get() == 1
    assert desk.metrics.trading_state.labels("PAUSED")._value.get() == 0


async def test_a_refused_move_is_journalled_and_changes_nothing():
    desk = make_desk()
    states = TradingStates(desk)
    await states.set_state("HALTED", "breach", "risk")
    assert not await states.set_state("REDUCING", "close-all", "operator")  # HALTED leaves only by the operator
    assert desk.state == "HALTED"
    previous, new, reason, _ = journal(desk).states[-1]
    assert (previous, new) == ("HALTED", "HALTED") and reason.startswith("refused REDUCING")


def test_the_risk_context_carries_every_fact_of_the_desk():
    desk = ready(make_desk())
    desk.portfolio.set_position("okx", OKX.symbol, D("0.02"), D("30000"))
    desk.open_trades["t1"] = {"trade_id": "t1", "legs": []}
    ctx = TradingStates(desk).risk_context()
    assert isinstance(ctx, RiskContext)
    assert ctx.state is TradingState.ACTIVE
    assert ctx.positions == {("okx", OKX.symbol): D("0.02")}
    assert ctx.mark_prices[("okx", OKX.symbol)] == D("29995")  # the book's mid
    assert ctx.open_trades == 1
    assert ctx.equity_usdt == {"okx": D("10000"), "hyperliquid": D("10000")}
    assert ctx.venue_connected == {"okx": True, "hyperliquid": True}
    assert ctx.leverage == {v: desk.settings.risk.max_leverage for v in desk.clients}
    assert ctx.recent_order_times is desk.recent_order_times  # the gate appends to the desk's own
    assert ctx.store is desk.store and ctx.instruments is desk.instruments


async def test_a_breach_halts_once():
    desk = ready(make_desk())
    desk.unhedged_usdt_seconds = D(10) ** 12
    states = TradingStates(desk)
    await states.check_breach()
    assert desk.state == "HALTED" and desk.state_reason.startswith("risk breach")
    await states.check_breach()
    assert len(journal(desk).states) == 1


def request(desk, cid="c1", qty="2", side="buy"):
    from perpbot.core.orders import OrderRequest

    return OrderRequest("okx", OKX.symbol, side, D(qty), D("30000"), cid)


class Approved:  # the lifecycle reads .request and .purpose only
    def __init__(self, request, purpose="entry"):
        self.request, self.purpose = request, purpose


async def test_a_filled_order_is_settled_once_into_journal_and_portfolio():
    desk = make_desk()
    orders = OrderLifecycle(desk)
    req = request(desk)
    await journal(desk).record_order(req, "entry", "i1")
    sent = await orders.send(Approved(req), "s")
    assert sent.filled_base == D("0.02") and not sent.rejected and not sent.unknown  # 2 contracts of 0.01
    assert desk.portfolio.positions[("okx", OKX.symbol)].size == D("0.02")
    assert journal(desk).orders[("okx", "c1")].status == "filled"
    assert desk.in_flight == {} and desk.order_fills == {}  # a final order's cache is dropped
    again = await orders.settle(req, venue(desk, "okx").known["c1"], "s")  # the same answer again
    # The order's fill is reported as it is (0.02), and nothing is booked a second time.
    assert again.filled_base == D("0.02") and desk.portfolio.positions[("okx", OKX.symbol)].size == D("0.02")
    assert len(desk.portfolio.fills) == 1


async def test_a_rejected_order_is_journalled_rejected():
    desk = make_desk(script_okx=["reject"])
    req = request(desk)
    await journal(desk).record_order(req, "entry", "i1")
    sent = await OrderLifecycle(desk).send(Approved(req), "s")
    assert sent.rejected and sent.filled_base == 0
    assert journal(desk).orders[("okx", "c1")].status == "rejected"


async def test_a_lost_answer_is_resolved_by_client_id_never_resent():
    desk = make_desk(script_okx=["lost"])
    req = request(desk)
    await journal(desk).record_order(req, "entry", "i1")
    sent = await OrderLifecycle(desk).send(Approved(req), "s")
    assert len(venue(desk, "okx").placed) == 1
    assert sent.filled_base == D("0.02") and journal(desk).orders[("okx", "c1")].status == "filled"


async def test_an_order_the_venue_never_saw_is_not_found(monkeypatch):
    import asyncio

    desk = make_desk()
    req = request(desk)
    await journal(desk).record_order(req, "entry", "i1")

    async def no_sleep(_):
        return None

    monkeypatch.setattr(asyncio, "sleep", no_sleep)
    sent = await OrderLifecycle(desk).resolve(req, "s")
    assert sent.error == "not found at venue" and journal(desk).orders[("okx", "c1")].status == "not_found"


def test_the_corrective_price_reaches_further_each_attempt():
    desk = make_desk(slippage_bps=D("25"), repair_slippage_bps=D("25"))
    orders = OrderLifecycle(desk)
    assert orders.aggressive_price("okx", OKX.symbol, "buy", D("1"), attempt=1) == D("30075.0")
    assert orders.aggressive_price("okx", OKX.symbol, "buy", D("1"), attempt=3) == D("30300.0")
    desk.store.get("okx", OKX.symbol).invalidate("gap")
    assert orders.aggressive_price("okx", OKX.symbol, "sell", D("29000"), attempt=1) == D("28927.5")  # fallback
    assert dataclasses.is_dataclass(desk)
