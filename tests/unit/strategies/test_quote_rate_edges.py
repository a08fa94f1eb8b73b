"""A USDC-settled venue (Hyperliquid) against a USDT venue: the strategies price the USDC leg at the USDC/USDT
rate, in the edge, the size and the screens, never 1:1 unless the rate is 1."""

from decimal import Decimal as D

from market_helpers import BINANCE_BTC, HYPERLIQUID_BTC, NOW, OKX_BTC, funding, instruments_map, put_book

from perpbot.book.store import BookStore
from perpbot.core.decisions import Leg
from perpbot.scanner.protocol import MarketView, OpenTrade
from perpbot.scanner.scanner import Scanner
from perpbot.settings import FundingSpreadSettings, PriceSpreadSettings, StrategiesSettings
from perpbot.telemetry.metrics import Metrics
from strategies import build_strategies
from strategies.funding_spread import FundingSpreadStrategy
from strategies.price_spread import PriceSpreadStrategy

PRICE = PriceSpreadSettings(order_size_usdt=D("6000"), min_edge_bps=D("5"), exit_edge_bps=D("0"), max_hold_s=600.0)


def hl_vs_binance(hl_bids, hl_asks, binance_bids, binance_asks):
    store = BookStore(stale_after_s=5.0)
    put_book(store, HYPERLIQUID_BTC, hl_bids, hl_asks, NOW)
    put_book(store, BINANCE_BTC, binance_bids, binance_asks, NOW)
    return store, MarketView(store, {}, instruments_map(HYPERLIQUID_BTC, BINANCE_BTC), NOW)


# Raw prices do not cross (Hyperliquid's bid 60000 USDC < Binance's ask 60010 USDT); at 1.002 USDT per USDC
# the Hyperliquid bid is worth 60120 USDT, 18.3 bps over Binance's ask.
DEAR_USDC = dict(hl_bids=[("60000", "1")], hl_asks=[("60001", "1")],
                 binance_bids=[("60000.0", "1")], binance_asks=[("60010.0", "1")])


def test_a_dear_usdc_makes_an_edge_that_raw_prices_do_not_show_and_it_is_priced_in_usdt():
    _, view = hl_vs_binance(**DEAR_USDC)
    assert PriceSpreadStrategy(PRICE).evaluate(view, "BTC", []) == []  # at 1:1 nothing crosses
    (decision,) = PriceSpreadStrategy(PRICE, usdc_usdt=D("1.002")).evaluate(view, "BTC", [])
    # Size: 6000 USDT at the mid in USDT ((60000.5 x 1.002 + 60005) / 2 = 60062.7505) = 0.09989 BTC,
    # on Binance's 0.001 lot -> 0.099 BTC.
    qty = D("0.099")
    buy_usdt = qty * D("60010.0")  # Binance, USDT
    sell_usdt = qty * D("60000") * D("1.002")  # Hyperliquid, USDC at the rate
    fees = buy_usdt * D("0.0005") + sell_usdt * D("0.00045")
    edge = sell_usdt - buy_usdt - fees
    assert decision.edge_usdt == edge
    assert decision.edge_bps == edge / buy_usdt * 10000
    assert D("8.8") < decision.edge_bps < D("8.9")
    # Each leg keeps its venue's own price (its own currency).
    assert decision.legs == (Leg("binance", "BTCUSDT", "buy", qty, D("60010.0")),
                             Leg("hyperliquid", "BTC", "sell", qty, D("60000")))


def test_a_dear_usdc_removes_an_edge_that_raw_prices_show():
    # Raw: buy Hyperliquid at 60000, sell Binance at 60100: 16.7 bps, 7.2 after fees. At 1.002 the
    # Hyperliquid ask costs 60120 USDT: above Binance's bid, no entry.
    _, view = hl_vs_binance([("59999", "1")], [("60000", "1")], [("60100.0", "1")], [("60101.0", "1")])
    (at_par,) = PriceSpreadStrategy(PRICE).evaluate(view, "BTC", [])
    assert at_par.legs[0].venue == "hyperliquid"
    assert PriceSpreadStrategy(PRICE, usdc_usdt=D("1.002")).evaluate(view, "BTC", []) == []


