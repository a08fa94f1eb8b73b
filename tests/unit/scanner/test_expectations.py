"""Decision-time expectations: each leg's top-of-book and depth price, fee rate and expected funding are read
from the very books the decision was made on, and the scanner stamps them on every decision it hands over."""

from __future__ import annotations

from decimal import Decimal as D

from perpbot.book.store import BookStore
from perpbot.core.decisions import Decision, Leg
from perpbot.scanner.expectations import expected_funding, intended_hold_s, with_expectation
from perpbot.scanner.protocol import MarketView
from perpbot.scanner.scanner import Scanner
from perpbot.settings import StrategiesSettings
from perpbot.telemetry.metrics import Metrics
from strategies import build_strategies

from market_helpers import BINANCE_BTC, BYBIT_BTC, NOW, funding, instruments_map, put_book


def market():
    store = BookStore(stale_after_s=5.0)
    # Binance asks 60000 x 0.002 then 60010 x 0.005: buying 0.004 eats both levels.
    put_book(store, BINANCE_BTC, [("59990", "1")], [("60000", "0.002"), ("60010", "0.005")])
    put_book(store, BYBIT_BTC, [("60300", "0.003"), ("60290", "1")], [("60310", "1")])
    rates = {BINANCE_BTC.key: funding(BINANCE_BTC, "0.0001", 8), BYBIT_BTC.key: funding(BYBIT_BTC, "-0.00005", 4)}
    return store, rates, instruments_map(BINANCE_BTC, BYBIT_BTC)


def test_each_leg_expects_the_top_and_depth_price_fee_and_funding_of_the_book_it_was_decided_on():
    store, rates, instruments = market()
    view = MarketView(store, rates, instruments, NOW)
    decision = Decision("price_spread", "open", "BTC",
                        (Leg("binance", "BTCUSDT", "buy", D("0.004"), D("60010")),
                         Leg("bybit", "BTCUSDT", "sell", D("0.004"), D("60290"))), D("40"), D("1"), "test")
    stamped = with_expectation(decision, view, D(3600))
    assert stamped.legs == decision.legs and stamped.expectation is not None
    buy, sell = stamped.expectation.legs
    assert (buy.top_price, sell.top_price) == (D("60000"), D("60300"))
    assert buy.depth_price == (D("0.002") * 60000 + D("0.002") * 60010) / D("0.004") == D("60005")
    assert sell.depth_price == (D("0.003") * 60300 + D("0.001") * 60290) / D("0.004") == D("60297.5")
    assert (buy.fee_rate, sell.fee_rate) == (BINANCE_BTC.taker_fee, BYBIT_BTC.taker_fee)
    assert (buy.funding_interval_s, sell.funding_interval_s) == (D(8 * 3600), D(4 * 3600))
    # The long pays a positive rate for an hour of its 8 h interval; the short pays a negative one.
    assert buy.expected_funding_usdt == -D("0.004") * D("60005") * D("0.0001") / 8 < 0
    assert sell.expected_funding_usdt == D("0.004") * D("60297.5") * D("-0.00005") / 4 < 0
    assert stamped.expectation.hold_s == D(3600)
    # An exit expects no more funding: its hold is over.
    exit_ = with_expectation(Decision("price_spread", "close", "BTC", decision.legs, D(0), D(0), "x", "t1"), view, D(3600))
    assert exit_.expectation is not None and exit_.expectation.hold_s == 0
    assert all(leg.expected_funding_usdt == 0 for leg in exit_.expectation.legs)


def test_expected_funding_is_zero_without_a_rate_or_a_hold():
    assert expected_funding("buy", D(1), D(100), D(0), D(28800), D(60)) == 0
    assert expected_funding("sell", D(1), D(100), D("0.001"), D(28800), D(0)) == 0
    assert expected_funding("sell", D(1), D(100), D("0.001"), D(28800), D(28800)) == D("0.1")


def test_the_scanner_hands_over_decisions_with_their_expectations():
    store, rates, instruments = market()
    built = build_strategies(StrategiesSettings())
    scanner = Scanner(store, built, Metrics(), instruments, rates, clock=lambda: NOW)
    decisions = scanner.scan(tuple(instruments), [])
    assert decisions, "the crossed books (bybit bid 60300 > binance ask 60000) give an entry"
    for decision in decisions:
        strategy = next(s for s in built if s.name == decision.strategy)
        assert decision.expectation is not None
        assert decision.expectation.hold_s == intended_hold_s(strategy) == D(str(strategy.settings.max_hold_s))
        assert [leg.top_price for leg in decision.expectation.legs] == [
            D("60000") if leg.side == "buy" else D("60300") for leg in decision.legs]
