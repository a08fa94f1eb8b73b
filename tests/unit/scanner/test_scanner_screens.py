"""Entry screens: skipping strategies on quiet bases never changes what the scanner decides."""

import random
from decimal import Decimal

import pytest
from market_helpers import BINANCE_BTC, BYBIT_BTC, HYPERLIQUID_BTC, NOW, OKX_BTC, funding, instruments_map, put_book

from perpbot.book.store import BookStore
from perpbot.scanner.protocol import NO_SCREENS, Screens
from perpbot.scanner.scanner import Scanner
from perpbot.settings import StrategiesSettings
from perpbot.telemetry.metrics import Metrics
from strategies import build_strategies

BTC = (OKX_BTC, BINANCE_BTC, BYBIT_BTC, HYPERLIQUID_BTC)
INSTRUMENTS = instruments_map(*BTC)


class Unscreened:
    """Wraps a strategy without declaring its screens, so the scanner always runs evaluate."""

    def __init__(self, strategy) -> None:
        self.name = strategy.name
        self.evaluate = strategy.evaluate

    def screens(self) -> Screens:
        return NO_SCREENS


def _random_market(rng: random.Random, store: BookStore, usdc_usdt: Decimal = Decimal(1)) -> dict:
    """Books mostly aligned in USDT: Hyperliquid's in USDC, so its prices are the USDT ones over the rate."""
    rates = {}
    for inst in BTC:
        bid = 60000 + rng.choice([0, 0, 0, rng.randint(-90, 90)])  # mostly aligned books, whole dollars
        if inst.quote == "USDC":
            bid = int(bid / usdc_usdt)
        ask = bid + rng.choice([1, 1, 2, 5])
        size = "500" if inst.venue == "okx" else "5"
        age = 10.0 if rng.random() < 0.1 else 0.0  # some books stale
        put_book(store, inst, [(bid, size), (bid - 1, size)], [(ask, size), (ask + 1, size)], NOW - age)
        if rng.random() < 0.9:
            rate = rng.choice(["0.0001", "0.0001", "0.0004", "-0.0003", "0.00012"])
            rates[inst.key] = funding(inst, rate, 1 if inst.venue == "hyperliquid" else 8)
    return rates


@pytest.mark.parametrize("usdc_usdt", ["1", "0.9985", "1.0025"])  # Hyperliquid's USDC at par, cheap, dear
def test_screened_scanner_decides_exactly_what_full_evaluation_decides_on_random_markets(usdc_usdt):
    rng = random.Random(20240611)
    skipped = entries = 0
    for _ in range(400):
        store = BookStore(stale_after_s=5.0)
        rates = _random_market(rng, store, Decimal(usdc_usdt))
        built = build_strategies(StrategiesSettings(), Decimal(usdc_usdt))
        fast = Scanner(store, built, Metrics(), INSTRUMENTS, rates, clock=lambda: NOW)
        full = Scanner(store, [Unscreened(s) for s in built], Metrics(), INSTRUMENTS, rates, clock=lambda: NOW)
        key = rng.choice(list(INSTRUMENTS))
        got = fast.scan((key,), [])
        want = full.scan((key,), [])
        assert got == want
        skipped += fast.screened
        entries += len(want)
        assert full.screened == 0
    # Both paths were exercised: quiet bases screened out, and bases with entries evaluated.
    assert skipped > 100 and entries > 20


def test_price_spread_screen_passes_a_cross_wider_than_fees_and_stops_one_inside_them():
    strategy = build_strategies(StrategiesSettings())[0]
    store = BookStore(stale_after_s=5.0)
    put_book(store, OKX_BTC, [("60000", "500")], [("60001", "500")], NOW)
    put_book(store, BINANCE_BTC, [("60002.0", "5")], [("60002.5", "5")], NOW)  # bid above OKX ask by 1.7 bps
    usable = [(i, i.key, store.get(*i.key)) for i in (OKX_BTC, BINANCE_BTC)]
    assert strategy.may_enter("BTC", usable, {}) is False  # crossed, but fees + min edge eat it
    put_book(store, BINANCE_BTC, [("60200.0", "5")], [("60200.5", "5")], NOW)  # ~33 bps over
    usable = [(i, i.key, store.get(*i.key)) for i in (OKX_BTC, BINANCE_BTC)]
    assert strategy.may_enter("BTC", usable, {}) is True


def test_scanner_still_evaluates_every_strategy_on_a_base_with_an_open_trade():
    calls = []

    class Screened:
        name = "screened"

        def screens(self):
            return Screens(may_enter=self.may_enter)

        def may_enter(self, base, usable, funding):
            return False

        def evaluate(self, view, base, open_trades):
            calls.append(len(open_trades))
            return []

    store = BookStore(stale_after_s=5.0)
    put_book(store, OKX_BTC, [("60000", "500")], [("60001", "500")], NOW)
    scanner = Scanner(store, [Screened()], Metrics(), INSTRUMENTS, {}, clock=lambda: NOW)
    assert scanner.scan((OKX_BTC.key,), []) == [] and calls == [] and scanner.screened == 1

    class Trade:
        base = "BTC"

    scanner.scan((OKX_BTC.key,), [Trade()])
    assert calls == [1]
