"""Incremental screens (TopScreen, FundingScreen, FundingMap): a skipped base is one the full evaluation
would have decided nothing on, across random books, fees, sizes, thresholds and funding."""

import dataclasses
import logging
from decimal import Decimal as D

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from market_helpers import BINANCE_BTC, BYBIT_BTC, HYPERLIQUID_BTC, NOW, OKX_BTC, funding, put_book

from perpbot.book.store import BookStore
from perpbot.core.decisions import Leg
from perpbot.scanner.protocol import NO_SCREENS, FundingMap, OpenTrade, Screens
from perpbot.scanner.scanner import Scanner
from perpbot.settings import FundingSpreadSettings, PriceSpreadSettings, StrategiesSettings
from perpbot.telemetry.metrics import Metrics
from strategies import build_strategies
from strategies.funding_spread import FundingSpreadStrategy
from strategies.price_spread import PriceSpreadStrategy

BASE = (OKX_BTC, BINANCE_BTC, BYBIT_BTC, HYPERLIQUID_BTC)


class Unscreened:
    """Wraps a strategy without its screens, so the scanner always runs evaluate."""

    def __init__(self, strategy) -> None:
        self.name = strategy.name
        self.evaluate = strategy.evaluate

    def screens(self) -> Screens:
        return NO_SCREENS


fees = st.sampled_from(["0", "0.0001", "0.0002", "0.00045", "0.0005", "0.00055", "0.001"])
rate_choices = st.one_of(st.none(), st.sampled_from(["0.0001", "0.0001", "0.0004", "-0.0003", "0.00012", "0.002", "0"]))


@st.composite
def book_sides(draw, contract: bool):
    """A book near 60,000 (whole dimes): 1-4 levels a side, sometimes crossed against the others."""
    bid = 600000 + draw(st.sampled_from([0, 0, 0, 1, -1, 20, -20, 300, -300, 1200]))
    ask = bid + draw(st.sampled_from([1, 2, 5, 50]))
    unit = 100 if contract else 1
    sizes = st.sampled_from([D("0.001"), D("0.003"), D("0.01"), D("0.1"), D("5")])
    n_bids = draw(st.integers(0, 4))
    n_asks = draw(st.integers(0, 4))
    bids = [(f"{(bid - 3 * i) / 10:.1f}", str(draw(sizes) * unit)) for i in range(n_bids)]
    asks = [(f"{(ask + 3 * i) / 10:.1f}", str(draw(sizes) * unit)) for i in range(n_asks)]
    return bids, asks


@st.composite
def markets(draw):
    instruments = [dataclasses.replace(inst, taker_fee=D(draw(fees))) for inst in BASE]
    books = [draw(book_sides(inst.venue == "okx")) for inst in instruments]
    ages = [draw(st.sampled_from([0.0, 0.0, 0.0, 10.0])) for _ in instruments]
    funded = [draw(rate_choices) for _ in instruments]
    price = PriceSpreadSettings(min_edge_bps=D(draw(st.sampled_from(["0", "1", "8", "30"]))),
                                order_size_usdt=D(draw(st.sampled_from(["20", "200", "5000"]))))
    fund = FundingSpreadSettings(entry_hourly_spread=D(draw(st.sampled_from(["0", "0.00001", "0.0001"]))),
                                 order_size_usdt=price.order_size_usdt)
    return instruments, books, ages, funded, price, fund


def _build(instruments, books, ages, funded):
    store = BookStore(stale_after_s=5.0)
    rates = FundingMap()
    for inst, (bids, asks), age in zip(instruments, books, ages):
        if bids or asks:
            book = put_book(store, inst, bids or [("1.0", "1")], asks or [("999999.0", "1")], NOW - age)
            # Empty sides are real: clear them after the snapshot so the book stays valid.
            if not bids:
                book.bids.clear()
                book.bid_keys.clear()
            if not asks:
                book.asks.clear()
                book.ask_keys.clear()
    for inst, rate in zip(instruments, funded):
        if rate is not None:
            rates[inst.key] = funding(inst, rate, inst.funding_interval_hours)
    return store, rates


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(markets(), st.integers(0, 3))
def test_screen_no_means_the_full_evaluation_yields_nothing(market, changed):
    instruments, books, ages, funded, price, fund = market
    store, rates = _build(instruments, books, ages, funded)
    mapping = {inst.key: inst for inst in instruments}
    strategies = [PriceSpreadStrategy(price), FundingSpreadStrategy(fund)]
    fast = Scanner(store, strategies, Metrics(), mapping, rates, clock=lambda: NOW)
    full = Scanner(store, [Unscreened(s) for s in strategies], Metrics(), mapping, rates, clock=lambda: NOW)
    key = instruments[changed].key
    got = fast.scan((key,), [])
    want = full.scan((key,), [])
    assert got == want
    if fast.screened:
        assert want == []  # the screen said no: the full evaluation found nothing either
    # The screens agree with the per-strategy may_enter on the usable books (never stricter).
    usable = [(i, i.key, store.get(*i.key)) for i in instruments
              if store.get(*i.key) is not None and store.is_usable(store.get(*i.key), NOW)]
    if any(s.may_enter("BTC", usable, rates) for s in strategies):
        assert fast.screened == 0


