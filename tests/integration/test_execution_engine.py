"""The engine end to end over real books, the real risk gate, paper venues with scripted faults and a
real SQLite journal: journal first, both legs, leg repair, unknown outcomes, HALT, operator commands."""

import asyncio
import sqlite3
from decimal import Decimal as D

import pytest
from perpbot.core.decisions import Decision, Leg
from test_execution_support import OPEN_JOURNALS, kill_process, make_engine, make_settings, make_store, make_venues, open_decision


@pytest.fixture(autouse=True)
async def close_journals():
    yield
    while OPEN_JOURNALS:
        await OPEN_JOURNALS.pop().close()


def order_rows(path):
    return sqlite3.connect(path).execute(
        "SELECT venue, purpose, side, qty, status, filled_qty FROM orders ORDER BY created_ts, venue").fetchall()


def size(engine, venue, symbol):
    position = engine.portfolio.positions.get((venue, symbol))
    return position.size if position else D(0)


async def started(tmp_path, venues=None, store=None, **execution):
    store = store or make_store()
    venues = venues or make_venues(store)
    execution.setdefault("order_timeout_s", 0.5)
    settings = make_settings(**execution)
    engine = await make_engine(tmp_path, venues, store, settings)
    await engine.start()
    return engine, venues


async def test_both_legs_fill_equally_and_are_journalled_as_one_hedged_trade(tmp_path):
    engine, venues = await started(tmp_path)
    assert engine.trading_state()["state"] == "ACTIVE"
    [report] = await engine.on_decisions([open_decision()])
    assert report["outcome"] == "hedged"
    assert size(engine, "okx", "BTC-USDT-SWAP") == D("0.02")
    assert size(engine, "hyperliquid", "BTC") == D("-0.02")
    assert order_rows(engine.journal.path) == [
        ("hyperliquid", "entry", "sell", "0.02", "filled", "0.02"), ("okx", "entry", "buy", "2", "filled", "2")]
    assert len(engine.open_trades) == 1
    assert engine.metrics.trades_total.labels("price_spread", "hedged")._value.get() == 1
    assert engine.metrics.orders_success_total.labels("okx", "buy")._value.get() == 1
    fees = D(engine.pnl_today()["fees"])
    assert fees > 0  # taker fees on both legs


async def test_journal_holds_intent_and_both_orders_before_the_send_and_after_a_kill(tmp_path):
    store = make_store()
    venues = make_venues(store)
    seen = []
    engine, _ = await started(tmp_path, venues, store)
    venues["okx"].on_place = lambda request: seen.append(order_rows(engine.journal.path))
    venues["okx"].script = ["block"]
    venues["hyperliquid"].script = ["block"]
    task = asyncio.create_task(engine.on_decisions([open_decision()]))
    while not seen:  # wait for the order to reach the venue, bounded by the test timeout below
        await asyncio.wait_for(asyncio.sleep(0), 1)
    await kill_process(task)  # the process dies mid-send
    assert {(r[0], r[4]) for r in seen[0]} == {("okx", "pending"), ("hyperliquid", "pending")}
    intents = sqlite3.connect(engine.journal.path).execute("SELECT status FROM intents").fetchall()
    assert intents == [("sending",)]
    # A restart settles the pending orders by query: the venues never saw them.
    engine2 = await make_engine(tmp_path, make_venues(store), store, journal=engine.journal)
    report = await engine2.start()
    settled = {c["venue"]: c["to"] for c in report["changed"] if c["kind"] == "order"}
    assert settled == {"okx": "not_found", "hyperliquid": "not_found"}
    assert engine2.trading_state()["state"] == "ACTIVE"


async def test_lost_response_is_resolved_by_query_without_a_second_order(tmp_path):
    engine, venues = await started(tmp_path)
    venues["hyperliquid"].script = ["lost"]
    [report] = await engine.on_decisions([open_decision()])
    assert report["outcome"] == "hedged"
    assert len(venues["hyperliquid"].place_calls) == 1  # never re-sent
    assert len(venues["hyperliquid"].inner.orders) == 1
    assert venues["hyperliquid"].fetch_calls == [venues["hyperliquid"].place_calls[0].client_order_id]
    assert size(engine, "hyperliquid", "BTC") == D("-0.02")
    fills = sqlite3.connect(engine.journal.path).execute("SELECT COUNT(*) FROM fills").fetchone()[0]
    assert fills == 2


