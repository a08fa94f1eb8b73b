"""Positions in doubt (perpbot.execution.doubts): what starts a doubt, which statement of the venue ends it,
and what waits meanwhile. The journal is the real SQLite one; the venues are in-memory fakes."""

from __future__ import annotations

import time
from decimal import Decimal as D

import pytest
from engine_fakes import OKX, make_desk, ready

from perpbot.core.orders import OrderRequest
from perpbot.core.private_events import MarginEvent, PositionUpdate
from perpbot.execution.confirmations import Confirmations
from perpbot.execution.doubts import PUSH_WAIT_S, ask_for_stale_doubts, doubt, is_reduce_only_refusal, settle_by_read
from perpbot.execution.orders import OrderLifecycle
from perpbot.journal.sqlite import Journal
from testkit import approved

NOW = 1_800_000_000.0
KEY = ("okx", OKX.symbol)
NO_POSITION = "51169 Order failed because you don't have any positions in this direction for this contract"


@pytest.fixture
async def desk(tmp_path):
    desk = ready(make_desk(script_okx=["reject", "reject", ("refuse", NO_POSITION)]))
    real = Journal(tmp_path / "journal.sqlite")
    await real.open()
    desk.journal = real
    desk.portfolio.set_position("okx", OKX.symbol, D("0.02"), D("30000"))
    yield desk
    await real.close()


def confirmations_of(desk) -> Confirmations:
    confirmations = Confirmations(desk, OrderLifecycle(desk).settle_pushed)
    desk.confirmations = confirmations
    return confirmations


def pushed(size: str, recv_ts: float) -> PositionUpdate:
    return PositionUpdate("okx", OKX.symbol, D(size), None, 1, recv_ts)


def held(desk) -> D:
    return desk.portfolio.positions[KEY].size


async def test_a_reduce_only_order_refused_for_the_position_puts_it_in_doubt_other_refusals_do_not(desk):
    orders = OrderLifecycle(desk)
    entry = OrderRequest("okx", OKX.symbol, "buy", D("1"), D("30000"), "e1")
    exit_ = OrderRequest("okx", OKX.symbol, "sell", D("2"), D("29990"), "x1", reduce_only=True)
    again = OrderRequest("okx", OKX.symbol, "sell", D("2"), D("29990"), "x2", reduce_only=True)
    for request, purpose in ((entry, "entry"), (exit_, "exit"), (again, "exit")):
        await desk.journal.record_order(request, purpose, "i1")
    assert (await orders.send(approved(entry, "entry"), "s")).rejected  # an entry refused
    assert desk.doubted == {}
    assert (await orders.send(approved(exit_, "exit"), "s")).rejected  # an exit refused for margin
    assert desk.doubted == {}
    assert (await orders.send(approved(again, "exit"), "s")).rejected  # 51169: no position to reduce
    assert list(desk.doubted) == [KEY]


@pytest.mark.parametrize("venue, reason, position", [
    ("okx", NO_POSITION, True),
    ("okx", "51008 Order failed. Insufficient USDT margin in account", False),
    ("binance", "-2022 ReduceOnly Order is rejected.", True),
    ("binance", "-2019 Margin is insufficient.", False),
    ("bybit", "110017 Reduce-only rule not satisfied", True),
    ("bybit", "110007 ab not enough for new order", False),
    ("hyperliquid", "Reduce only order would increase position.", True),
    ("hyperliquid", "Order could not immediately match against any resting orders. asset=1", False),
    ("paper", "anything", True),  # a venue whose codes are not listed: every refusal counts
])
def test_which_refusals_say_the_position_is_not_what_the_bot_thinks(venue, reason, position):
    assert is_reduce_only_refusal(venue, reason) is position


async def test_a_liquidation_pushed_puts_the_position_in_doubt_and_the_position_pushed_with_it_settles_it(desk):
    confirmations = confirmations_of(desk)
    await confirmations.apply(MarginEvent("okx", OKX.symbol, "liquidation", "full_liquidation", 1, NOW))
    assert desk.doubted == {KEY: NOW} and confirmations.reconcile_soon.is_set()
    await confirmations.apply(pushed("0", NOW + 0.001))
    assert held(desk) == 0 and desk.doubted == {}
    assert list(desk.pushed_corrections) == [{"kind": "position", "venue": "okx", "symbol": OKX.symbol,
                                             "local_size": "0.02", "venue_size": "0", "venue_entry": "0",
                                             "source": "pushed it"}]