def _fast_and_full(data):
    """A random BTC market on the four venues, and two scanners over it: the incremental one and one
    whose strategies have no screens (always a full evaluation)."""
    instruments = list(BASE)
    store, rates = _build(instruments, [data.draw(book_sides(i.venue == "okx")) for i in instruments],
                          [0.0] * 4, [data.draw(rate_choices) for _ in instruments])
    mapping = {inst.key: inst for inst in instruments}
    built = build_strategies(StrategiesSettings())
    fast = Scanner(store, built, Metrics(), mapping, rates, clock=lambda: NOW)
    full = Scanner(store, [Unscreened(s) for s in built], Metrics(), mapping, rates, clock=lambda: NOW)
    return instruments, store, rates, mapping, built, fast, full


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 3), st.data()), min_size=1, max_size=12), st.data())
def test_incremental_scanner_agrees_with_full_evaluation_over_a_stream_of_updates(steps, data):
    """Products kept across scans: after every reported book or funding change, the incremental
    scanner decides exactly what the unscreened one decides."""
    instruments, store, rates, mapping, built, fast, full = _fast_and_full(data)
    assert fast.scan(tuple(mapping), []) == full.scan(tuple(mapping), [])
    for index, step in steps:
        inst = instruments[index]
        bids, asks = step.draw(book_sides(inst.venue == "okx"))
        put_book(store, inst, bids or [("59000.0", "1")], asks or [("61000.0", "1")], NOW)
        if step.draw(st.booleans()):
            rates[inst.key] = funding(inst, step.draw(rates_present), inst.funding_interval_hours)
        before = fast.screened
        assert fast.scan((inst.key,), []) == full.scan((inst.key,), [])
        # The state kept across scans screens exactly as one built from scratch on these books.
        fresh = Scanner(store, built, Metrics(), mapping, rates, clock=lambda: NOW)
        fresh.scan((inst.key,), [])
        assert fast.screened - before == fresh.screened
    assert fast.index is not None  # the incremental path was the one under test


rates_present = st.sampled_from(["0.0001", "0.0004", "-0.0003", "0.002", "0"])


def test_funding_change_alone_is_seen_at_the_next_book_update_of_the_base():
    store = BookStore(stale_after_s=5.0)
    for inst in BASE:
        size = "500" if inst.venue == "okx" else "5"
        put_book(store, inst, [("60000.0", size)], [("60000.5", size)], NOW)
    rates = FundingMap({inst.key: funding(inst, "0.0001", 8) for inst in BASE})
    scanner = Scanner(store, build_strategies(StrategiesSettings()), Metrics(), {i.key: i for i in BASE}, rates,
                      clock=lambda: NOW)
    assert scanner.scan((OKX_BTC.key,), []) == [] and scanner.screened == 1
    version = rates.version
    rates[BYBIT_BTC.key] = funding(BYBIT_BTC, "0.004", 8)  # 5 bps/h over the others
    assert rates.version == version + 1
    decisions = scanner.scan((OKX_BTC.key,), [])
    assert [d.strategy for d in decisions] == ["funding_spread"] * len(decisions) and decisions
    assert scanner.screened == 1


def test_funding_map_counts_every_write():
    rates = FundingMap()
    rates[("okx", "A")] = 1
    rates.update({("okx", "B"): 2})
    rates.setdefault(("okx", "C"), 3)
    rates.pop(("okx", "A"))
    del rates[("okx", "B")]
    rates |= {("okx", "D"): 4}
    rates.popitem()
    rates.clear()
    assert rates.version == 8 and rates == {}
    assert FundingMap({("okx", "A"): 1}).version == 0


