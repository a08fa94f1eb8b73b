"""TwoLegTrades, LegRepair and TradeBook on an in-memory desk (no SQLite, no venue)."""

from __future__ import annotations

import dataclasses
from decimal import Decimal as D

from engine_fakes import HL, OKX, journal, make_desk, open_decision, ready, venue

from perpbot.core.decisions import Decision, Leg
from perpbot.core.orders import OrderRequest
from perpbot.execution.legs import Hedge, LegOutcome, Unwind
from perpbot.execution.orders import OrderLifecycle
from perpbot.execution.repair import LegRepair
from perpbot.execution.states import TradingStates
from perpbot.execution.trade_book import TradeBook, residues_of, resize_or_close, shrunk_legs
from perpbot.execution.trades import TwoLegTrades, outcome_label, target_of


def parts(desk):
    states, orders, book = TradingStates(desk), OrderLifecycle(desk), TradeBook(desk)
    repair = LegRepair(desk, orders, states, book)
    return TwoLegTrades(desk, orders, repair, book, states), repair, book


def trade(trade_id="t1", okx="0.02", hl="0.02"):
    return {"trade_id": trade_id, "strategy": "price_spread", "base": "BTC", "legs": [
        {"venue": "okx", "symbol": OKX.symbol, "side": "buy", "base_qty": okx, "ref_price": "30000"},
        {"venue": "hyperliquid", "symbol": "BTC", "side": "sell", "base_qty": hl, "ref_price": "29995"}]}


async def test_both_legs_filled_open_a_trade_with_the_intent_ended_atomically():
    desk = ready(make_desk())
    trades, _, _ = parts(desk)
    [report] = await trades.on_decisions([open_decision()])
    assert report["outcome"] == "hedged" and report["corrective_orders"] == 0
    [(intent_id, label, change)] = journal(desk).finished
    assert (label, change.kind, change.trade_id) == ("hedged", "open", intent_id)
    assert [leg["base_qty"] for leg in desk.open_trades[intent_id]["legs"]] == ["0.02", "0.02"]
    assert desk.leg_failures == 0


async def test_paused_and_stopping_skip_every_decision():
    desk = ready(make_desk())
    trades, _, _ = parts(desk)
    desk.state = "PAUSED"
    assert (await trades.on_decisions([open_decision()]))[0]["reason"] == "trading state PAUSED"
    desk.state, desk.stopping = "ACTIVE", True
    assert (await trades.on_decisions([open_decision()]))[0]["reason"] == "shutting down"
    assert venue(desk, "okx").placed == []


async def test_an_entry_on_a_venue_symbol_of_an_open_trade_is_skipped():
    desk = ready(make_desk())
    desk.open_trades["t1"] = trade()
    trades, _, _ = parts(desk)
    [report] = await trades.on_decisions([open_decision()])
    assert report == {"outcome": "skipped", "reason": f"okx {OKX.symbol} already in an open trade"}


async def test_a_rejected_leg_is_unwound_and_counted_as_a_leg_failure():
    desk = ready(make_desk(script_hl=["reject"]))
    trades, _, _ = parts(desk)
    [report] = await trades.on_decisions([open_decision()])
    assert report["outcome"] == "unwound" and report["corrective_orders"] == 1
    unwind = venue(desk, "okx").placed[-1]
    assert unwind.side == "sell" and unwind.reduce_only
    assert desk.open_trades == {} and desk.leg_failures == 1
    assert desk.portfolio.positions[("okx", OKX.symbol)].size == 0


async def test_leg_failures_in_a_row_halt():
    desk = ready(make_desk(script_hl=["reject"]))
    desk.settings.risk.max_leg_failures = 1
    trades, _, _ = parts(desk)
    await trades.on_decisions([open_decision()])
    assert desk.state == "HALTED" and "leg repair" in desk.state_reason