async def test_answer_that_never_comes_times_out_and_is_settled_by_query(tmp_path):
    engine, venues = await started(tmp_path, order_timeout_s=0.2)
    venues["okx"].script = ["hang"]
    [report] = await engine.on_decisions([open_decision()])
    assert report["outcome"] == "hedged"
    assert len(venues["okx"].place_calls) == 1
    assert size(engine, "okx", "BTC-USDT-SWAP") == D("0.02")


async def test_one_leg_rejected_the_filled_leg_is_unwound_reduce_only(tmp_path):
    engine, venues = await started(tmp_path)
    venues["hyperliquid"].script = ["reject"]
    [report] = await engine.on_decisions([open_decision()])
    assert report["outcome"] == "unwound"
    assert size(engine, "okx", "BTC-USDT-SWAP") == 0
    assert size(engine, "hyperliquid", "BTC") == 0
    unwind = venues["okx"].place_calls[-1]
    assert unwind.reduce_only and unwind.side == "sell" and unwind.qty == D("2")
    assert ("hyperliquid", "entry", "sell", "0.02", "rejected", "0") in order_rows(engine.journal.path)
    assert engine.metrics.orders_rejected_total.labels("hyperliquid", "InsufficientFunds")._value.get() == 1


async def test_partial_fill_is_hedged_up_to_the_filled_quantity(tmp_path):
    engine, venues = await started(tmp_path)
    venues["hyperliquid"].script = [("partial", D("0.4"))]
    [report] = await engine.on_decisions([open_decision()])
    assert report["outcome"] == "corrected"
    hedge = venues["hyperliquid"].place_calls[-1]
    assert hedge.qty == D("0.012") and hedge.side == "sell" and not hedge.reduce_only
    assert size(engine, "okx", "BTC-USDT-SWAP") == D("0.02")
    assert size(engine, "hyperliquid", "BTC") == D("-0.02")


async def test_legs_that_cannot_be_repaired_halt_trading_after_the_retry_cap(tmp_path):
    engine, venues = await started(tmp_path, max_hedge_retries=2)
    venues["hyperliquid"].reject_all = True
    venues["okx"].script = [None, "reject", "reject", "reject"]  # the entry fills; every unwind fails
    [report] = await engine.on_decisions([open_decision()])
    assert report["outcome"] == "halted"
    assert engine.trading_state()["state"] == "HALTED"
    assert size(engine, "okx", "BTC-USDT-SWAP") == D("0.02")  # the naked leg is known, not hidden
    audit = await engine.journal.state_changes(1)
    assert audit[0]["to"] == "HALTED" and "okx BTC-USDT-SWAP buy filled 0.02" in audit[0]["reason"]
    # Nothing new opens while HALTED.
    [skipped] = await engine.on_decisions([open_decision()])
    assert skipped["outcome"] == "skipped"
    assert len(venues["okx"].place_calls) == 3


async def test_repeated_leg_repairs_halt_at_max_leg_failures(tmp_path):
    engine, venues = await started(tmp_path)
    engine.settings.risk.max_leg_failures = 2
    venues["hyperliquid"].script = ["reject"]  # refused for margin: one leg repair
    await engine.on_decisions([open_decision()])
    # Hyperliquid's balance as the bot knew it was stale: no entry there until it is read again.
    [refused] = await engine.on_decisions([open_decision()])
    assert refused["outcome"] == "refused" and "margin_refused" in refused["reason"]
    await engine.sync_positions()
    venues["hyperliquid"].script = ["reject"]  # read again, refused again: the second repair in a row
    await engine.on_decisions([open_decision()])
    assert engine.trading_state()["state"] == "HALTED"
    assert "needed leg repair" in engine.trading_state()["reason"]