def test_exits_are_evaluated_on_every_update_of_a_base_with_an_open_trade():
    store = BookStore(stale_after_s=5.0)
    for inst in BASE:
        size = "500" if inst.venue == "okx" else "5"
        put_book(store, inst, [("60000.0", size)], [("60000.5", size)], NOW)
    scanner = Scanner(store, build_strategies(StrategiesSettings()), Metrics(), {i.key: i for i in BASE},
                      FundingMap(), clock=lambda: NOW)
    scanner.prime()
    legs = (Leg("okx", "BTC-USDT-SWAP", "buy", D("0.01"), D("60000.5")), Leg("binance", "BTCUSDT", "sell", D("0.01"),
                                                                          D("60000.0")))
    trade = OpenTrade("t1", "price_spread", "BTC", legs, NOW - 10, D("40"))  # converged: round trip >= 0
    decisions = scanner.scan((BYBIT_BTC.key,), [trade])
    assert [(d.action, d.trade_id) for d in decisions] == [("close", "t1")]
    assert scanner.screened == 0
    assert scanner.scan((BYBIT_BTC.key,), []) == [] and scanner.screened == 1


def test_a_strategy_whose_screen_fails_is_still_evaluated_and_logged(caplog):
    class Broken(PriceSpreadStrategy):
        def top_factors(self, instrument):
            raise ValueError("no factors")

        def evaluate(self, view, base, open_trades):
            raise RuntimeError("evaluate broke")

    store = BookStore(stale_after_s=5.0)
    put_book(store, OKX_BTC, [("60000.0", "500")], [("60000.5", "500")], NOW)
    scanner = Scanner(store, [Broken(PriceSpreadSettings())], Metrics(), {OKX_BTC.key: OKX_BTC}, FundingMap(),
                      clock=lambda: NOW)
    with caplog.at_level(logging.ERROR):
        assert scanner.scan((OKX_BTC.key,), []) == []
    assert scanner.screened == 0 and "evaluate broke" in caplog.text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(markets(), st.integers(0, 3), st.sampled_from(["price_spread", "funding_spread"]),
       st.sampled_from([(0, 1), (1, 2), (3, 0), (2, 3)]), st.sampled_from([5.0, 700.0, 30000.0]))
def test_held_base_skips_only_strategies_without_a_trade_there_and_decides_as_full_evaluation(
        market, changed, owner, pair, age):
    instruments, books, ages, funded, price, fund = market
    store, rates = _build(instruments, books, ages, funded)
    mapping = {inst.key: inst for inst in instruments}
    strategies = [PriceSpreadStrategy(price), FundingSpreadStrategy(fund)]
    fast = Scanner(store, strategies, Metrics(), mapping, rates, clock=lambda: NOW)
    full = Scanner(store, [Unscreened(s) for s in strategies], Metrics(), mapping, rates, clock=lambda: NOW)
    long_inst, short_inst = instruments[pair[0]], instruments[pair[1]]
    legs = (Leg(long_inst.venue, long_inst.symbol, "buy", D("0.003"), D("60000.0")),
            Leg(short_inst.venue, short_inst.symbol, "sell", D("0.003"), D("60001.0")))
    trade = OpenTrade("t-1", owner, "BTC", legs, NOW - age, D("12"))
    key = instruments[changed].key
    assert fast.scan((key,), [trade]) == full.scan((key,), [trade])


def _held_market():
    store = BookStore(stale_after_s=5.0)
    for inst in BASE:
        size = "500" if inst.venue == "okx" else "5"
        put_book(store, inst, [("60000.0", size)], [("60000.5", size)], NOW)
    mapping = {i.key: i for i in BASE}
    legs = (Leg("okx", "BTC-USDT-SWAP", "buy", D("0.01"), D("60000.5")),
            Leg("binance", "BTCUSDT", "sell", D("0.01"), D("60000.0")))
    return store, mapping, legs


