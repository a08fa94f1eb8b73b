"""Funding-spread strategy: hourly normalisation across 8h and 1h venues, entry economics, exits."""

from decimal import Decimal as D

from market_helpers import HYPERLIQUID_BTC, NOW, OKX_BTC, funding, instruments_map, put_book

from perpbot.book.store import BookStore
from perpbot.core.decisions import Leg
from perpbot.scanner.protocol import MarketView, OpenTrade
from perpbot.settings import FundingSpreadSettings
from strategies.funding_spread import FundingSpreadStrategy, hourly

# Same price on both venues: no price spread paid, so the edge is funding minus fees only.
OKX_LEVELS = ([("59999.0", "100")], [("60000.0", "100")])
HL_LEVELS = ([("59999", "1")], [("60000", "1")])


def view_with(okx_rate, okx_interval, hl_rate, now=NOW):
    store = BookStore()
    put_book(store, OKX_BTC, *OKX_LEVELS)
    put_book(store, HYPERLIQUID_BTC, *HL_LEVELS)
    rates = {}
    if okx_rate is not None:
        rates[OKX_BTC.key] = funding(OKX_BTC, okx_rate, okx_interval)
    if hl_rate is not None:
        rates[HYPERLIQUID_BTC.key] = funding(HYPERLIQUID_BTC, hl_rate, 1)
    return MarketView(store, rates, instruments_map(OKX_BTC, HYPERLIQUID_BTC), now)


def settings(**overrides):
    values = dict(order_size_usdt=D("6000"), entry_hourly_spread=D("0.00001"), exit_hourly_spread=D("0.000005"),
                  horizon_hours=D("8"), max_hold_s=28800.0)
    values.update(overrides)
    return FundingSpreadSettings(**values)


def test_funding_rates_are_compared_per_hour_across_8h_and_1h_venues():
    assert hourly(funding(OKX_BTC, "0.0001", 8)) == D("0.0000125")
    assert hourly(funding(HYPERLIQUID_BTC, "0.00005", 1)) == D("0.00005")
    assert hourly(funding(OKX_BTC, "0.0002", 4)) == D("0.00005")


def test_funding_spread_goes_long_the_lower_hourly_rate_even_when_its_raw_rate_is_higher():
    # OKX 0.0020 per 8h = 0.00025/h; Hyperliquid 0.0005 per hour. Raw OKX > HL, hourly OKX < HL.
    view = view_with("0.0020", 8, "0.0005")
    decisions = FundingSpreadStrategy(settings()).evaluate(view, "BTC", [])
    assert len(decisions) == 1
    buy, sell = decisions[0].legs
    assert (buy.venue, buy.side) == ("okx", "buy") and (sell.venue, sell.side) == ("hyperliquid", "sell")


def test_funding_spread_edge_is_expected_funding_minus_entry_and_exit_fees_and_price_spread():
    view = view_with("0.0030", 8, "0.0000125")  # 0.000375/h vs 0.0000125/h: long HL, short OKX
    decision = FundingSpreadStrategy(settings()).evaluate(view, "BTC", [])[0]
    qty = D("0.10")  # 6000 / 59999.5 = 0.1000008 rounded down onto OKX's 0.01 BTC contract
    buy_notional = qty * D("60000")  # Hyperliquid ask
    sell_notional = qty * D("59999.0")  # OKX bid
    spread = D("0.003") / 8 - D("0.0000125")
    expected = spread * 8 * (buy_notional + sell_notional) / 2
    fees_once = buy_notional * D("0.00045") + sell_notional * D("0.0005")
    edge = expected - 2 * fees_once - (buy_notional - sell_notional)
    assert decision.edge_usdt == edge
    assert decision.edge_bps == edge / buy_notional * 10000
    assert decision.legs[0] == Leg("hyperliquid", "BTC", "buy", qty, D("60000"))
    assert decision.legs[1] == Leg("okx", "BTC-USDT-SWAP", "sell", qty, D("59999.0"))


def test_funding_spread_that_does_not_pay_the_fees_over_the_horizon_is_not_entered():
    # 0.00005/h spread x 8h = 4 bps < 19 bps of taker fees in and out.
    view = view_with("0.0005", 8, "0.0000125")
    assert FundingSpreadStrategy(settings()).evaluate(view, "BTC", []) == []


def test_funding_spread_below_entry_threshold_is_not_entered_even_if_profitable():
    view = view_with("0.0030", 8, "0.0000125")
    assert FundingSpreadStrategy(settings(entry_hourly_spread=D("0.0004"))).evaluate(view, "BTC", []) == []


def test_funding_spread_without_a_rate_for_one_venue_does_nothing():
    view = view_with(None, 8, "0.0000125")
    assert FundingSpreadStrategy(settings()).evaluate(view, "BTC", []) == []


def trade(opened_at=NOW - 60):
    legs = (Leg("hyperliquid", "BTC", "buy", D("0.09"), D("60000")),
            Leg("okx", "BTC-USDT-SWAP", "sell", D("0.09"), D("59999.0")))
    return OpenTrade("f-1", "funding_spread", "BTC", legs, opened_at, D("12"))


def test_funding_spread_exits_when_the_funding_flips():
    # Now OKX (where we are short) pays less per hour than Hyperliquid (where we are long).
    view = view_with("0.00008", 8, "0.0000125")
    decisions = FundingSpreadStrategy(settings()).evaluate(view, "BTC", [trade()])
    assert len(decisions) == 1
    close = decisions[0]
    assert close.action == "close" and close.trade_id == "f-1" and close.reason.startswith("funding flipped")
    assert [(leg.venue, leg.side, leg.base_qty) for leg in close.legs] == [
        ("okx", "buy", D("0.09")), ("hyperliquid", "sell", D("0.09"))]


def test_funding_spread_exits_when_the_spread_falls_under_the_exit_threshold():
    view = view_with("0.000120", 8, "0.0000125")  # 0.0000025/h left < 0.000005
    decisions = FundingSpreadStrategy(settings()).evaluate(view, "BTC", [trade()])
    assert [d.reason.split(" ")[0:2] for d in decisions] == [["funding", "spread"]]


def test_funding_spread_holds_while_the_spread_persists_and_exits_after_max_hold():
    view = view_with("0.0030", 8, "0.0000125")
    strategy = FundingSpreadStrategy(settings())
    assert strategy.evaluate(view, "BTC", [trade()]) == []
    old = trade(opened_at=NOW - 28800)
    assert [d.reason for d in strategy.evaluate(view, "BTC", [old])] == ["max hold 28800s"]
