"""Start-up after a crash, engine side: venues reconciled all at once, a failing venue does not keep
the others from reconciling, the venues of an interrupted trade are reconciled and repaired before
the others finish, and funding history is synced after the trading state is set, not before."""

import asyncio
from decimal import Decimal as D

import pytest
from perpbot.core import errors
from perpbot.core.orders import FundingPayment, OrderRequest
from perpbot.execution.paper import PaperClient
from testkit import approved
from test_execution_support import (OKX, OPEN_JOURNALS, ScriptedVenue, kill_process, make_engine, make_store,
                                    make_venues, open_decision)


@pytest.fixture(autouse=True)
async def close_journals():
    yield
    while OPEN_JOURNALS:
        await OPEN_JOURNALS.pop().close()


def gate_positions(venues, entered: set, all_in: asyncio.Event):
    """fetch_positions of every venue waits until every venue has entered it: a reconciliation that
    asks one venue after the other never gets past the first (and times out)."""
    for name, venue in venues.items():
        original = venue.inner.fetch_positions

        async def gated(name=name, original=original):
            entered.add(name)
            if entered == set(venues):
                all_in.set()
            await asyncio.wait_for(all_in.wait(), 5)
            return await original()

        venue.inner.fetch_positions = gated


async def test_every_venue_is_reconciled_at_once(tmp_path):
    store = make_store()
    venues = make_venues(store)
    venues["binance"] = ScriptedVenue(PaperClient("binance", store, {}, latency_ms=0))
    entered: set = set()
    gate_positions(venues, entered, asyncio.Event())
    engine = await make_engine(tmp_path, venues, store)
    report = await engine.start()
    assert entered == {"okx", "hyperliquid", "binance"}
    assert report["venues"] == {"okx": True, "hyperliquid": True, "binance": True} and report["errors"] == {}
    assert engine.trading_state()["state"] == "ACTIVE"


async def test_a_failing_venue_does_not_keep_the_others_from_reconciling(tmp_path):
    store = make_store()
    venues = make_venues(store)
    engine = await make_engine(tmp_path, venues, store)
    # Two unresolved orders, one per venue (journalled 'pending': the answers were lost).
    okx_order = OrderRequest("okx", OKX.symbol, "buy", D("2"), D("30000"), "okx-lost")
    hl_order = OrderRequest("hyperliquid", "BTC", "sell", D("0.02"), D("29995"), "hl-lost")
    for request in (okx_order, hl_order):
        await engine.journal.record_order(request, "entry", None)
    await venues["hyperliquid"].inner.place_order(approved(hl_order))

    async def down(*args):
        raise errors.TemporaryError("okx", "503 Service Unavailable")

    venues["okx"].fail_reads = True
    venues["okx"].inner.fetch_positions = down
    report = await engine.start()
    assert report["venues"] == {"okx": False, "hyperliquid": True}
    assert set(report["errors"]) == {"okx"}
    hl_row = await engine.journal.order("hyperliquid", "hl-lost")
    assert hl_row.status == "filled" and hl_row.filled_qty == D("0.02")
    assert (await engine.journal.order("okx", "okx-lost")).status == "pending"  # left for the next pass
    assert engine.portfolio.positions[("hyperliquid", "BTC")].size == D("-0.02")
    state = engine.trading_state()
    assert state["state"] == "PAUSED" and "okx" in state["reason"]


async def test_an_unexpected_error_of_one_venue_is_raised_after_the_others_finished(tmp_path):
    store = make_store()
    venues = make_venues(store)
    engine = await make_engine(tmp_path, venues, store)

    async def bug():
        raise ZeroDivisionError("a bug, not a venue error")

    venues["okx"].inner.fetch_balance = bug
    with pytest.raises(ZeroDivisionError):
        await engine._reconcile()  # noqa: SLF001
    assert engine.reconciled["hyperliquid"] is True


async def test_the_venues_of_an_interrupted_trade_are_repaired_before_the_other_venues_are_reconciled(tmp_path):
    store = make_store()
    venues = make_venues(store)
    engine = await make_engine(tmp_path, venues, store)
    await engine.start()
    venues["hyperliquid"].script = ["block"]  # the OKX leg fills; the process dies before HL answers
    task = asyncio.create_task(engine.on_decisions([open_decision()]))
    while OKX.symbol not in venues["okx"].inner.positions:
        await asyncio.wait_for(asyncio.sleep(0), 1)
    await kill_process(task)

    restarted = make_venues(store)
    restarted["okx"].inner, restarted["hyperliquid"].inner = venues["okx"].inner, venues["hyperliquid"].inner
    slow = ScriptedVenue(PaperClient("binance", store, {}, latency_ms=0))  # not part of the trade, slow to answer
    released = asyncio.Event()
    original = slow.inner.fetch_positions

    async def slow_positions():
        await released.wait()
        return await original()

    slow.inner.fetch_positions = slow_positions
    restarted["binance"] = slow
    engine2 = await make_engine(tmp_path, restarted, store, journal=engine.journal)
    start = asyncio.create_task(engine2.start())
    repair_sent = asyncio.Event()
    for venue in ("okx", "hyperliquid"):
        restarted[venue].on_place = lambda request: repair_sent.set()
    await asyncio.wait_for(repair_sent.wait(), 5)  # while binance has not answered yet
    assert not start.done() and engine2.state == "PAUSED" and not engine2.reconciled.get("binance")
    released.set()
    report = await asyncio.wait_for(start, 5)
    assert [r["outcome"] for r in report["repaired"]] in (["recovered"], ["recovered_flat"])
    assert report["venues"] == {"okx": True, "hyperliquid": True, "binance": True}
    assert engine2.trading_state()["state"] == "ACTIVE"
    okx_size = venues["okx"].inner.positions[OKX.symbol].size
    hl = venues["hyperliquid"].inner.positions.get("BTC")
    assert okx_size + (hl.size if hl is not None else D(0)) == 0


async def test_funding_history_is_synced_after_the_trading_state_is_set_not_before(tmp_path):
    store = make_store()
    venues = make_venues(store)
    released = asyncio.Event()
    calls = []
    payment = FundingPayment("okx", OKX.symbol, "okx-funding-1", D("-0.25"), 1_700_000_000_000)

    async def funding_history(since_ms):
        calls.append(since_ms)
        await released.wait()
        return [payment]

    venues["okx"].inner.fetch_funding_payments = funding_history
    engine = await make_engine(tmp_path, venues, store)
    report = await asyncio.wait_for(engine.start(), 5)  # does not wait for the funding history
    assert engine.trading_state()["state"] == "ACTIVE"
    assert not [c for c in report["changed"] if c.get("kind") == "funding"]
    await asyncio.sleep(0)
    assert calls, "the funding history sync has started beside trading"
    released.set()
    await asyncio.wait_for(engine.startup_funding, 5)
    assert [(f["payment_id"], f["amount"]) for f in await engine.journal.funding_since(0)] == [("okx-funding-1", D("-0.25"))]
    assert engine.portfolio.funding_total("okx", OKX.symbol) == D("-0.25")
    # The next sync books nothing twice.
    assert await engine._sync_funding("okx", venues["okx"]) == []  # noqa: SLF001
    assert engine.portfolio.funding_total("okx", OKX.symbol) == D("-0.25")
