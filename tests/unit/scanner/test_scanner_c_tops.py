"""The scanner's C screen products (perpbot/scanner/_tops.c, Tops) against the Python lists they stand in
for: the same products, the same extremes and the same verdict after any sequence of book changes, and
a scanner with them decides exactly what one without them decides."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from market_helpers import NOW, put_book
from test_scanner_incremental import _fast_and_full, book_sides

import perpbot.scanner.screens as screens_module
from perpbot.book.l2 import L2Book
from perpbot.scanner.screens import NO_ASK as _NO_ASK
from perpbot.scanner.screens import PyTops
from strategies.price_spread import PriceSpreadStrategy
from perpbot.scanner.tops import Tops

# Tops is built wherever the suite runs (scripts/test.sh installs a compiler): the first test fails without it.


def test_the_c_products_are_built_and_used_by_the_scanner():
    assert Tops is not None and screens_module.CTops is Tops

keys = st.lists(st.integers(min_value=1, max_value=(1 << 63) - 1), max_size=3).map(sorted)
factor = st.integers(min_value=0, max_value=(1 << 62) - 1)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(factor, factor), min_size=1, max_size=6), st.data())
def test_c_products_and_verdict_equal_the_python_lists_after_any_changes(factors, data):
    """The C products, their Python twin (PyTops, what the scanner uses without C) and plain lists recomputed
    from scratch: the same products, extremes and verdicts."""
    n = len(factors)
    tops = Tops(factors)
    twin = PyTops(factors)
    books = [L2Book("okx", f"S{i}") for i in range(n)]
    sells, buys = [0] * n, [_NO_ASK] * n
    for i in range(n):
        assert tops.bind(i, books[i]) is (max(sells) >= min(buys)) is twin.bind(i, books[i])
    for _ in range(data.draw(st.integers(1, 25))):
        i = data.draw(st.integers(0, n - 1))
        # The same list objects changed in place (refresh reads them) or the book bound again.
        books[i].bid_keys[:] = data.draw(keys)
        books[i].ask_keys[:] = data.draw(keys)
        if data.draw(st.booleans()):
            crossing, twin_crossing = tops.bind(i, books[i]), twin.bind(i, books[i])
        else:
            crossing, twin_crossing = tops.refresh(i), twin.refresh(i)
        sell, buy = factors[i]
        sells[i] = books[i].bid_keys[-1] * sell if books[i].bid_keys else 0
        buys[i] = books[i].ask_keys[0] * buy if books[i].ask_keys else _NO_ASK
        assert tops.products(i) == twin.products(i) == (sells[i], None if buys[i] == _NO_ASK else buys[i])
        assert crossing == twin_crossing == tops.crossing == twin.crossing == (max(sells) >= min(buys))
        free = sorted(data.draw(st.sets(st.integers(0, n - 1))))  # the books no open trade holds
        among = bool(free) and max(sells[k] for k in free) >= min(buys[k] for k in free)
        assert tops.crossing_among(free) == twin.crossing_among(free) == among
    tops.bind(0, None)  # no book: no bid, no ask
    twin.bind(0, None)
    assert tops.products(0) == twin.products(0) == (0, None)


def test_c_products_refuse_factors_beyond_their_exact_range_and_never_screen_out_odd_keys():
    with pytest.raises(ValueError):
        Tops([(1 << 62, 1)])
    with pytest.raises(ValueError):
        Tops([(-1, 1)])
    tops = Tops([(3, 5), (2, 7)])
    book = L2Book("okx", "S")
    book.bid_keys[:] = [1 << 70]  # not a price any venue sends: the base is always evaluated
    assert tops.bind(0, book) is True


@contextlib.contextmanager
def c_products(on: bool):
    saved = screens_module.CTops
    screens_module.CTops = saved if on else None
    try:
        yield
    finally:
        screens_module.CTops = saved


@pytest.mark.parametrize("on", [True, False])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 3), st.data()), min_size=1, max_size=14), st.data())
def test_the_scanner_decides_the_same_with_and_without_c_products(on, steps, data):
    """Single-book scans, bursts and a book object replaced in the store: the incremental scanner (C
    products on or off) decides what the unscreened one decides."""
    with c_products(on):
        instruments, store, rates, mapping, built, fast, full = _fast_and_full(data)
        assert fast.index.in_c == on
        for index, step in steps:
            inst = instruments[index]
            if step.draw(st.integers(0, 9)) == 0:  # the supervisor re-adds the book: a new L2Book object
                store.add(inst.venue, inst.symbol, inst.contract_size)
            bids, asks = step.draw(book_sides(inst.venue == "okx"))
            put_book(store, inst, bids or [("59000.0", "1")], asks or [("61000.0", "1")], NOW)
            changed = (inst.key,) if step.draw(st.booleans()) else set(mapping)
            assert fast.scan(changed, []) == full.scan(changed, [])


def _two_venue_scanner(in_c: bool = True):
    from decimal import Decimal as D

    from market_helpers import BINANCE_BTC, OKX_BTC

    from perpbot.book.store import BookStore
    from perpbot.scanner.protocol import FundingMap
    from perpbot.scanner.scanner import Scanner
    from perpbot.settings import PriceSpreadSettings, StrategiesSettings
    from perpbot.telemetry.metrics import Metrics
    from strategies import build_strategies

    store = BookStore(stale_after_s=5.0)
    put_book(store, OKX_BTC, [("60000.0", "500")], [("60000.5", "500")], NOW)
    put_book(store, BINANCE_BTC, [("60000.0", "5")], [("60000.5", "5")], NOW)
    built = build_strategies(StrategiesSettings(price_spread=PriceSpreadSettings(order_size_usdt=D("2000"))))
    mapping = {OKX_BTC.key: OKX_BTC, BINANCE_BTC.key: BINANCE_BTC}
    with c_products(in_c):
        scanner = Scanner(store, built, Metrics(), mapping, FundingMap(), clock=lambda: NOW)
        scanner.prime()
    assert scanner.index.in_c == in_c and scanner.scan((OKX_BTC.key,), []) == []
    return store, scanner, OKX_BTC, BINANCE_BTC


@pytest.mark.parametrize("in_c", [True, False])
def test_a_book_object_replaced_in_the_store_is_read_by_the_c_products(in_c):
    """The supervisor re-adds a book (a new L2Book): the products (C, or the Python twin, both bound to
    the books' lists) must read the new book's lists, not the old one's, or a cross on the new book
    would be screened out."""
    store, scanner, okx, binance = _two_venue_scanner(in_c)
    store.add(okx.venue, okx.symbol, okx.contract_size)
    put_book(store, okx, [("60300.0", "500")], [("60300.5", "500")], NOW)  # 50 bps over Binance's ask
    decisions = scanner.scan((okx.key,), [])
    assert [(d.action, {leg.venue for leg in d.legs}) for d in decisions] == [("open", {"okx", "binance"})]


@pytest.mark.parametrize("in_c", [True, False])
def test_a_burst_after_c_only_refreshes_reads_every_book_as_it_is(in_c):
    """The hot path refreshed OKX's products in C only (its bid rose 17 bps, still inside Binance's ask
    after fees and min edge); a burst then reports Binance's ask falling 2.5 bps: the cross is between a
    book the burst names and one it does not, and is found only from OKX's current bid."""
    store, scanner, okx, binance = _two_venue_scanner(in_c)
    put_book(store, okx, [("60100.0", "500")], [("60100.5", "500")], NOW)
    assert scanner.scan((okx.key,), []) == [] and scanner.screened == 2  # quiet, judged in C
    put_book(store, binance, [("59985.0", "5")], [("59985.5", "5")], NOW)
    decisions = scanner.scan({binance.key}, [])
    assert [(d.action, {leg.venue for leg in d.legs}) for d in decisions] == [("open", {"okx", "binance"})]