def test_an_exit_closes_each_leg_in_full_when_the_legs_differ():
    desk = make_desk()
    desk.open_trades["t1"] = trade(okx="0.02", hl="0.0203")
    trades, _, _ = parts(desk)
    close = Decision(strategy="price_spread", action="close", base="BTC", trade_id="t1", edge_bps=D(0), edge_usdt=D(0),
                     reason="x", legs=(Leg("okx", OKX.symbol, "sell", D("0.02"), D("30000")),
                                       Leg("hyperliquid", "BTC", "buy", D("0.02"), D("29995"))))
    assert trades.exit_sizes(close) == [D("0.02"), D("0.0203")]
    partial = dataclasses.replace(close, legs=tuple(dataclasses.replace(leg, base_qty=D("0.01")) for leg in close.legs))
    assert trades.exit_sizes(partial) == [D("0.01"), D("0.01")]  # a partial exit: as the strategy asked


def test_labels_and_targets():
    assert outcome_label(True, 0, D(1)) == "halted"
    assert outcome_label(False, 0, D(1)) == "hedged" and outcome_label(False, 0, D(0)) == "nothing_filled"
    assert outcome_label(False, 2, D(1)) == "corrected" and outcome_label(False, 2, D(0)) == "unwound"
    requests = [OrderRequest("okx", OKX.symbol, "sell", D(2), D(1), "a"), OrderRequest("hyperliquid", "BTC", "buy", D("0.0203"), D(1), "b")]
    assert target_of("open", requests, [D("0.02"), D("0.0203")]) == 0
    assert target_of("close", requests, [D("0.02"), D("0.0203")]) == D("-0.0003")


def test_residues_and_trade_shapes():
    trades = {"t1": trade(okx="0.02", hl="0.0203"), "t2": trade("t2")}
    assert residues_of(trades) == {("hyperliquid", "BTC"): D("0.0003")}
    legs = shrunk_legs(trades["t1"], {("okx", OKX.symbol): D("0.02"), ("hyperliquid", "BTC"): D("0.03")})
    assert [leg["base_qty"] for leg in legs] == ["0", "0"]  # never below zero
    assert resize_or_close("t1", legs).kind == "close"
    assert resize_or_close("t1", trades["t1"]["legs"]).kind == "resize"


async def test_a_residue_accrues_against_the_unhedged_budget():
    clock = [100.0]
    desk = make_desk()
    desk.clock = lambda: clock[0]
    desk.open_trades["t1"] = trade(okx="0.02", hl="0.0203")
    book = TradeBook(desk)
    book.accrue_residue()
    clock[0] += 10
    book.accrue_residue()
    assert desk.unhedged_usdt_seconds == D("0.0003") * D("30000") * 10  # the HL mid is 30000


async def test_a_quantity_no_venue_can_trade_is_kept_as_a_residue():
    desk = ready(make_desk())
    _, repair, _ = parts(desk)
    requests = [OrderRequest("okx", OKX.symbol, "buy", D(2), D("30000"), "a"),
                OrderRequest("hyperliquid", "BTC", "sell", D("0.02"), D("29995"), "b")]
    outcomes = [LegOutcome(D("0.02"), D("0.02")), LegOutcome(D("0.02"), D("0.02003"))]  # 0.00003 extra on HL
    desk.instruments[HL.key] = dataclasses.replace(HL, min_qty=D("0.001"))
    outcome, attempt, halted = await repair.correct("i1", "s", requests, outcomes)
    assert not halted and outcome.residual == D("-0.00003")
    assert venue(desk, "okx").placed == []  # below one OKX lot (0.01): nothing sent there