async def test_restart_rebuilds_positions_from_the_journal_and_reconciles_with_the_venue(tmp_path):
    store = make_store()
    venues = make_venues(store)
    engine, _ = await started(tmp_path, venues, store)
    await engine.on_decisions([open_decision()])
    await engine.journal.close()
    # While the bot is down, someone trims the OKX position by hand.
    venues["okx"].inner.positions["BTC-USDT-SWAP"].size = D("0.01")
    from perpbot.journal.sqlite import Journal

    journal = Journal(tmp_path / "journal.sqlite")
    await journal.open()
    OPEN_JOURNALS.append(journal)
    engine2 = await make_engine(tmp_path, venues, store, journal=journal)
    report = await engine2.start()
    assert size(engine2, "okx", "BTC-USDT-SWAP") == D("0.01")  # corrected to the venue
    assert [c for c in report["changed"] if c["kind"] == "position"] == [
        {"kind": "position", "venue": "okx", "symbol": "BTC-USDT-SWAP", "local_size": "0.02",
         "venue_size": "0.01", "venue_entry": "30000"}]
    # The start-up check adopts the venue's size for the trade's OKX leg and unwinds the Hyperliquid
    # excess it would otherwise leave naked: both legs 0.01, at the venues and in the journal.
    assert report["trades_checked"] == [{"kind": "trade", "trade_id": next(iter(engine2.open_trades)),
                                         "change": "resize", "legs": ["0.01", "0.02"], "rebalanced": "rebalanced"}]
    assert venues["hyperliquid"].inner.positions["BTC"].size == D("-0.01")
    assert size(engine2, "hyperliquid", "BTC") == D("-0.01")
    [trade] = engine2.open_trades.values()
    assert [leg["base_qty"] for leg in trade["legs"]] == ["0.01", "0.01"]
    [journalled] = await journal.open_trades()
    assert [leg["base_qty"] for leg in journalled["legs"]] == ["0.01", "0.01"]
    assert engine2.trading_state()["state"] == "ACTIVE"
    assert len(await engine2.trades_since(0)) == 3  # both entry fills and the unwind


async def test_start_stays_paused_until_every_venue_reconciles(tmp_path):
    store = make_store()
    venues = make_venues(store)
    original = venues["okx"].inner.fetch_positions

    async def down():
        from perpbot.core.errors import TemporaryError

        raise TemporaryError("okx", "503 Service Unavailable")

    venues["okx"].inner.fetch_positions = down
    engine = await make_engine(tmp_path, venues, store)
    await engine.start()
    assert engine.trading_state()["state"] == "PAUSED"
    assert (await engine.resume())["resumed"] is False
    venues["okx"].inner.fetch_positions = original
    await engine.periodic()
    assert engine.trading_state()["state"] == "ACTIVE"


async def test_pause_stops_new_trades_and_resume_brings_them_back(tmp_path):
    engine, venues = await started(tmp_path)
    answer = await engine.pause("operator test")
    assert answer["state"] == "PAUSED" and engine.active_orders() == []
    [skipped] = await engine.on_decisions([open_decision()])
    assert skipped["outcome"] == "skipped" and venues["okx"].place_calls == []
    assert (await engine.resume())["resumed"] is True
    [report] = await engine.on_decisions([open_decision()])
    assert report["outcome"] == "hedged"
    audit = [(a["to"], a["actor"]) for a in await engine.journal.state_changes(3)]
    assert audit == [("ACTIVE", "operator"), ("PAUSED", "operator"), ("ACTIVE", "recovery")]


async def test_close_all_flattens_every_position_including_foreign_ones(tmp_path):
    engine, venues = await started(tmp_path)
    await engine.on_decisions([open_decision()])
    # A position the bot never opened, found only at the venue.
    from perpbot.portfolio.book import Position

    venues["hyperliquid"].inner.positions["BTC"].apply(D("-0.01"), D("29995"))
    answer = await engine.close_all()
    assert {(r["venue"], r["status"]) for r in answer["results"]} == {("okx", "closed"), ("hyperliquid", "closed")}
    hl = next(r for r in answer["results"] if r["venue"] == "hyperliquid")
    assert hl["size"] == "-0.03" and hl["side"] == "buy"
    assert engine.positions() == []
    assert await venues["okx"].inner.fetch_positions() == []
    assert all(r.reduce_only for v in venues.values() for r in v.place_calls[1:])
    assert Position  # imported type in use by the venue stand-in


async def test_sync_positions_reports_and_fixes_a_divergence(tmp_path):
    engine, venues = await started(tmp_path)
    await engine.on_decisions([open_decision()])
    venues["hyperliquid"].inner.positions["BTC"].size = D("0")
    answer = await engine.sync_positions()
    assert answer["changed"] == [{"kind": "position", "venue": "hyperliquid", "symbol": "BTC",
                                  "local_size": "-0.02", "venue_size": "0", "venue_entry": "0"}]
    assert [p["venue"] for p in engine.positions()] == ["okx"]
    again = await engine.sync_positions()
    assert again["changed"] == []