def test_the_scanner_screens_let_through_an_edge_only_the_rate_makes():
    store, _ = hl_vs_binance(**DEAR_USDC)
    config = StrategiesSettings(price_spread=PRICE)
    instruments = instruments_map(HYPERLIQUID_BTC, BINANCE_BTC)
    at_par = Scanner(store, build_strategies(config), Metrics(), instruments, {}, clock=lambda: NOW)
    assert at_par.scan((BINANCE_BTC.key,), []) == []
    dear = Scanner(store, build_strategies(config, D("1.002")), Metrics(), instruments, {}, clock=lambda: NOW)
    decisions = dear.scan((BINANCE_BTC.key,), [])
    assert [(d.strategy, d.legs[0].venue) for d in decisions] == [("price_spread", "binance")]


def test_the_close_of_a_usdc_usdt_trade_is_priced_at_the_rate():
    # Long Hyperliquid, short Binance, both at 60000 now: at 1:1 the close costs only fees (-9.5 bps), at 1.002
    # selling the USDC leg earns 20 bps more.
    _, view = hl_vs_binance([("60000", "1")], [("60001", "1")], [("59999.0", "1")], [("60000.0", "1")])
    legs = (Leg("hyperliquid", "BTC", "buy", D("0.1"), D("59000")), Leg("binance", "BTCUSDT", "sell", D("0.1"),
                                                                        D("59100.0")))
    trade = OpenTrade("t-1", "price_spread", "BTC", legs, NOW - 10, D("0"))
    assert PriceSpreadStrategy(PRICE).evaluate(view, "BTC", [trade]) == []
    (close,) = PriceSpreadStrategy(PRICE, usdc_usdt=D("1.002")).evaluate(view, "BTC", [trade])
    buy_usdt, sell_usdt = D("0.1") * D("60000.0"), D("0.1") * D("60000") * D("1.002")
    edge = sell_usdt - buy_usdt - buy_usdt * D("0.0005") - sell_usdt * D("0.00045")
    assert (close.action, close.trade_id, close.edge_usdt) == ("close", "t-1", edge)


def test_funding_spread_counts_the_usdc_leg_at_the_rate():
    store = BookStore()
    put_book(store, OKX_BTC, [("59999.0", "100")], [("60000.0", "100")])
    put_book(store, HYPERLIQUID_BTC, [("59999", "1")], [("60000", "1")])
    rates = {OKX_BTC.key: funding(OKX_BTC, "0.0030", 8), HYPERLIQUID_BTC.key: funding(HYPERLIQUID_BTC, "0.0000125", 1)}
    view = MarketView(store, rates, instruments_map(OKX_BTC, HYPERLIQUID_BTC), NOW)
    config = FundingSpreadSettings(order_size_usdt=D("6000"), entry_hourly_spread=D("0.00001"),
                                   exit_hourly_spread=D("0.000005"), horizon_hours=D("8"), max_hold_s=28800.0)
    rate = D("1.0005")
    (decision,) = FundingSpreadStrategy(config, usdc_usdt=rate).evaluate(view, "BTC", [])
    # Long Hyperliquid (USDC), short OKX (USDT). Size: 6000 USDT at the mid in USDT ((59999.5 x 1.0005 + 59999.5)
    # / 2 = 60014.5) = 0.09997 BTC, on OKX's 0.01 BTC contract -> 0.09 (at 1:1 it was 0.10).
    qty = D("0.09")
    buy_usdt = qty * D("60000") * rate
    sell_usdt = qty * D("59999.0")
    spread = D("0.003") / 8 - D("0.0000125")
    fees_once = buy_usdt * D("0.00045") + sell_usdt * D("0.0005")
    edge = spread * 8 * (buy_usdt + sell_usdt) / 2 - 2 * fees_once - (buy_usdt - sell_usdt)
    assert decision.edge_usdt == edge
    assert decision.edge_bps == edge / buy_usdt * 10000
    (at_par,) = FundingSpreadStrategy(config).evaluate(view, "BTC", [])
    assert at_par.edge_usdt > decision.edge_usdt  # the dearer USDC leg costs more to buy