def test_a_held_base_whose_trades_cannot_be_exited_is_skipped_like_one_with_nothing_to_do():
    """ExitScreen: an entry edge of -40 bps cannot be made up by closing at a 1-tick spread, so no
    update of the base can close it before max hold; the scanner skips it (no evaluate), and the
    full evaluation agrees that nothing is decided. Once max hold is reached it is evaluated again."""
    store, mapping, legs = _held_market()
    clock = [NOW]
    built = build_strategies(StrategiesSettings())
    fast = Scanner(store, built, Metrics(), mapping, FundingMap(), clock=lambda: clock[0])
    full = Scanner(store, [Unscreened(s) for s in built], Metrics(), mapping, FundingMap(), clock=lambda: clock[0])
    fast.prime()
    trade = OpenTrade("t1", "price_spread", "BTC", legs, NOW - 10, D("-40"))
    for key in (BYBIT_BTC.key, OKX_BTC.key, (BYBIT_BTC.key, OKX_BTC.key)):
        changed = key if isinstance(key[0], tuple) else (key,)
        before = fast.screened
        assert fast.scan(changed, [trade]) == full.scan(changed, [trade]) == []
        assert fast.screened == before + 1
    clock[0] = NOW - 10 + built[0].settings.max_hold_s
    for inst in BASE:  # the same books, fresh at the new time
        size = "500" if inst.venue == "okx" else "5"
        put_book(store, inst, [("60000.0", size)], [("60000.5", size)], clock[0])
    decisions = fast.scan(tuple(mapping), [trade])
    assert [(d.action, d.trade_id) for d in decisions] == [("close", "t1")]
    assert decisions == full.scan(tuple(mapping), [trade])


def test_a_held_base_of_a_strategy_without_an_exit_screen_is_always_evaluated():
    class NoExitScreen(PriceSpreadStrategy):
        def screens(self) -> Screens:
            return dataclasses.replace(super().screens(), may_exit=None)

        def __init__(self, settings):
            super().__init__(settings)
            self.calls = 0

        def evaluate(self, view, base, open_trades):
            self.calls += 1
            return super().evaluate(view, base, open_trades)

    store, mapping, legs = _held_market()
    strategy = NoExitScreen(PriceSpreadSettings())
    scanner = Scanner(store, [strategy], Metrics(), mapping, FundingMap(), clock=lambda: NOW)
    trade = OpenTrade("t1", "price_spread", "BTC", legs, NOW - 10, D("-40"))
    assert scanner.scan((BYBIT_BTC.key,), [trade]) == []
    assert strategy.calls == 1 and scanner.screened == 0
    # A trade of a strategy the scanner does not run is nobody's to exit: the base is screened.
    foreign = dataclasses.replace(trade, strategy="elsewhere")
    assert scanner.scan((BYBIT_BTC.key,), [foreign]) == [] and strategy.calls == 1 and scanner.screened == 1


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(markets(), st.sampled_from(["price_spread", "funding_spread"]), st.sampled_from([(0, 1), (1, 2), (3, 0), (2, 3)]),
       st.sampled_from([5.0, 700.0, 30000.0]), st.sampled_from(["-60", "-3", "0", "12"]))
def test_may_exit_is_true_whenever_the_strategy_closes_the_trade(market, owner, pair, age, entry_bps):
    """The ExitScreen contract on random books, fees, funding, ages and entry edges: a close implies
    may_exit (the test above shows it saying no)."""
    instruments, books, ages, funded, price, fund = market
    store, rates = _build(instruments, books, ages, funded)
    mapping = {inst.key: inst for inst in instruments}
    strategy = PriceSpreadStrategy(price) if owner == "price_spread" else FundingSpreadStrategy(fund)
    long_inst, short_inst = instruments[pair[0]], instruments[pair[1]]
    legs = (Leg(long_inst.venue, long_inst.symbol, "buy", D("0.003"), D("60000.0")),
            Leg(short_inst.venue, short_inst.symbol, "sell", D("0.003"), D("60001.0")))
    trade = OpenTrade("t-1", owner, "BTC", legs, NOW - age, D(entry_bps))
    from perpbot.scanner.protocol import MarketView
    closes = [d for d in strategy.evaluate(MarketView(store, rates, mapping, NOW), "BTC", [trade])
              if d.action == "close"]
    if closes:
        assert strategy.may_exit(trade, store.books, mapping, rates, NOW)