async def test_read_models_are_json_ready(tmp_path):
    import json

    engine, _ = await started(tmp_path)
    await engine.on_decisions([open_decision()])
    for payload in (engine.positions(), engine.balances(), engine.pnl_today(), engine.trading_state(),
                    await engine.trades_since(0), engine.active_orders()):
        json.dumps(payload)
    position = next(p for p in engine.positions() if p["venue"] == "okx")
    assert position["side"] == "long" and position["size"] == "0.02" and position["entry_price"] == "30000"


async def test_crash_between_the_legs_is_repaired_on_restart_not_left_naked(tmp_path):
    store = make_store()
    venues = make_venues(store)
    engine, _ = await started(tmp_path, venues, store)
    venues["hyperliquid"].script = ["block"]  # the OKX leg fills; the process dies before HL answers
    task = asyncio.create_task(engine.on_decisions([open_decision()]))
    while "BTC-USDT-SWAP" not in venues["okx"].inner.positions:
        await asyncio.wait_for(asyncio.sleep(0), 1)
    await kill_process(task)  # the process dies between the legs
    assert venues["okx"].inner.positions["BTC-USDT-SWAP"].size == D("0.02")  # naked at the venue

    restarted = make_venues(store)
    restarted["okx"].inner, restarted["hyperliquid"].inner = venues["okx"].inner, venues["hyperliquid"].inner
    engine2 = await make_engine(tmp_path, restarted, store, journal=engine.journal)
    report = await engine2.start()

    okx_size = venues["okx"].inner.positions["BTC-USDT-SWAP"].size
    hl = venues["hyperliquid"].inner.positions.get("BTC")
    hl_size = hl.size if hl is not None else D(0)
    assert okx_size + hl_size == 0, "legs must be equal and opposite after the restart"
    assert [r["outcome"] for r in report["repaired"]] in (["recovered"], ["recovered_flat"])
    statuses = sqlite3.connect(engine.journal.path).execute("SELECT status FROM intents").fetchall()
    assert statuses in ([("recovered",)], [("recovered_flat",)])
    # No client order id was used twice at a venue.
    sent = [r.client_order_id for v in restarted.values() for r in v.place_calls]
    assert len(sent) == len(set(sent)) and sent
    assert size(engine2, "okx", "BTC-USDT-SWAP") == okx_size


async def test_with_no_tradeable_venue_the_engine_never_becomes_active(tmp_path):
    engine = await make_engine(tmp_path, {}, make_store())
    await engine.start()
    await engine.periodic()
    state = engine.trading_state()
    assert state["state"] == "PAUSED" and "no tradeable venue" in state["reason"]


async def test_corrective_orders_reach_further_each_attempt_and_use_the_mark_without_a_usable_book(tmp_path):
    store = make_store()
    engine = await make_engine(tmp_path, make_venues(store), store)
    first = engine._aggressive_price("okx", "BTC-USDT-SWAP", "buy", D("29000"), attempt=1)
    third = engine._aggressive_price("okx", "BTC-USDT-SWAP", "buy", D("29000"), attempt=3)
    assert first == D("30075.0")  # best ask 30000 + 25 bps, on the 0.1 tick
    assert third == D("30300.0")  # + 100 bps on the third attempt
    store.get("okx", "BTC-USDT-SWAP").invalidate("gap")  # a jump left the book unusable
    engine.portfolio.set_mark("okx", "BTC-USDT-SWAP", D("31000"))
    assert engine._aggressive_price("okx", "BTC-USDT-SWAP", "sell", D("29000"), attempt=1) == D("30922.5")


async def test_repeated_failures_of_periodic_reconciliation_halt_trading_without_crashing(tmp_path):
    engine, venues = await started(tmp_path, reconcile_interval_s=0.01)
    assert engine.trading_state()["state"] == "ACTIVE"

    async def broken():
        raise RuntimeError("bug in a venue answer")

    engine.periodic = broken
    task = asyncio.create_task(engine.run())
    while engine.trading_state()["state"] != "HALTED":
        await asyncio.wait_for(asyncio.sleep(0.01), 1)
    engine.stop()
    await asyncio.wait_for(task, 2)  # the loop ended normally: no exception escaped
    assert "failed 3 times" in engine.trading_state()["reason"]