def test_corrective_orders_use_fresh_client_ids_and_reduce_only_for_unwinds():
    desk = ready(make_desk())
    desk.portfolio.set_position("okx", OKX.symbol, D("0.02"), D("30000"))
    _, repair, _ = parts(desk)
    requests = [OrderRequest("okx", OKX.symbol, "buy", D(2), D("30000"), "a"),
                OrderRequest("hyperliquid", "BTC", "sell", D("0.02"), D("29995"), "b")]
    chosen, approved = repair.corrective("intent1", requests, Unwind(leg=0, qty=D("0.02")), 1)
    assert approved.request.side == "sell" and approved.request.reduce_only and approved.request.qty == 2
    _, hedge = repair.corrective("intent1", requests, Hedge(leg=1, qty=D("0.02")), 2)
    assert hedge.request.side == "sell" and not hedge.request.reduce_only
    assert approved.request.client_order_id != hedge.request.client_order_id


async def test_out_of_attempts_with_a_remainder_no_venue_can_trade_ends_as_a_residue_not_a_halt():
    """Seen in the crash suite: three partial fills left 0.00002 BTC between the legs after the last
    attempt; below one OKX lot and below Hyperliquid's minimum notional, so no order could ever
    close it. That is a residue (kept and counted), not a naked leg worth a HALT."""
    desk = ready(make_desk(max_hedge_retries=3))
    desk.instruments[HL.key] = dataclasses.replace(HL, min_notional=D("10"))
    _, repair, _ = parts(desk)
    requests = [OrderRequest("okx", OKX.symbol, "buy", D("2"), D("30000"), "a"),
                OrderRequest("hyperliquid", "BTC", "sell", D("0.02"), D("29995"), "b")]
    outcomes = [LegOutcome(D("0.02"), D("0.02")), LegOutcome(D("0.02"), D("0.01998"))]
    action, attempt, halted = await repair.correct("i1", "price_spread", requests, outcomes, start_attempt=3)
    assert not halted and desk.state != "HALTED"
    assert (action.hedged, action.residual) == (D("0.01998"), D("0.00002"))
    # The same remainder where Hyperliquid could take it (no minimum notional): HALT, as before.
    desk2 = ready(make_desk(max_hedge_retries=3))
    _, repair2, _ = parts(desk2)
    outcomes = [LegOutcome(D("0.02"), D("0.02")), LegOutcome(D("0.02"), D("0.01998"))]
    _, _, halted = await repair2.correct("i2", "price_spread", requests, outcomes, start_attempt=3)
    assert halted and desk2.state == "HALTED"


async def test_an_exit_of_a_trade_no_longer_open_is_skipped_not_sent():
    """Crash suite finding: an exit decided before close-all ended the trade reached the venue
    after it and was refused ('does not reduce position 0')."""
    desk = ready(make_desk())
    trades, _, _ = parts(desk)
    stale = Decision(strategy="price_spread", action="close", base="BTC", trade_id="gone",
                     legs=(Leg("okx", OKX.symbol, "sell", D("0.02"), D("29990")),
                           Leg("hyperliquid", "BTC", "buy", D("0.02"), D("30005"))),
                     edge_bps=D("0"), edge_usdt=D("0"), reason="converged")
    [report] = await trades.on_decisions([stale])
    assert report == {"outcome": "skipped", "reason": "trade gone is no longer open"}
    assert venue(desk, "okx").placed == [] and venue(desk, "hyperliquid").placed == []


def exit_decision(trade_id: str = "t1") -> Decision:
    return Decision(strategy="price_spread", action="close", base="BTC", trade_id=trade_id,
                    legs=(Leg("okx", OKX.symbol, "sell", D("0.02"), D("29990")),
                          Leg("hyperliquid", "BTC", "buy", D("0.02"), D("30005"))),
                    edge_bps=D("0"), edge_usdt=D("0"), reason="converged")


def held_trade_with_hyperliquid_refusing(message: str):
    """Trade t1 held on both venues (OKX long, Hyperliquid short); Hyperliquid refuses its next order so."""
    desk = ready(make_desk(script_hl=[("refuse", message)]))
    desk.open_trades["t1"] = trade()
    desk.portfolio.set_position("okx", OKX.symbol, D("0.02"), D("30000"))
    desk.portfolio.set_position("hyperliquid", "BTC", D("-0.02"), D("29995"))
    trades, _, _ = parts(desk)
    return desk, trades