class _NarrowPriceSpread(PriceSpreadStrategy):
    name = "price_spread_narrow"


@pytest.mark.parametrize("on", [True, False])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 3), st.data()), min_size=1, max_size=12), st.data())
def test_several_top_screens_in_c_or_python_decide_as_full_evaluation(on, steps, data):
    """Two TopScreens (price spreads of different sizes and thresholds, each with its own products) and a
    FundingScreen, over single-book scans, bursts and trades opened and closed: the incremental scanner (C
    products on or off) decides what the unscreened one decides."""
    from decimal import Decimal as D

    from test_scanner_incremental import BASE, Unscreened, _build, rate_choices

    from perpbot.core.decisions import Leg
    from perpbot.scanner.protocol import OpenTrade
    from perpbot.scanner.scanner import Scanner
    from perpbot.settings import FundingSpreadSettings, PriceSpreadSettings
    from perpbot.telemetry.metrics import Metrics
    from strategies.funding_spread import FundingSpreadStrategy

    with c_products(on):
        instruments = list(BASE)
        store, rates = _build(instruments, [data.draw(book_sides(i.venue == "okx")) for i in instruments],
                              [0.0] * 4, [data.draw(rate_choices) for _ in instruments])
        mapping = {inst.key: inst for inst in instruments}
        built = [PriceSpreadStrategy(PriceSpreadSettings(min_edge_bps=D("30"), order_size_usdt=D("5000"))),
                 _NarrowPriceSpread(PriceSpreadSettings(min_edge_bps=D("1"), order_size_usdt=D("200"))),
                 FundingSpreadStrategy(FundingSpreadSettings(entry_hourly_spread=D("0.00001")))]
        fast = Scanner(store, built, Metrics(), mapping, rates, clock=lambda: NOW)
        full = Scanner(store, [Unscreened(s) for s in built], Metrics(), mapping, rates, clock=lambda: NOW)
        assert fast.index is not None and len(fast.index.top_screens) == 2 and fast.index.in_c == on
        trades: tuple = ()
        for n, (index, step) in enumerate(steps):
            if step.draw(st.booleans()):  # the open trades change: a new tuple
                a, b = step.draw(st.sampled_from([(0, 1), (1, 2), (3, 0), (2, 3)]))
                legs = (Leg(instruments[a].venue, instruments[a].symbol, "buy", D("0.003"), D("60000.0")),
                        Leg(instruments[b].venue, instruments[b].symbol, "sell", D("0.003"), D("60001.0")))
                owner = step.draw(st.sampled_from([s.name for s in built]))
                trade = OpenTrade(f"t{n}", owner, "BTC", legs, NOW - 5.0, D(step.draw(st.sampled_from(["-60", "12"]))))
                trades = (trade,) if step.draw(st.booleans()) else ()
            inst = instruments[index]
            bids, asks = step.draw(book_sides(inst.venue == "okx"))
            put_book(store, inst, bids or [("59000.0", "1")], asks or [("61000.0", "1")], NOW)
            changed = (inst.key,) if step.draw(st.booleans()) else set(mapping)
            assert fast.scan(changed, trades) == full.scan(changed, trades)
