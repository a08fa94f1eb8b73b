"""Scanner: changed bases only, usable books only, opportunities counted, bursts conflated."""

import asyncio
from decimal import Decimal as D

from market_helpers import BINANCE_BTC, BINANCE_ETH, NOW, OKX_BTC, OKX_ETH, instruments_map, put_book

from perpbot.book.store import BookStore
from perpbot.core.decisions import Decision, Leg
from perpbot.scanner.protocol import NO_SCREENS, MarketView, OpenTrade, Screens
from perpbot.scanner.scanner import Scanner
from perpbot.settings import PriceSpreadSettings
from perpbot.telemetry.metrics import Metrics
from strategies.price_spread import PriceSpreadStrategy

INSTRUMENTS = instruments_map(OKX_BTC, BINANCE_BTC, OKX_ETH, BINANCE_ETH)


class Recorder:
    """A strategy that records what it was shown and proposes one entry per call."""

    name = "recorder"

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str], int]] = []
        self.called = asyncio.Event()

    def screens(self) -> Screens:
        return NO_SCREENS

    def evaluate(self, view: MarketView, base: str, open_trades: list[OpenTrade]) -> list[Decision]:
        self.calls.append((base, [i.venue for i, _ in view.books_for(base)], len(open_trades)))
        self.called.set()
        leg = Leg("okx", "X", "buy", D(1), D(1))
        return [Decision(self.name, "open", base, (leg, leg), D(1), D(1), "recorded")]


def full_store(now=NOW) -> BookStore:
    store = BookStore(stale_after_s=5.0)
    put_book(store, OKX_BTC, [("60000.0", "100")], [("60000.1", "100")], now)
    put_book(store, BINANCE_BTC, [("60000.0", "1")], [("60000.1", "1")], now)
    put_book(store, OKX_ETH, [("3000.00", "100")], [("3000.01", "100")], now)
    put_book(store, BINANCE_ETH, [("3000.00", "10")], [("3000.01", "10")], now)
    return store


def scanner_with(store, strategies, metrics=None, now=NOW):
    return Scanner(store, strategies, metrics or Metrics(), INSTRUMENTS, {}, clock=lambda: now)


def test_scanner_evaluates_only_the_bases_whose_books_changed():
    recorder = Recorder()
    scanner = scanner_with(full_store(), [recorder])
    scanner.scan({("binance", "ETHUSDT")}, [])
    assert [c[0] for c in recorder.calls] == ["ETH"]
    scanner.scan({("okx", "BTC-USDT-SWAP"), ("binance", "BTCUSDT")}, [])
    assert [c[0] for c in recorder.calls] == ["ETH", "BTC"]


def test_scanner_ignores_unknown_instruments_and_empty_change_sets():
    recorder = Recorder()
    scanner = scanner_with(full_store(), [recorder])
    assert scanner.scan({("bybit", "SOLUSDT")}, []) == []
    assert scanner.scan(set(), []) == []
    assert recorder.calls == [] and scanner.scans == 0


def test_scanner_shows_strategies_no_invalid_book():
    store = full_store()
    store.get("binance", "BTCUSDT").invalidate("checksum")
    recorder = Recorder()
    scanner_with(store, [recorder]).scan({("okx", "BTC-USDT-SWAP")}, [])
    assert recorder.calls == [("BTC", ["okx"], 0)]


def test_scanner_shows_strategies_no_stale_book():
    store = full_store()
    put_book(store, OKX_BTC, [("60000.0", "100")], [("60000.1", "100")], NOW - 6)  # older than 5 s
    recorder = Recorder()
    scanner_with(store, [recorder]).scan({("okx", "BTC-USDT-SWAP")}, [])
    assert recorder.calls == [("BTC", ["binance"], 0)]