async def test_a_position_pushed_before_the_doubt_or_before_a_later_fill_of_ours_settles_nothing(desk):
    confirmations = confirmations_of(desk)
    await confirmations.apply(pushed("0.02", NOW - 1))  # what the venue held before the refusal
    doubt(desk, "okx", OKX.symbol, "reduce-only sell refused", NOW)
    await confirmations.settle_doubts()
    assert KEY in desk.doubted and held(desk) == D("0.02")
    desk.fill_booked_at[KEY] = NOW + 2  # a fill of ours booked after the next push came: it may not show it
    await confirmations.apply(pushed("0.01", NOW + 1))
    assert KEY in desk.doubted and held(desk) == D("0.02")
    await confirmations.apply(pushed("0", NOW + 3))
    assert KEY not in desk.doubted and held(desk) == 0


async def test_an_order_of_ours_in_flight_there_keeps_the_doubt_until_it_has_ended(desk):
    confirmations = confirmations_of(desk)
    doubt(desk, "okx", OKX.symbol, "the venue pushed adl", NOW)
    desk.in_flight["c9"] = {"venue": "okx", "symbol": OKX.symbol}
    await confirmations.apply(pushed("0", NOW + 1))
    assert KEY in desk.doubted and held(desk) == D("0.02")
    del desk.in_flight["c9"]
    await confirmations.settle_doubts()  # the push already here is taken once nothing is in flight
    assert KEY not in desk.doubted and held(desk) == 0


def test_a_reconciliation_read_begun_after_the_doubt_ends_it_one_begun_before_or_left_busy_does_not():
    desk = make_desk()
    doubt(desk, "okx", OKX.symbol, "reduce-only sell refused", NOW)
    doubt(desk, "hyperliquid", "BTC", "reduce-only buy refused", NOW)
    settle_by_read(desk, "okx", NOW - 0.5, ())
    assert KEY in desk.doubted
    settle_by_read(desk, "okx", NOW + 0.5, {KEY})
    assert KEY in desk.doubted
    settle_by_read(desk, "okx", NOW + 0.5, ())
    assert list(desk.doubted) == [("hyperliquid", "BTC")]  # another venue's read settles only its own keys


def test_a_later_cause_keeps_the_first_doubts_time():
    desk = make_desk()
    doubt(desk, "okx", OKX.symbol, "the venue pushed adl", NOW)
    doubt(desk, "okx", OKX.symbol, "reduce-only sell refused", NOW + 1)
    assert desk.doubted == {KEY: NOW}  # the venue's position pushed after the ADL answers both



async def test_a_margin_refusal_of_an_entry_doubts_the_venues_balance_until_a_read_begun_after_it(desk):
    from perpbot.execution.states import TradingStates

    orders = OrderLifecycle(desk)
    entry = OrderRequest("okx", OKX.symbol, "buy", D("1"), D("30000"), "e1")
    await desk.journal.record_order(entry, "entry", "i1")
    before = time.time()
    assert (await orders.send(approved(entry, "entry"), "s")).rejected  # the fake venue: insufficient margin
    assert list(desk.margin_doubted) == ["okx"]
    assert TradingStates(desk).risk_context().margin_doubted == frozenset({"okx"})
    settle_by_read(desk, "okx", before, ())
    assert "okx" in desk.margin_doubted  # a read begun before the refusal tells nothing of it
    settle_by_read(desk, "okx", time.time() + 1, ())
    assert desk.margin_doubted == {}


def test_on_a_live_stream_the_reconciliation_is_asked_only_for_a_doubt_no_push_settled_in_time(desk):
    confirmations = confirmations_of(desk)
    confirmations.set_live("okx", True)
    doubt(desk, "okx", OKX.symbol, "the venue pushed adl", NOW)
    assert not confirmations.reconcile_soon.is_set()  # its push normally settles it within milliseconds
    assert not ask_for_stale_doubts(desk, NOW + PUSH_WAIT_S / 2)
    assert ask_for_stale_doubts(desk, NOW + PUSH_WAIT_S) and confirmations.reconcile_soon.is_set()
