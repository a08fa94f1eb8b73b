"""Reconciler, Recovery/StartupRepair and OperatorCommands on an in-memory desk (no SQLite, no venue)."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D
from types import SimpleNamespace

from engine_fakes import OKX, journal, make_desk, ready, venue

from perpbot.core.orders import OrderRequest, VenuePosition
from perpbot.execution.commands import OperatorCommands, flatten_status
from perpbot.execution.desk import STARTING_REASON
from perpbot.execution.interrupted import StartupRepair, leg_against_venue
from perpbot.execution.orders import OrderLifecycle
from perpbot.execution.reconciler import Reconciler
from perpbot.execution.recovery import Recovery
from perpbot.execution.repair import LegRepair
from perpbot.execution.states import TradingStates
from perpbot.execution.trade_book import TradeBook
from testkit import approved


def build(desk):
    states, orders, book = TradingStates(desk), OrderLifecycle(desk), TradeBook(desk)
    repair = LegRepair(desk, orders, states, book)
    reconciler = Reconciler(desk, orders, states, book, lambda: [])
    startup = StartupRepair(desk, repair, book, states)
    recovery = Recovery(desk, reconciler, startup, states, reconciler.reconcile)
    commands = OperatorCommands(desk, orders, states, reconciler.reconcile)
    return SimpleNamespace(states=states, reconciler=reconciler, startup=startup, recovery=recovery, commands=commands)


async def test_reconcile_adopts_the_venue_positions_and_a_failing_venue_stays_unreconciled():
    desk = make_desk()
    venue(desk, "okx").positions = [VenuePosition("okx", OKX.symbol, D("0.02"), D("30000"), mark_price=D("30001"))]
    venue(desk, "hyperliquid").fail_reads = True
    report = await build(desk).reconciler.reconcile()
    assert desk.portfolio.positions[("okx", OKX.symbol)].size == D("0.02")
    assert desk.portfolio.marks[("okx", OKX.symbol)] == D("30001")
    assert desk.reconciled == {"okx": True, "hyperliquid": False}
    assert report["errors"] == {"hyperliquid": "503"} and [c["kind"] for c in report["changed"]] == ["position"]


async def test_an_unresolved_order_is_settled_from_the_venue_answer():
    desk = make_desk()
    request = OrderRequest("okx", OKX.symbol, "buy", D(2), D("30000"), "c1")
    await journal(desk).record_order(request, "entry", "i1")
    await venue(desk, "okx").place_order(approved(request))  # the venue has it; the journal still says pending
    report = await build(desk).reconciler.reconcile()
    assert journal(desk).orders[("okx", "c1")].status == "filled"
    assert {"kind": "order", "venue": "okx", "client_order_id": "c1", "from": "pending", "to": "filled",
            "filled_qty": "2"} in report["changed"]


async def test_funding_is_booked_once_and_the_cursor_moves():
    desk = make_desk()
    venue(desk, "okx").payments = [SimpleNamespace(symbol=OKX.symbol, payment_id="p1", amount=D("1.5"), ts_ms=5_000)]
    reconciler = build(desk).reconciler
    assert len(await reconciler.sync_funding("okx", venue(desk, "okx"))) == 1
    assert await reconciler.sync_funding("okx", venue(desk, "okx")) == []
    assert desk.funding_cursor_ms == {"okx": 5_000}


async def test_periodic_makes_a_starting_bot_active_once_every_venue_is_reconciled():
    desk = make_desk()
    assert desk.state_reason == STARTING_REASON
    await build(desk).reconciler.periodic()
    assert desk.state == "ACTIVE"


async def test_start_with_an_empty_journal_trades_after_reconciliation():
    desk = make_desk()
    parts = build(desk)
    report = await parts.recovery.start()
    assert desk.state == "ACTIVE" and report["repaired"] == [] and report["trades_checked"] == []
    await asyncio.wait_for(parts.recovery.startup_funding, 1)


async def test_start_restores_a_halt_of_the_last_run():
    desk = make_desk()
    journal(desk).last_states = [{"to": "HALTED", "reason": "daily loss", "actor": "risk"}]
    await build(desk).recovery.start()
    assert desk.state == "HALTED" and desk.state_reason == "restored after restart: daily loss"


async def test_an_interrupted_entry_with_one_leg_filled_is_hedged_at_start_up():
    desk = make_desk()
    from perpbot.execution.client_ids import client_order_id

    intent_id = "intent-x"
    a = OrderRequest("okx", OKX.symbol, "buy", D(2), D("30000"), client_order_id("okx", intent_id, "a", 0))
    b = OrderRequest("hyperliquid", "BTC", "sell", D("0.02"), D("29995"), client_order_id("hyperliquid", intent_id, "b", 0))
    legs = [{"venue": "okx", "symbol": OKX.symbol, "side": "buy", "base_qty": "0.02", "ref_price": "30000"},
            {"venue": "hyperliquid", "symbol": "BTC", "side": "sell", "base_qty": "0.02", "ref_price": "29995"}]
    await journal(desk).record_intent(intent_id, "price_spread", "open", "BTC", {"legs": legs},
                                      [(a, "entry"), (b, "entry")])
    await venue(desk, "okx").place_order(approved(a))  # filled before the crash; the HL leg never left
    venue(desk, "okx").positions = [VenuePosition("okx", OKX.symbol, D("0.02"), D("30000"))]
    report = await build(desk).recovery.start()
    [repaired] = report["repaired"]
    assert repaired["intent_id"] == intent_id and repaired["outcome"] == "recovered"
    [hedge] = venue(desk, "hyperliquid").placed  # the leg that never left is hedged, never left naked
    assert hedge.side == "sell" and hedge.qty == D("0.02")
    assert [leg["base_qty"] for leg in desk.open_trades[intent_id]["legs"]] == ["0.02", "0.02"]
    [(finished, label, change)] = journal(desk).finished
    assert (finished, label, change.kind) == (intent_id, "recovered", "open")


def test_a_trade_leg_against_the_venue():
    leg = {"venue": "okx", "symbol": OKX.symbol, "side": "sell", "base_qty": "0.02"}
    assert leg_against_venue(leg, D("-0.02")) == (None, None)
    adopted, problem = leg_against_venue(leg, D("-0.01"))
    assert adopted["base_qty"] == "0.01" and problem is None
    assert leg_against_venue(leg, D("0.01"))[1] is not None  # the other way round: nothing explains it
    assert leg_against_venue(leg, D("-0.03"))[1] is not None  # more than the trade


async def test_the_start_up_check_halts_on_a_position_nothing_explains():
    desk = ready(make_desk())
    desk.open_trades["t1"] = {"trade_id": "t1", "strategy": "s", "base": "BTC", "legs": [
        {"venue": "okx", "symbol": OKX.symbol, "side": "buy", "base_qty": "0.02", "ref_price": "30000"},
        {"venue": "hyperliquid", "symbol": "BTC", "side": "sell", "base_qty": "0.02", "ref_price": "29995"}]}
    desk.portfolio.set_position("okx", OKX.symbol, D("0.05"), D("30000"))
    desk.portfolio.set_position("hyperliquid", "BTC", D("-0.02"), D("29995"))
    await build(desk).startup.check_trades_against_venues()
    assert desk.state == "HALTED" and "start-up check" in desk.state_reason


async def test_resume_waits_for_reconciliation_and_pause_cancels_working_orders():
    desk = make_desk()
    commands = build(desk).commands
    answer = await commands.resume()
    assert not answer["resumed"] and "not reconciled" in answer["reason"]
    ready(desk)
    venue(desk, "okx").open_orders = [await venue(desk, "okx").place_order(
        approved(OrderRequest("okx", OKX.symbol, "buy", D(1), D("1"), "w1")))]
    paused = await commands.pause("")
    assert paused["state"] == "PAUSED" and venue(desk, "okx").canceled == ["w1"]
    assert (await commands.resume())["resumed"] and desk.state == "ACTIVE"


async def test_close_all_flattens_reduce_only_and_closes_flat_trades():
    desk = ready(make_desk())
    venue(desk, "okx").positions = [VenuePosition("okx", OKX.symbol, D("0.02"), D("30000"))]
    desk.open_trades["t1"] = {"trade_id": "t1", "legs": [{"venue": "hyperliquid", "symbol": "BTC"}]}
    answer = await build(desk).commands.close_all()
    [result] = answer["results"]
    assert result["status"] == "closed" and desk.state == "REDUCING"
    flatten = venue(desk, "okx").placed[-1]
    assert flatten.side == "sell" and flatten.reduce_only and flatten.qty == 2
    assert journal(desk).closed_trades == ["t1"] and desk.open_trades == {}


async def test_drain_waits_for_the_trade_in_flight_within_its_grace():
    desk = make_desk()
    commands = build(desk).commands
    await desk.trade_lock.acquire()
    assert not await commands.drain(0.01) and desk.stopping
    desk.trade_lock.release()
    assert await commands.drain(0.01)


def test_flatten_status():
    assert flatten_status(D(0), False, False) == "closed"
    assert flatten_status(D(1), True, False) == "rejected"
    assert flatten_status(D(1), False, True) == "unknown"
    assert flatten_status(D(1), False, False) == "partial"