def test_scanner_passes_each_strategy_only_the_open_trades_of_that_base():
    recorder = Recorder()
    leg = Leg("okx", "ETH-USDT-SWAP", "buy", D(1), D(1))
    trades = [OpenTrade("a", "x", "ETH", (leg, leg), NOW, D(1)), OpenTrade("b", "x", "BTC", (leg, leg), NOW, D(1))]
    scanner_with(full_store(), [recorder]).scan({("okx", "ETH-USDT-SWAP")}, trades)
    assert recorder.calls == [("ETH", ["binance", "okx"], 1)]


def test_scanner_counts_every_entry_opportunity_by_strategy():
    store = full_store()
    put_book(store, BINANCE_BTC, [("60300.0", "1")], [("60300.1", "1")])  # 50 bps above OKX
    metrics = Metrics()
    strategy = PriceSpreadStrategy(PriceSpreadSettings(order_size_usdt=D("1000"), min_edge_bps=D("8")))
    decisions = scanner_with(store, [strategy], metrics).scan({("binance", "BTCUSDT")}, [])
    assert [(d.action, d.legs[0].venue, d.legs[1].venue) for d in decisions] == [("open", "okx", "binance")]
    sample = metrics.registry.get_sample_value
    assert sample("perpbot_arbitrage_opportunities_total", {"strategy": "price_spread"}) == 1.0


def test_scanner_keeps_running_other_strategies_when_one_raises():
    class Broken:
        name = "broken"

        def screens(self):
            return NO_SCREENS

        def evaluate(self, view, base, open_trades):
            raise ZeroDivisionError("bug")

    recorder = Recorder()
    decisions = scanner_with(full_store(), [Broken(), recorder]).scan({("okx", "BTC-USDT-SWAP")}, [])
    assert [d.strategy for d in decisions] == ["recorder"]


async def test_scanner_run_conflates_a_burst_of_updates_into_one_scan():
    store = full_store()
    recorder = Recorder()
    scanner = scanner_with(store, [recorder])
    handed: list[list[Decision]] = []
    delivered = asyncio.Event()

    async def on_decisions(decisions):
        handed.append(decisions)
        delivered.set()

    # 500 updates land before the scanner gets the loop: one scan must cover them all.
    for _ in range(250):
        store.mark_dirty("okx", "BTC-USDT-SWAP")
        store.mark_dirty("binance", "ETHUSDT")
    task = asyncio.create_task(scanner.run(on_decisions, lambda: []))
    try:
        await asyncio.wait_for(delivered.wait(), timeout=2)
        assert scanner.scans == 1
        assert sorted(c[0] for c in recorder.calls) == ["BTC", "ETH"]
        assert len(handed) == 1 and len(handed[0]) == 2
        assert store.dirty == set() and not store.changed.is_set()
        # A later update wakes it again.
        delivered.clear()
        store.mark_dirty("okx", "ETH-USDT-SWAP")
        await asyncio.wait_for(delivered.wait(), timeout=2)
        assert scanner.scans == 2
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_scanner_counts_a_persisting_opportunity_once_and_again_when_it_reappears():
    store = full_store()
    put_book(store, BINANCE_BTC, [("60300.0", "1")], [("60300.1", "1")])  # 50 bps above OKX
    metrics = Metrics()
    strategy = PriceSpreadStrategy(PriceSpreadSettings(order_size_usdt=D("1000"), min_edge_bps=D("8")))
    scanner = scanner_with(store, [strategy], metrics)
    sample = metrics.registry.get_sample_value
    for _ in range(3):  # the same dislocation seen on three book updates
        assert scanner.scan({("binance", "BTCUSDT")}, [])
    assert sample("perpbot_arbitrage_opportunities_total", {"strategy": "price_spread"}) == 1.0
    put_book(store, BINANCE_BTC, [("60000.0", "1")], [("60000.1", "1")])  # gone
    assert scanner.scan({("binance", "BTCUSDT")}, []) == []
    put_book(store, BINANCE_BTC, [("60300.0", "1")], [("60300.1", "1")])  # back: a new opportunity
    assert scanner.scan({("binance", "BTCUSDT")}, [])
    assert sample("perpbot_arbitrage_opportunities_total", {"strategy": "price_spread"}) == 2.0
