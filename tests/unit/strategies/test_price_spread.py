"""Price-spread strategy: edge arithmetic against a hand computation, entries and exits."""

from decimal import Decimal as D

import pytest
from market_helpers import BINANCE_BTC, BYBIT_BTC, NOW, OKX_BTC, instruments_map, put_book

from perpbot.book.store import BookStore
from perpbot.core.decisions import Leg
from perpbot.scanner.protocol import MarketView, OpenTrade
from perpbot.settings import PriceSpreadSettings
from strategies import build_strategies
from strategies.price_spread import PriceSpreadStrategy
from perpbot.settings import StrategiesSettings


def market(okx_bids, okx_asks, binance_bids, binance_asks, now=NOW):
    store = BookStore(stale_after_s=5.0)
    put_book(store, OKX_BTC, okx_bids, okx_asks, now)
    put_book(store, BINANCE_BTC, binance_bids, binance_asks, now)
    return MarketView(store, {}, instruments_map(OKX_BTC, BINANCE_BTC), now)


# OKX sizes are contracts of 0.01 BTC: 5 contracts = 0.05 BTC.
CROSSED = dict(
    okx_bids=[("59990.0", "100")],
    okx_asks=[("60000.0", "5"), ("60001.0", "100")],
    binance_bids=[("60100.0", "0.02"), ("60090.0", "1")],
    binance_asks=[("60110.0", "1")],
)


def settings(**overrides):
    values = dict(order_size_usdt=D("6000"), min_edge_bps=D("5"), exit_edge_bps=D("0"), max_hold_s=600.0)
    values.update(overrides)
    return PriceSpreadSettings(**values)


def test_price_spread_edge_matches_hand_computation_with_depth_and_both_fees():
    view = market(**CROSSED)
    decisions = PriceSpreadStrategy(settings()).evaluate(view, "BTC", [])
    assert len(decisions) == 1
    decision = decisions[0]
    # Size: 6000 USDT at the pair's mid ((59995 + 60105) / 2 = 60050) = 0.0999 BTC, rounded down
    # onto the common lot (OKX 1 contract = 0.01 BTC) -> 0.09 BTC.
    buy_notional = D("0.05") * D("60000.0") + D("0.04") * D("60001.0")  # eats two OKX ask levels
    sell_notional = D("0.02") * D("60100.0") + D("0.07") * D("60090.0")  # two Binance bid levels
    fees = buy_notional * D("0.0005") + sell_notional * D("0.0005")
    edge_usdt = sell_notional - buy_notional - fees
    assert buy_notional == D("5400.04") and sell_notional == D("5408.3")
    assert decision.edge_usdt == edge_usdt == D("2.85583")
    assert decision.edge_bps == edge_usdt / buy_notional * 10000
    assert D("5.28") < decision.edge_bps < D("5.29")
    buy, sell = decision.legs
    assert (buy.venue, buy.side, buy.base_qty, buy.ref_price) == ("okx", "buy", D("0.09"), D("60001.0"))
    assert (sell.venue, sell.side, sell.base_qty, sell.ref_price) == ("binance", "sell", D("0.09"), D("60090.0"))
    assert decision.action == "open" and decision.strategy == "price_spread" and decision.trade_id is None


def test_price_spread_below_min_edge_after_fees_is_not_an_opportunity():
    view = market(**CROSSED)
    assert PriceSpreadStrategy(settings(min_edge_bps=D("5.3"))).evaluate(view, "BTC", []) == []


def test_price_spread_top_of_book_looks_profitable_but_depth_for_the_size_does_not():
    # Top levels cross by 100 USDT but hold only 0.01 BTC; the rest of the size eats worse levels.
    view = market(
        okx_bids=[("59990.0", "100")],
        okx_asks=[("60000.0", "1"), ("60060.0", "100")],
        binance_bids=[("60100.0", "0.01"), ("60040.0", "1")],
        binance_asks=[("60110.0", "1")],
    )
    assert PriceSpreadStrategy(settings(min_edge_bps=D("0"))).evaluate(view, "BTC", []) == []


def test_price_spread_too_thin_book_for_the_size_gives_no_decision():
    view = market(
        okx_bids=[("59990.0", "100")],
        okx_asks=[("60000.0", "2")],
        binance_bids=[("60500.0", "1")],
        binance_asks=[("60510.0", "1")],
    )
    assert PriceSpreadStrategy(settings(min_edge_bps=D("0"))).evaluate(view, "BTC", []) == []


def open_trade(entry_edge_bps, opened_at=NOW - 10):
    legs = (
        Leg("okx", "BTC-USDT-SWAP", "buy", D("0.09"), D("60001.0")),
        Leg("binance", "BTCUSDT", "sell", D("0.09"), D("60090.0")),
    )
    return OpenTrade("t-1", "price_spread", "BTC", legs, opened_at, D(entry_edge_bps))


