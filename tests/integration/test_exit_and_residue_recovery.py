"""Exits and residues across restarts: a partial exit is journalled with the trade's new size (a kill
before or after it settles loses nothing, later exits are not refused); a residue the lagging venue's
lot cannot hedge is unwound on the other venue; one no venue can trade is kept on the trade, shown
and counted as unhedged, and closed with the trade. Real engine, gate, SQLite journal; paper venues."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from decimal import Decimal as D

import pytest

from perpbot.core.decisions import Decision, Leg
from test_execution_support import (
    HL, OPEN_JOURNALS, kill_process, make_engine, make_store, make_venues, open_decision,
)

OKX_SYMBOL = "BTC-USDT-SWAP"


@pytest.fixture(autouse=True)
async def close_journals():
    yield
    while OPEN_JOURNALS:
        await OPEN_JOURNALS.pop().close()


def close_decision(trade_id: str, qty: str) -> Decision:
    return Decision(strategy="price_spread", action="close", base="BTC", trade_id=trade_id,
                    legs=(Leg("okx", OKX_SYMBOL, "sell", D(qty), D("29000")),
                          Leg("hyperliquid", "BTC", "buy", D(qty), D("31000"))),
                    edge_bps=D("0"), edge_usdt=D("0"), reason="test exit")


def venue_size(venues, venue, symbol) -> D:
    position = venues[venue].inner.positions.get(symbol)
    return position.size if position is not None else D(0)


def journalled_legs(path) -> list[list[str]]:
    import json

    rows = sqlite3.connect(path).execute("SELECT legs FROM trades WHERE status='open'").fetchall()
    return [[leg["base_qty"] for leg in json.loads(legs)] for (legs,) in rows]


async def opened(tmp_path, store=None, venues=None):
    store = store or make_store()
    venues = venues or make_venues(store)
    engine = await make_engine(tmp_path, venues, store)
    await engine.start()
    [report] = await engine.on_decisions([open_decision()])
    assert report["outcome"] == "hedged"
    [trade_id] = engine.open_trades
    return engine, venues, store, trade_id


async def restart(tmp_path, engine, venues, store):
    restarted = make_venues(store)
    for name in venues:
        restarted[name].inner = venues[name].inner
    engine2 = await make_engine(tmp_path, restarted, store, journal=engine.journal)
    report = await engine2.start()
    return engine2, restarted, report


async def test_a_partial_exit_on_both_legs_is_journalled_and_the_rest_exits_after_a_restart(tmp_path):
    engine, venues, store, trade_id = await opened(tmp_path)
    venues["okx"].script = [("partial", D("0.5"))]
    venues["hyperliquid"].script = [("partial", D("0.5"))]
    [report] = await engine.on_decisions([close_decision(trade_id, "0.02")])
    assert report["outcome"] == "hedged"  # both legs closed half: equal, nothing to repair
    assert venue_size(venues, "okx", OKX_SYMBOL) == D("0.01") and venue_size(venues, "hyperliquid", "BTC") == D("-0.01")
    assert journalled_legs(engine.journal.path) == [["0.01", "0.01"]]  # not only in memory

    engine2, venues2, report = await restart(tmp_path, engine, venues, store)  # the process was killed here
    assert report["trades_checked"] == []  # the journal already agrees with the venues
    [trade] = engine2.open_trades.values()
    assert [leg["base_qty"] for leg in trade["legs"]] == ["0.01", "0.01"]
    refusals = engine2.metrics.risk_refusals_total
    [report] = await engine2.on_decisions([close_decision(trade_id, "0.01")])
    assert report["outcome"] == "hedged", report  # the old bug: 'does not reduce position', forever
    assert engine2.open_trades == {} and journalled_legs(engine.journal.path) == []
    assert venue_size(venues, "okx", OKX_SYMBOL) == 0 and venue_size(venues, "hyperliquid", "BTC") == 0
    assert sum(s.value for m in refusals.collect() for s in m.samples if s.name.endswith("_total")) == 0


async def test_a_kill_after_the_exit_settled_but_before_its_trade_change_is_rebuilt_from_the_orders(tmp_path):
    engine, venues, store, trade_id = await opened(tmp_path)
    venues["okx"].script = [("partial", D("0.5"))]
    venues["hyperliquid"].script = [("partial", D("0.5"))]
    reached = asyncio.Event()

    async def dies_here(*args, **kwargs):
        reached.set()
        await asyncio.Event().wait()

    engine.journal.finish_intent = dies_here  # both exit legs are settled in the journal; then the kill
    task = asyncio.create_task(engine.on_decisions([close_decision(trade_id, "0.02")]))
    await asyncio.wait_for(reached.wait(), 5)
    await kill_process(task)
    del engine.journal.finish_intent
    assert journalled_legs(engine.journal.path) == [["0.02", "0.02"]]  # the change never committed

    engine2, _, report = await restart(tmp_path, engine, venues, store)
    assert [r["outcome"] for r in report["repaired"]] == ["recovered"]
    assert journalled_legs(engine.journal.path) == [["0.01", "0.01"]]
    [report] = await engine2.on_decisions([close_decision(trade_id, "0.01")])
    assert report["outcome"] == "hedged"
    assert venue_size(venues, "okx", OKX_SYMBOL) == 0 and venue_size(venues, "hyperliquid", "BTC") == 0


async def test_a_journal_written_before_the_fix_is_made_to_agree_with_the_venues_at_start(tmp_path):
    """A journal that kept the trade at its old size after a partial exit (what older builds wrote):
    the start-up check adopts the venues' sizes instead of refusing every later exit."""
    engine, venues, store, trade_id = await opened(tmp_path)
    for venue, symbol in (("okx", OKX_SYMBOL), ("hyperliquid", "BTC")):
        venues[venue].inner.positions[symbol].size /= 2  # half closed, the journal never told
    engine2, _, report = await restart(tmp_path, engine, venues, store)
    assert report["trades_checked"] == [{"kind": "trade", "trade_id": trade_id, "change": "resize",
                                         "legs": ["0.01", "0.01"], "rebalanced": "balanced"}]
    assert journalled_legs(engine.journal.path) == [["0.01", "0.01"]]
    assert engine2.trading_state()["state"] == "ACTIVE"
    [report] = await engine2.on_decisions([close_decision(trade_id, "0.01")])
    assert report["outcome"] == "hedged"