def test_a_dislocation_already_traded_does_not_wake_the_base_but_one_on_the_free_books_does():
    """The entry screen of a held base leaves out the held books (entries never reuse them): the
    OKX book that was entered stays 40 bps over the others until it moves, and the base is
    skipped meanwhile; Bybit crossing Hyperliquid, two free books, is evaluated and entered."""
    store = BookStore(stale_after_s=5.0)
    put_book(store, OKX_BTC, [("60250.0", "500")], [("60250.5", "500")], NOW)
    for inst in (BINANCE_BTC, BYBIT_BTC):
        put_book(store, inst, [("60000.0", "5")], [("60000.5", "5")], NOW)
    put_book(store, HYPERLIQUID_BTC, [("60000", "5")], [("60001", "5")], NOW)
    mapping = {i.key: i for i in BASE}
    # 2,000 USDT: OKX's whole-contract lot (0.01 BTC) takes part.
    built = build_strategies(StrategiesSettings(price_spread=PriceSpreadSettings(order_size_usdt=D("2000"))))
    fast = Scanner(store, built, Metrics(), mapping, FundingMap(), clock=lambda: NOW)
    full = Scanner(store, [Unscreened(s) for s in built], Metrics(), mapping, FundingMap(), clock=lambda: NOW)
    fast.prime()
    entries = fast.scan((OKX_BTC.key,), [])
    assert entries and entries == full.scan((OKX_BTC.key,), []) and fast.screened == 0
    legs = (Leg("binance", "BTCUSDT", "buy", D("0.03"), D("60000.5")),
            Leg("okx", "BTC-USDT-SWAP", "sell", D("0.03"), D("60250.0")))
    trade = OpenTrade("t1", "price_spread", "BTC", legs, NOW - 1, D("40"))
    put_book(store, BYBIT_BTC, [("60000.1", "5")], [("60000.6", "5")], NOW)
    assert fast.scan((BYBIT_BTC.key,), [trade]) == full.scan((BYBIT_BTC.key,), [trade]) == []
    assert fast.screened == 1
    put_book(store, BYBIT_BTC, [("60300.0", "5")], [("60300.5", "5")], NOW)
    got = fast.scan((BYBIT_BTC.key,), [trade])
    assert got == full.scan((BYBIT_BTC.key,), [trade]) and fast.screened == 1
    assert [(d.action, {leg.venue for leg in d.legs}) for d in got] == [("open", {"bybit", "hyperliquid"})]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 3), st.data()), min_size=1, max_size=12), st.data())
def test_held_trades_handed_as_tuples_are_screened_as_full_evaluation_decides(steps, data):
    """As the bot runs: the open trades come as a tuple, the same one until they change. Across book
    updates and trades opened and closed, the incremental scanner (its trade index, free books and
    exit screens kept between scans) decides exactly what the unscreened one decides."""
    instruments, store, rates, mapping, built, fast, full = _fast_and_full(data)
    trades: tuple = ()
    for n, (index, step) in enumerate(steps):
        if step.draw(st.booleans()):  # the open trades change: a new tuple
            a, b = step.draw(st.sampled_from([(0, 1), (1, 2), (3, 0), (2, 3)]))
            legs = (Leg(instruments[a].venue, instruments[a].symbol, "buy", D("0.003"), D("60000.0")),
                    Leg(instruments[b].venue, instruments[b].symbol, "sell", D("0.003"), D("60001.0")))
            trade = OpenTrade(f"t{n}", step.draw(st.sampled_from(["price_spread", "funding_spread"])), "BTC", legs,
                              NOW - step.draw(st.sampled_from([5.0, 700.0, 30000.0])),
                              D(step.draw(st.sampled_from(["-60", "0", "12"]))))
            trades = (trade,) if step.draw(st.booleans()) else ()
        inst = instruments[index]
        bids, asks = step.draw(book_sides(inst.venue == "okx"))
        put_book(store, inst, bids or [("59000.0", "1")], asks or [("61000.0", "1")], NOW)
        assert fast.scan((inst.key,), trades) == full.scan((inst.key,), trades)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(markets())
def test_the_per_pair_screen_in_evaluate_drops_no_entry(market):
    """evaluate skips quoting a pair whose best prices cannot reach min_edge after both fees: on random
    books, fees, sizes and thresholds it returns exactly the decisions it returns quoting every cross."""
    from perpbot.scanner.protocol import MarketView

    instruments, books, ages, funded, price, fund = market
    store, rates = _build(instruments, books, ages, funded)
    view = MarketView(store, rates, {inst.key: inst for inst in instruments}, NOW)
    screened, unscreened = PriceSpreadStrategy(price), PriceSpreadStrategy(price)
    unscreened.pair_screen = False
    assert screened.evaluate(view, "BTC", []) == unscreened.evaluate(view, "BTC", [])
