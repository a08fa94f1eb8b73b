"""Pure matching and account arithmetic of the simulated venues: sweeps, validation, positions, funding."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given, strategies as st

from perpbot.sim.trading.accounts import SimPosition
from perpbot.sim.trading.exchange import SimExchange
from perpbot.sim.trading.matching import SimInstrumentRules, SimReject, sweep, validate_order
from perpbot.sim.market import SimInstrument

RULES = SimInstrumentRules(tick=D("0.1"), lot=D("0.001"), min_qty=D("0.001"), min_notional=D("5"),
                           contract_size=D("1"))
ASKS = [(D("100.0"), D("1")), (D("100.1"), D("2")), (D("100.5"), D("5"))]
BIDS = [(D("99.9"), D("1")), (D("99.8"), D("3"))]


class TinyMarket:
    """Deterministic stand-in market with one symbol and hand-set books."""

    def __init__(self) -> None:
        self.bids, self.asks = list(BIDS), list(ASKS)
        self.rate = D("0.0001")
        self.inst = SimInstrument("binance", "XUSDT", "X", "USDT", D("0.1"), D("0.001"), D("0.001"), D("5"),
                                  D("1"), D("0.0005"), D("0.0002"), 8, 20)

    def instrument(self, venue, symbol):
        if symbol != "XUSDT":
            raise KeyError(symbol)
        return self.inst

    def levels(self, venue, symbol):
        return self.bids, self.asks

    def mark(self, venue, symbol):
        return D("100")

    def funding(self, venue, symbol):
        return self.rate, 8, 8 * 3_600_000

    def symbols(self, venue):
        return ["XUSDT"]


def test_sweep_stops_at_the_limit_price_and_reports_partial_depth():
    assert sweep("buy", D("10"), D("100.1"), BIDS, ASKS) == [(D("100.0"), D("1")), (D("100.1"), D("2"))]
    assert sweep("sell", D("2"), None, BIDS, ASKS) == [(D("99.9"), D("1")), (D("99.8"), D("1"))]


@pytest.mark.parametrize("qty,price,reason", [
    (D("0.0015"), D("100"), "bad_lot"), (D("1"), D("100.05"), "bad_tick"), (D("0.001"), D("100"), "min_notional"),
])
def test_order_off_the_instrument_grid_is_refused_with_its_reason(qty, price, reason):
    with pytest.raises(SimReject) as raised:
        validate_order(RULES, qty, price, D("100"), reduce_only=False)
    assert raised.value.reason == reason


def test_reduce_only_dust_close_is_exempt_from_min_notional():
    validate_order(RULES, D("0.001"), D("100"), D("100"), reduce_only=True)


def test_position_reduction_realises_pnl_and_a_flip_reopens_at_the_fill_price():
    pos = SimPosition("X")
    pos.apply(D("2"), D("100"), 1)
    pos.apply(D("2"), D("110"), 2)
    assert pos.entry == D("105")
    assert pos.apply(D("-1"), D("115"), 3) == D("10")
    assert pos.apply(D("-5"), D("100"), 4) == D("-15")
    assert pos.size == D("-2") and pos.entry == D("100")


@given(st.lists(st.tuples(st.integers(-50, 50).filter(bool), st.integers(900, 1100)), min_size=1, max_size=30))
def test_realised_plus_unrealised_pnl_equals_cash_flow_of_the_fills(fills):
    pos = SimPosition("X")
    cash = D(0)
    realised = D(0)
    for qty, price in fills:
        realised += pos.apply(D(qty), D(price), 0)
        cash -= D(qty) * D(price)
    mark = D(1000)
    # Marking the position to market must give back exactly the cash the fills moved.
    assert abs(realised + pos.unrealized(mark) - (cash + pos.size * mark)) < D("1e-20")


def test_ioc_partial_fill_charges_taker_fee_and_cancels_the_rest():
    sim = SimExchange("binance", TinyMarket())
    order = sim.place_order("XUSDT", "buy", "limit", D("5"), D("100.1"), "IOC")
    assert order.filled == D("3") and order.status == "canceled"
    fee = (D("100.0") * 1 + D("100.1") * 2) * D("0.0005")
    assert sim.account.wallet == D(100000) - fee
    assert sim.account.positions["XUSDT"].size == D("3")


def test_resting_order_fills_as_maker_when_the_book_moves_through_it():
    market = TinyMarket()
    sim = SimExchange("binance", market)
    order = sim.place_order("XUSDT", "buy", "limit", D("1"), D("99.5"), "GTC", client_id="a1")
    assert order.status == "new"
    market.asks = [(D("99.4"), D("10"))]
    sim.match_resting()
    assert order.status == "filled"
    assert sim.account.fills[-1].liquidity == "maker"
    assert sim.account.fills[-1].fee == D("99.5") * D("0.0002")


def test_duplicate_client_id_and_increasing_reduce_only_are_rejected():
    sim = SimExchange("binance", TinyMarket())
    sim.place_order("XUSDT", "buy", "limit", D("0.1"), D("99.0"), "GTC", client_id="dup")
    with pytest.raises(SimReject) as dup:
        sim.place_order("XUSDT", "buy", "limit", D("0.1"), D("99.0"), "GTC", client_id="dup")
    assert dup.value.reason == "duplicate_client_id"
    with pytest.raises(SimReject) as ro:
        sim.place_order("XUSDT", "buy", "limit", D("0.1"), D("100.0"), "IOC", reduce_only=True)
    assert ro.value.reason == "reduce_only"


def test_reduce_only_bigger_than_the_position_would_flip_and_is_rejected():
    sim = SimExchange("binance", TinyMarket())
    sim.set_position("XUSDT", D("1"), D("100"))
    with pytest.raises(SimReject) as ro:
        sim.place_order("XUSDT", "sell", "market", D("2"), reduce_only=True)
    assert ro.value.reason == "reduce_only"


def test_margin_check_uses_leverage():
    sim = SimExchange("binance", TinyMarket())
    market_qty = D("2000")  # 200k notional at 1x > 100k balance
    with pytest.raises(SimReject) as raised:
        sim.place_order("XUSDT", "buy", "limit", market_qty, D("99.0"), "GTC")
    assert raised.value.reason == "insufficient_margin"
    sim.set_leverage("XUSDT", D("5"))
    assert sim.place_order("XUSDT", "buy", "limit", market_qty, D("99.0"), "GTC").status == "new"


def test_funding_is_settled_once_per_interval_longs_pay_positive_rate():
    sim = SimExchange("binance", TinyMarket())
    sim.set_position("XUSDT", D("10"), D("100"))
    assert sim.settle_funding(8 * 3_600_000 - 1) == []
    payments = sim.settle_funding(16 * 3_600_000)
    assert [p.ts_ms for p in payments] == [8 * 3_600_000, 16 * 3_600_000]
    assert sim.account.wallet == D(100000) - 2 * D("10") * D("100") * D("0.0001")
    assert sim.settle_funding(16 * 3_600_000) == []


def test_snapshot_is_json_ready_strings():
    sim = SimExchange("binance", TinyMarket())
    sim.place_order("XUSDT", "buy", "limit", D("1"), D("100.0"), "IOC")
    snap = sim.snapshot()
    assert snap["positions"]["XUSDT"]["size"] == "1"
    assert snap["fills"][0]["price"] == "100"
    assert isinstance(snap["margin"]["equity"], str)


def test_order_and_fill_histories_are_bounded_and_open_orders_are_never_forgotten():
    """A simulator that runs for weeks keeps the newest N closed orders and N fills; positions and
    the wallet stay exact because they never depend on the history."""
    sim = SimExchange("binance", TinyMarket())
    sim.account.max_orders = sim.account.max_fills = 5
    resting = sim.place_order("XUSDT", "buy", "limit", D("0.1"), D("99.0"), "GTC", client_id="rest")
    taken = [sim.place_order("XUSDT", "buy", "limit", D("0.1"), D("100.0"), "IOC", client_id=f"c{n}")
             for n in range(8)]
    assert all(o.status == "filled" for o in taken)
    account = sim.account
    # 9 orders placed, 5 kept: the resting (open) one and the newest 4 closed ones.
    assert list(account.orders) == [resting.order_id] + [o.order_id for o in taken[-4:]]
    assert set(account.client_ids) == {"rest", "c4", "c5", "c6", "c7"}
    assert [f.client_id for f in account.fills] == ["c3", "c4", "c5", "c6", "c7"]  # 8 fills, newest 5 kept
    assert account.positions["XUSDT"].size == D("0.8")
    fee = D("0.1") * D("100.0") * D("0.0005") * 8
    assert account.wallet == D(100000) - fee
    assert sim.open_orders() == [resting]
    with pytest.raises(SimReject) as gone:
        sim.get_order("XUSDT", client_id="c0")
    assert gone.value.reason == "unknown_order"