def test_price_spread_no_second_entry_on_a_pair_that_holds_a_trade():
    view = market(**CROSSED)
    decisions = PriceSpreadStrategy(settings()).evaluate(view, "BTC", [open_trade("5")])
    assert [d.action for d in decisions] == []


# Spread has come back: OKX bid 60080 now above Binance ask 60070 -> closing gains 0.9 USDT gross.
CONVERGED = dict(
    okx_bids=[("60080.0", "100")],
    okx_asks=[("60090.0", "100")],
    binance_bids=[("60060.0", "1")],
    binance_asks=[("60070.0", "1")],
)


def test_price_spread_exits_when_round_trip_edge_reaches_exit_threshold():
    view = market(**CONVERGED)
    decisions = PriceSpreadStrategy(settings()).evaluate(view, "BTC", [open_trade("10")])
    assert len(decisions) == 1
    close = decisions[0]
    buy_notional = D("0.09") * D("60070.0")
    sell_notional = D("0.09") * D("60080.0")
    reverse = sell_notional - buy_notional - (buy_notional + sell_notional) * D("0.0005")
    assert close.edge_usdt == reverse
    assert close.action == "close" and close.trade_id == "t-1" and close.reason.startswith("converged")
    buy, sell = close.legs
    assert (buy.venue, buy.side, buy.base_qty, buy.ref_price) == ("binance", "buy", D("0.09"), D("60070.0"))
    assert (sell.venue, sell.side, sell.base_qty, sell.ref_price) == ("okx", "sell", D("0.09"), D("60080.0"))
    # 10 bps gained at entry + reverse edge (-8.34 bps) >= 0.
    assert D(10) + close.edge_bps >= 0


def test_price_spread_holds_while_closing_would_cost_more_than_the_entry_gained():
    view = market(**CONVERGED)
    assert PriceSpreadStrategy(settings()).evaluate(view, "BTC", [open_trade("8")]) == []


def test_price_spread_exits_after_max_hold_even_at_a_loss():
    view = market(**CONVERGED)
    trade = open_trade("8", opened_at=NOW - 601)
    decisions = PriceSpreadStrategy(settings()).evaluate(view, "BTC", [trade])
    assert [(d.action, d.reason.split(" ")[0]) for d in decisions] == [("close", "max")]


def test_price_spread_cannot_exit_when_a_leg_book_is_stale():
    view = market(**CONVERGED, now=NOW)
    view.now = NOW + 60  # both books 60 s old: not usable
    assert PriceSpreadStrategy(settings()).evaluate(view, "BTC", [open_trade("10", opened_at=0)]) == []


@pytest.mark.parametrize(
    "price_enabled, funding_enabled, names",
    [(True, True, ["price_spread", "funding_spread"]), (False, True, ["funding_spread"]), (True, False, ["price_spread"]),
     (False, False, [])],
)
def test_build_strategies_follows_the_enabled_flags(price_enabled, funding_enabled, names):
    config = StrategiesSettings(price_spread={"enabled": price_enabled}, funding_spread={"enabled": funding_enabled})
    assert [s.name for s in build_strategies(config)] == names


def test_price_spread_never_enters_on_a_venue_symbol_held_by_another_strategys_trade():
    # Positions net per venue and symbol: a second trade on OKX BTC would cancel the first's leg.
    view = market(**CROSSED)
    funding_trade = OpenTrade(
        "f1", "funding_spread", "BTC",
        (Leg("okx", "BTC-USDT-SWAP", "buy", D("0.05"), D("60000")),
         Leg("bybit", "BTCUSDT", "sell", D("0.05"), D("60010"))),
        NOW - 10, D("3"),
    )
    assert PriceSpreadStrategy(settings()).evaluate(view, "BTC", [funding_trade]) == []
    assert [d.action for d in PriceSpreadStrategy(settings()).evaluate(view, "BTC", [])] == ["open"]


def test_entries_competing_for_one_book_come_best_edge_first():
    """OKX is cheap against both Binance and Bybit, Bybit by more: both entries are found (and
    counted), the Bybit one first, so the engine makes it and skips the Binance one (OKX is then held)."""
    store = BookStore(stale_after_s=5.0)
    put_book(store, OKX_BTC, [("59990.0", "100")], [("60000.0", "100")], NOW)
    put_book(store, BINANCE_BTC, [("60100.0", "1")], [("60110.0", "1")], NOW)
    put_book(store, BYBIT_BTC, [("60200.0", "1")], [("60210.0", "1")], NOW)
    view = MarketView(store, {}, instruments_map(OKX_BTC, BINANCE_BTC, BYBIT_BTC), NOW)
    decisions = PriceSpreadStrategy(settings()).evaluate(view, "BTC", [])
    assert [{leg.venue for leg in d.legs} for d in decisions] == [{"okx", "bybit"}, {"okx", "binance"}]
    assert decisions[0].edge_bps > decisions[1].edge_bps