async def test_second_entry_of_one_batch_on_a_venue_symbol_already_traded_is_skipped_not_netted(tmp_path):
    # One scan can emit two entries sharing a venue/symbol in opposite directions (hostile-venue
    # suite: HL<binance and binance<okx in one evaluate). Netted at the venue they cancel each other's
    # leg and both trades' reduce-only exits are refused forever.
    engine, venues = await started(tmp_path)
    first = open_decision()
    opposite = Decision(strategy="price_spread", action="open", base="BTC",
                        legs=(Leg("okx", first.legs[0].symbol, "sell", D("0.02"), D("29990")),
                              Leg("hyperliquid", "BTC", "buy", D("0.02"), D("30005"))),
                        edge_bps=D("20"), edge_usdt=D("1"), reason="test")
    reports = await engine.on_decisions([first, opposite])
    assert reports[0]["outcome"] == "hedged"
    assert reports[1]["outcome"] == "skipped" and "already in an open trade" in reports[1]["reason"]
    assert len(venues["okx"].place_calls) == 1 and len(engine.open_trades) == 1
    assert size(engine, "okx", first.legs[0].symbol) == D("0.02")


async def test_finished_orders_leave_no_per_order_state_in_memory(tmp_path):
    engine, _ = await started(tmp_path)
    for _ in range(3):
        await engine.on_decisions([open_decision("0.01")])
        engine.open_trades.clear()  # let the next entry through; this test only counts memory
    assert engine._order_fills == {} and engine.in_flight == {}
    assert sqlite3.connect(engine.journal.path).execute("SELECT COUNT(*) FROM fills").fetchone()[0] >= 6


async def test_trades_past_the_portfolio_bound_are_read_from_the_journal_and_agree_with_memory(tmp_path, monkeypatch):
    """A hedged trade books 2 fills; with room for 1 in memory, /api/trades' source (trades_since)
    reads the journal, and the fill memory still holds is the same record either way."""
    from perpbot.portfolio import book

    monkeypatch.setattr(book, "MAX_RECENT_FILLS", 1)
    engine, _ = await started(tmp_path)
    [report] = await engine.on_decisions([open_decision()])
    assert report["outcome"] == "hedged"
    assert len(engine.portfolio.fills) == 1 and not engine.portfolio.complete_since(0)
    trades = await engine.trades_since(0)
    assert sorted((t["venue"], t["side"], t["base_qty"]) for t in trades) == [
        ("hyperliquid", "sell", "0.02"), ("okx", "buy", "0.02")]
    # Each fill names its trade (the entry's intent id); its attribution comes once the trade closes.
    of_trade = {"trade_id": report["intent_id"], "attribution": None}
    assert trades[-1] == {**engine.portfolio.fills[-1].as_dict(), **of_trade}
    memory_since_last = [{**f.as_dict(), **of_trade} for f in engine.portfolio.trades_since(trades[-1]["ts"])]
    assert await engine.trades_since(trades[-1]["ts"]) == memory_since_last  # memory path, same answer


async def test_the_scanner_sees_one_tuple_of_open_trades_per_change_including_a_partial_close(tmp_path):
    """TradingService.open_trades parses the engine's trades once per change (the scanner indexes the
    tuple it gets once, the strategies cache per trade object): the same tuple until a trade opens,
    shrinks or closes, then a new one that says so."""
    from perpbot.wiring import TradingService

    engine, venues = await started(tmp_path)
    service = TradingService(engine, None, venues, engine.journal, None)
    assert service.open_trades() == ()
    [report] = await engine.on_decisions([open_decision()])
    assert report["outcome"] == "hedged"
    first = service.open_trades()
    assert service.open_trades() is first
    [trade] = first
    assert [leg.base_qty for leg in trade.legs] == [D("0.02"), D("0.02")]
    half = Decision(strategy="price_spread", action="close", base="BTC", trade_id=trade.trade_id,
                    legs=(Leg("okx", "BTC-USDT-SWAP", "sell", D("0.01"), D("29000")),
                          Leg("hyperliquid", "BTC", "buy", D("0.01"), D("31000"))),
                    edge_bps=D("0"), edge_usdt=D("0"), reason="test")
    [report] = await engine.on_decisions([half])
    shrunk = service.open_trades()
    assert shrunk is not first and [leg.base_qty for leg in shrunk[0].legs] == [D("0.01"), D("0.01")]
    assert service.open_trades() is shrunk
    await engine.on_decisions([half])  # the other half
    assert service.open_trades() == () and engine.open_trades == {}
