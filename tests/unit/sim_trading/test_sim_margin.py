"""The simulated venues' margin engine: tiers, liquidation price, liquidation on a shock, ADL, account modes."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from perpbot.core.margin import liquidation_distance_pct
from perpbot.sim.faults import Fault, FaultBoard
from perpbot.sim.market import Market
from perpbot.sim.trading.exchange import SimEvent, SimExchange
from perpbot.sim.trading.margin import VENUE_TIERS, liquidation_price, tier_for
from perpbot.sim.trading.margin_wire import (
    binance_margin_fields, bybit_margin_fields, hyperliquid_margin_fields, okx_margin_fields,
)
from perpbot.sim.trading.matching import SimReject

SYMBOLS = {"okx": ["BTC-USDT-SWAP"], "binance": ["BTCUSDT"], "bybit": ["BTCUSDT"], "hyperliquid": ["BTC"]}
NATIVE = {venue: symbols[0] for venue, symbols in SYMBOLS.items()}


def exchange(venue: str, wallet: str = "10000") -> tuple[SimExchange, Market, list[SimEvent]]:
    market = Market(7, SYMBOLS, clock=lambda: 1_700_000_000.0)
    sim = SimExchange(venue, market, FaultBoard(), clock=lambda: 1_700_000_000_000, start_balance=D(wallet))
    events: list[SimEvent] = []
    sim.add_listener(events.append)
    return sim, market, events


def open_long(sim: SimExchange, venue: str, leverage: str = "10", base: str = "1") -> None:
    symbol = NATIVE[venue]
    sim.set_leverage(symbol, D(leverage))
    qty = D(base) / sim.rules(symbol).contract_size
    sim.place_order(symbol, "buy", "market", qty)


@pytest.mark.parametrize("venue", sorted(VENUE_TIERS))
def test_maintenance_margin_is_continuous_across_every_tier_bound(venue):
    for lower, upper in zip(VENUE_TIERS[venue], VENUE_TIERS[venue][1:]):
        bound = lower.limit
        assert bound is not None
        assert bound * lower.rate - lower.deduction == bound * upper.rate - upper.deduction


def test_hyperliquid_maintenance_is_half_the_initial_margin_at_maximum_leverage():
    assert tier_for("hyperliquid", 40, D("1000000")).rate == D("0.0125")
    assert tier_for("hyperliquid", 25, D("10")).rate == D("0.02")


def test_isolated_long_liquidation_price_leaves_equity_equal_to_maintenance_margin():
    tier = tier_for("binance", 125, D("60000"))
    price = liquidation_price(D("1"), D("60000"), D("6000"), tier)
    assert price == D("54216.86746988")  # (60000 - 6000) / (1 - 0.004), rounded up toward the mark
    # At the printed price the equity is (just) above maintenance; one 1e-8 step lower it is below.
    assert D("6000") + (price - D("60000")) >= price * tier.rate
    below = price - D("1e-8")
    assert D("6000") + (below - D("60000")) < below * tier.rate
    # A short mirrors it: rounded down toward the mark.
    short = liquidation_price(D("-1"), D("60000"), D("6000"), tier)
    assert short == D("65737.05179282")


def test_a_long_backed_by_more_than_its_notional_has_no_liquidation_price():
    assert liquidation_price(D("1"), D("100"), D("1000"), tier_for("okx", 100, D("100"))) is None


@pytest.mark.parametrize("venue", sorted(SYMBOLS))
def test_a_shock_through_the_liquidation_price_liquidates_the_leg_at_the_mark_with_the_taker_fee(venue):
    sim, market, events = exchange(venue)
    open_long(sim, venue)
    symbol = NATIVE[venue]
    leg = sim.leg_risk(symbol)
    assert leg is not None and leg.liquidation_price is not None
    assert leg.distance_pct == liquidation_distance_pct(leg.size, leg.mark, leg.liquidation_price)
    assert D(0) < leg.distance_pct < D(100)
    assert sim.check_margin() == []  # not crossed: nothing happens
    market.apply_shock(venue, symbol, -float(leg.distance_pct) * 100 - 200)
    fees_before = sim.account.fees_paid
    fills = sim.check_margin()
    assert len(fills) == 1
    mark = market.mark(venue, symbol)
    fill = fills[0]
    assert fill.price == mark and fill.side == "sell" and fill.client_id is None
    assert fill.fee == fill.base_qty * mark * market.instrument(venue, symbol).taker_fee
    assert sim.account.fees_paid - fees_before == fill.fee
    assert sim.account.position(symbol).size == 0
    order = sim.account.orders[fill.order_id]
    assert order.origin == "liquidation" and order.status == "filled"
    kinds = [e.kind for e in events if e.order is None or e.order.origin is not None or e.kind == "account"]
    assert kinds[-2:] == ["fill", "account"]


def test_liquidation_cancels_the_symbols_open_orders_first():
    sim, market, events = exchange("binance")
    open_long(sim, "binance")
    bids, _ = market.levels("binance", "BTCUSDT")
    resting = sim.place_order("BTCUSDT", "buy", "limit", D("0.01"), price=bids[-1][0])
    leg = sim.leg_risk("BTCUSDT")
    market.apply_shock("binance", "BTCUSDT", -float(leg.distance_pct) * 100 - 200)
    sim.check_margin()
    assert resting.status in ("canceled", "filled")
    assert not sim.account.open_orders()


def test_adl_fault_deleverages_a_profitable_position_without_a_fee_and_waits_for_one():
    sim, market, events = exchange("bybit")
    open_long(sim, "bybit")
    sim.faults.add(Fault("adl", "bybit", "BTCUSDT"))
    market.apply_shock("bybit", "BTCUSDT", -30)
    assert sim.check_margin() == []  # in loss: not an ADL candidate; the fault stays pending
    assert sim.faults.pending()
    market.apply_shock("bybit", "BTCUSDT", 100)
    fills = sim.check_margin()
    assert len(fills) == 1 and fills[0].fee == 0
    assert sim.account.orders[fills[0].order_id].origin == "adl"
    assert sim.account.position("BTCUSDT").size == 0 and not sim.faults.pending()


def test_liquidate_fault_closes_one_leg_however_safe_it_is():
    sim, market, _ = exchange("okx", wallet="100000")
    open_long(sim, "okx", leverage="1")
    sim.faults.add(Fault("liquidate", "okx", "BTC-USDT-SWAP"))
    fills = sim.check_margin()
    assert len(fills) == 1 and sim.account.position("BTC-USDT-SWAP").size == 0
    assert fills[0].fee > 0


def test_margin_call_is_pushed_once_when_maintenance_reaches_the_call_ratio():
    sim, market, events = exchange("binance", wallet="1000")
    open_long(sim, "binance", leverage="100", base="0.5")
    leg = sim.leg_risk("BTCUSDT")
    # Most of the way to liquidation, not through it.
    market.apply_shock("binance", "BTCUSDT", -float(leg.distance_pct) * 100 * 0.98)
    sim.check_margin()
    sim.check_margin()
    calls = [e for e in events if e.kind == "margin_call"]
    assert len(calls) == 1 and calls[0].symbol == "BTCUSDT"
    assert sim.account.position("BTCUSDT").size > 0


def test_isolated_leg_is_backed_by_its_own_margin_only():
    sim, market, _ = exchange("okx", wallet="100000")
    sim.set_margin_mode("BTC-USDT-SWAP", "isolated")
    open_long(sim, "okx", leverage="10")
    leg = sim.leg_risk("BTC-USDT-SWAP")
    assert leg.margin_mode == "isolated"
    # Isolated at 10x: about 10 % away, although the wallet could carry far more.
    assert D("9") < leg.distance_pct < D("10")


def test_margin_and_position_modes_cannot_change_with_a_position_open():
    sim, market, _ = exchange("binance")
    open_long(sim, "binance")
    with pytest.raises(SimReject) as raised:
        sim.set_margin_mode("BTCUSDT", "isolated")
    assert raised.value.reason == "mode_change_refused"
    with pytest.raises(SimReject):
        sim.set_position_mode("hedge")
    assert sim.set_margin_mode("BTCUSDT", "cross") == "cross"  # no change: accepted


def test_hedge_mode_account_refuses_a_one_way_order():
    sim, market, _ = exchange("okx")
    sim.set_position_mode("hedge")
    with pytest.raises(SimReject) as raised:
        sim.place_order("BTC-USDT-SWAP", "buy", "market", D("1"))
    assert raised.value.reason == "position_mode"


def test_every_wire_prints_the_engines_own_liquidation_price():
    for venue in SYMBOLS:
        sim, _, _ = exchange(venue)
        open_long(sim, venue)
        symbol = NATIVE[venue]
        expected = sim.leg_risk(symbol).liquidation_price
        printed = {
            "okx": lambda: okx_margin_fields(sim, symbol)["liqPx"],
            "bybit": lambda: bybit_margin_fields(sim, symbol)["liqPrice"],
            "binance": lambda: binance_margin_fields(sim, symbol)["liquidationPrice"],
            "hyperliquid": lambda: hyperliquid_margin_fields(sim, symbol)["liquidationPx"],
        }[venue]()
        assert D(printed) == expected, venue