async def test_an_exit_whose_reduce_only_leg_is_refused_waits_for_the_venue_never_reopens_the_other_leg():
    """Finding 16: the venue refused the Hyperliquid leg's reduce-only buy (it had deleveraged that short). The
    OKX leg's sell is not undone by re-buying (that would leave OKX naked long), the trade keeps the refused
    leg, and the next exit is not sent while Hyperliquid's position is in doubt."""
    desk, trades = held_trade_with_hyperliquid_refusing("Reduce only order would increase position.")
    [report] = await trades.on_decisions([exit_decision()])
    assert report["outcome"] == "awaiting_position" and report["corrective_orders"] == 0
    assert [(r.side, r.reduce_only) for r in venue(desk, "okx").placed] == [("sell", True)]  # no re-buy
    assert list(desk.doubted) == [("hyperliquid", "BTC")] and desk.leg_failures == 0
    assert [leg["base_qty"] for leg in desk.open_trades["t1"]["legs"]] == ["0", "0.02"]
    [again] = await trades.on_decisions([exit_decision()])
    assert again == {"outcome": "skipped", "reason": "position hyperliquid BTC in doubt: waiting for the venue's "
                                                     "statement"}
    assert len(venue(desk, "hyperliquid").placed) == 1 and len(venue(desk, "okx").placed) == 1


async def test_an_exit_leg_refused_for_another_reason_is_repaired_as_before():
    """No liquidity for the Hyperliquid leg's IOC (not a reduce-only refusal): the position is what the bot
    thinks, so the legs policy goes on (here: it unwinds the OKX leg's exit, leaving the trade whole)."""
    desk, trades = held_trade_with_hyperliquid_refusing("Order could not immediately match against any resting orders.")
    [report] = await trades.on_decisions([exit_decision()])
    assert report["outcome"] != "awaiting_position" and report["corrective_orders"] >= 1
    assert desk.doubted == {}


async def test_a_residue_is_charged_from_when_it_appears_not_from_the_last_accrual():
    clock = [100.0]
    desk = make_desk()
    desk.clock = lambda: clock[0]
    book = TradeBook(desk)
    book.accrue_residue()  # no residue
    clock[0] += 60
    desk.open_trades["t1"] = trade(okx="0.02", hl="0.0203")
    book.accrue_residue()  # it appears here: the 60 s before cost nothing
    assert desk.unhedged_usdt_seconds == 0
    clock[0] += 10
    book.accrue_residue()
    assert desk.unhedged_usdt_seconds == D("0.0003") * D("30000") * 10


async def test_a_close_refused_on_one_leg_sends_nothing_and_takes_no_order_rate_slot():
    """The CI hostile run's 'fault never fired': a close whose OKX exit passed the gate and whose Hyperliquid exit
    did not (its book stale) counted one order against risk.max_orders_per_minute each time the strategy asked
    again, until every entry and exit was refused on order_rate."""
    desk = ready(make_desk())
    desk.open_trades["t1"] = trade()
    desk.portfolio.set_position("okx", OKX.symbol, D("0.02"), D("30000"))
    desk.portfolio.set_position("hyperliquid", "BTC", D("-0.02"), D("29995"))
    desk.venue_connected["hyperliquid"] = False  # its exit is refused (venue_disconnected), OKX's would pass
    trades, _, _ = parts(desk)
    for _ in range(100):
        [report] = await trades.on_decisions([exit_decision()])
        assert report["outcome"] == "refused" and "venue_disconnected" in report["reason"], report
    assert len(desk.recent_order_times) == 0
    assert venue(desk, "okx").placed == [] and venue(desk, "hyperliquid").placed == []
    desk.venue_connected["hyperliquid"] = True
    [report] = await trades.on_decisions([exit_decision()])
    assert report["outcome"] == "hedged" and len(desk.recent_order_times) == 2, report
    assert "t1" not in desk.open_trades