async def test_a_venue_holding_more_than_the_trade_halts_with_the_reason(tmp_path):
    engine, venues, store, trade_id = await opened(tmp_path)
    venues["hyperliquid"].inner.positions["BTC"].size = D("-0.05")  # nothing the journal explains
    engine2, _, _ = await restart(tmp_path, engine, venues, store)
    state = engine2.trading_state()
    assert state["state"] == "HALTED"
    assert "start-up check" in state["reason"] and "hyperliquid BTC holds -0.05" in state["reason"]


@pytest.mark.parametrize("okx_first", [True, False], ids=["okx_leg0", "okx_leg1"])
async def test_a_residue_below_the_lagging_venues_lot_is_unwound_on_the_finer_venue(tmp_path, okx_first):
    """OKX (lot 1 contract = 0.01 BTC) lags Hyperliquid (lot 0.00001) by 0.0055 BTC: OKX cannot
    hedge it, so Hyperliquid unwinds it and both legs end equal. Either leg order."""
    store = make_store()
    venues = make_venues(store)
    engine = await make_engine(tmp_path, venues, store)
    await engine.start()
    venues["okx"].script = [("partial", D("0.5"))]  # 1 contract = 0.01
    venues["hyperliquid"].script = [("partial", D("0.775"))]  # 0.0155
    decision = open_decision()
    if not okx_first:
        decision = dataclasses.replace(decision, legs=decision.legs[::-1])
    [report] = await engine.on_decisions([decision])
    assert report["outcome"] == "corrected", report
    assert venue_size(venues, "okx", OKX_SYMBOL) == D("0.01")
    assert venue_size(venues, "hyperliquid", "BTC") == D("-0.01")
    unwinds = [r for r in venues["hyperliquid"].place_calls[1:]]
    assert [(r.side, r.qty, r.reduce_only) for r in unwinds] == [("buy", D("0.0055"), True)]
    assert engine.residues() == {} and engine.residue_usdt() == 0
    [trade] = engine.open_trades.values()
    assert {leg["base_qty"] for leg in trade["legs"]} == {"0.01"}


async def test_a_residue_no_venue_can_trade_is_kept_shown_counted_and_closed_with_the_trade(tmp_path):
    """Hyperliquid here with lot 0.0001 and minimum 0.001 BTC: a 0.0003 BTC excess is below one OKX
    lot and below Hyperliquid's minimum. It stays on the trade (journalled), is shown in
    /api/positions, counts against the unhedged budget, and the exit closes each leg in full."""
    coarse = dataclasses.replace(HL, lot_size=D("0.0001"), min_qty=D("0.001"))
    store = make_store()
    venues = make_venues(store)
    venues["hyperliquid"].inner.instruments["BTC"] = coarse
    clock = [1_000.0]
    engine = await make_engine(tmp_path, venues, store)
    engine.instruments[coarse.key] = coarse
    engine._clock = lambda: clock[0]
    await engine.start()
    venues["okx"].script = [("partial", D("0.5"))]  # 0.01
    venues["hyperliquid"].script = [("partial", D("0.515"))]  # 0.0103
    [report] = await engine.on_decisions([open_decision()])
    assert report["outcome"] in ("corrected", "hedged"), report
    assert venue_size(venues, "hyperliquid", "BTC") == D("-0.0103")  # the excess is still there...
    assert engine.residues() == {("hyperliquid", "BTC"): D("0.0003")}  # ...and known
    assert journalled_legs(engine.journal.path) == [["0.01", "0.0103"]]
    shown = {(p["venue"], p["symbol"]): p["unhedged_base"] for p in engine.positions()}
    assert shown == {("okx", OKX_SYMBOL): "0", ("hyperliquid", "BTC"): "0.0003"}
    assert engine.metrics.unhedged_notional._value.get() > 0
    before = engine.unhedged_usdt_seconds
    await engine.periodic()
    clock[0] += 10
    await engine.periodic()
    assert engine.unhedged_usdt_seconds - before == pytest.approx(D("0.0003") * D("30000") * 10, rel=D("0.01"))

    engine2, venues2, report = await restart(tmp_path, engine, venues, store)
    engine2.instruments[coarse.key] = coarse
    assert report["trades_checked"] == []  # the residue is part of the journalled trade
    assert engine2.residues() == {("hyperliquid", "BTC"): D("0.0003")}
    [trade_id] = engine2.open_trades
    [report] = await engine2.on_decisions([close_decision(trade_id, "0.01")])
    assert report["outcome"] == "hedged", report
    assert venue_size(venues, "okx", OKX_SYMBOL) == 0 and venue_size(venues, "hyperliquid", "BTC") == 0
    assert engine2.open_trades == {} and engine2.residues() == {}
