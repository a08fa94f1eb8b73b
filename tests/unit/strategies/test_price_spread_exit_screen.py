"""Price-spread exit screen: skipping the depth-weighted close quote never changes an exit decision."""

import dataclasses
from decimal import Decimal as D

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from market_helpers import BINANCE_BTC, NOW, OKX_BTC, instruments_map, put_book

from perpbot.book.store import BookStore
from perpbot.core.decisions import Leg
from perpbot.scanner.protocol import MarketView, OpenTrade
from perpbot.settings import PriceSpreadSettings
from strategies.price_spread import PriceSpreadStrategy

fees = st.sampled_from(["0", "0.0002", "0.0005", "0.00055", "0.001", "0.01"])


@st.composite
def side(draw, top: int, step: int, contract: bool):
    """1-3 levels from `top` (dimes), `step` dimes apart, sizes in venue units."""
    unit = 100 if contract else 1
    sizes = st.sampled_from([D("0.01"), D("0.03"), D("0.09"), D("1")])
    return [(f"{(top + step * i) / 10:.1f}", str(draw(sizes) * unit)) for i in range(draw(st.integers(1, 3)))]


@st.composite
def cases(draw, mixed: bool = False):
    """A held trade and two books; `mixed`: the second venue settles in USDC, at a USDC/USDT rate drawn too."""
    okx = dataclasses.replace(OKX_BTC, taker_fee=D(draw(fees)))
    binance = dataclasses.replace(BINANCE_BTC, taker_fee=D(draw(fees)), quote="USDC" if mixed else "USDT")
    rate = D(draw(st.sampled_from(["1", "0.9987", "1.0004", "1.0021"]))) if mixed else D(1)
    okx_bid = 600000 + draw(st.integers(-1500, 1500))
    binance_ask = 600000 + draw(st.integers(-1500, 1500))
    store = BookStore(stale_after_s=5.0)
    put_book(store, okx, draw(side(okx_bid, -1, True)), draw(side(okx_bid + draw(st.integers(1, 20)), 1, True)), NOW)
    put_book(store, binance, draw(side(binance_ask - draw(st.integers(1, 20)), -1, False)),
             draw(side(binance_ask, 1, False)), NOW)
    view = MarketView(store, {}, instruments_map(okx, binance), NOW)
    qty = D(draw(st.sampled_from(["0.01", "0.05", "0.09", "0.2"])))
    legs = (Leg("okx", "BTC-USDT-SWAP", "buy", qty, D("60001.0")), Leg("binance", "BTCUSDT", "sell", qty, D("60090.0")))
    entry = D(draw(st.sampled_from(["0", "5", "8", "10", "19.123456789012345678901234567", "-3", "40"])))
    age = draw(st.sampled_from([10.0, 599.0, 600.0, 601.0]))
    trade = OpenTrade("t-1", "price_spread", "BTC", legs, NOW - age, entry)
    exit_edge = D(draw(st.sampled_from(["0", "-5", "2", "0.5"])))
    return view, trade, PriceSpreadSettings(exit_edge_bps=exit_edge, max_hold_s=600.0), rate


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(cases(), cases(mixed=True)))
def test_exit_with_screen_equals_exit_without(case):
    view, trade, config, rate = case
    screened = PriceSpreadStrategy(config, rate)
    full = PriceSpreadStrategy(config, rate)
    full.exit_screen = False
    got = screened.evaluate(view, "BTC", [trade])
    assert got == full.evaluate(view, "BTC", [trade])
    # and again from the cache of the screen's constants
    assert screened.evaluate(view, "BTC", [trade]) == got


def test_exit_screen_holds_a_trade_that_cannot_have_converged_and_passes_one_at_the_boundary():
    store = BookStore(stale_after_s=5.0)
    put_book(store, OKX_BTC, [("60000.0", "100")], [("60000.1", "100")], NOW)
    put_book(store, BINANCE_BTC, [("60005.9", "1")], [("60006.0", "1")], NOW)
    view = MarketView(store, {}, instruments_map(OKX_BTC, BINANCE_BTC), NOW)
    legs = (Leg("okx", "BTC-USDT-SWAP", "buy", D("0.09"), D("60001.0")),
            Leg("binance", "BTCUSDT", "sell", D("0.09"), D("60090.0")))
    strategy = PriceSpreadStrategy(PriceSpreadSettings(exit_edge_bps=D("0")))
    # Reverse edge: (60000 x 0.9995 - 60006 x 1.0005) / 60006 x 1e4 = -11.0 bps: 5 bps at entry cannot close.
    held = OpenTrade("t-1", "price_spread", "BTC", legs, NOW - 10, D("5"))
    assert strategy.evaluate(view, "BTC", [held]) == []
    a, b = strategy._exit_factors(held, OKX_BTC, BINANCE_BTC)
    assert 60000 * 10**9 * a < 60006 * 10**9 * b  # the screen, not the quote, said no
    # 15 bps at entry: the round trip is +4 bps and the quote runs (the screen must let it through).
    closing = OpenTrade("t-2", "price_spread", "BTC", legs, NOW - 10, D("15"))
    decisions = strategy.evaluate(view, "BTC", [closing])
    assert [(d.action, d.trade_id) for d in decisions] == [("close", "t-2")]
