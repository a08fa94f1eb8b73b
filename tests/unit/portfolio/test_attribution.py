"""Per-trade attribution, pure: a long and a short leg from entry to exit across a funding payment, every
figure computed by hand, and the parts adding up to the realised PnL exactly."""

from __future__ import annotations

from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st

from perpbot.core.decisions import LegExpectation
from perpbot.portfolio.attribution import (
    LegFill, LegInputs, TradeAttribution, attribute_leg, daily_summary,
)
from perpbot.portfolio.book import Portfolio

HOUR = D(3600)


def expectation(top: str, depth: str, fee: str = "0.0005", rate: str = "0.0001", interval_h: int = 8) -> LegExpectation:
    return LegExpectation(top_price=D(top), depth_price=D(depth), fee_rate=D(fee), funding_rate=D(rate),
                          funding_interval_s=interval_h * HOUR, expected_funding_usdt=D(0))


def long_leg() -> LegInputs:
    """Bought 0.01 BTC in two fills above the expected depth price, sold it back below the exit's."""
    return LegInputs(
        venue="binance", symbol="BTCUSDT", side="buy",
        fills=(LegFill("buy", D("0.006"), D("60010"), D("0.18003"), 1.0),
               LegFill("buy", D("0.004"), D("60012"), D("0.120024"), 1.0),
               LegFill("sell", D("0.01"), D("60100"), D("0.3005"), 3601.0)),
        funding=(D("-0.06"),),
        entry=expectation(top="60005", depth="60008"),
        exit=expectation(top="60110", depth="60104", rate="0"),
        held_s=D(3600),
    )


def test_long_leg_figures_are_the_hand_computed_ones():
    leg = attribute_leg(long_leg())
    entry_notional = D("0.006") * D("60010") + D("0.004") * D("60012")  # 600.108
    assert leg.entry_qty == D("0.01") and leg.exit_qty == D("0.01")
    assert leg.entry_price == entry_notional / D("0.01") == D("60010.8")
    assert leg.exit_price == D("60100")
    # Entry paid 0.108 above the depth price 60008 x 0.01 = 600.08: + 0.028 USDT slippage.
    assert leg.entry_slippage_usdt == entry_notional - D("600.08") == D("0.028")
    assert leg.entry_slippage_top_usdt == entry_notional - D("600.05") == D("0.058")
    # Exit sold at 60100 where 60104 was expected: 0.04 USDT lost.
    assert leg.exit_slippage_usdt == D("0.04")
    assert leg.exit_slippage_top_usdt == D("0.1")
    assert leg.fees_usdt == D("0.600554")
    assert leg.expected_fees_usdt == (entry_notional + D("601")) * D("0.0005") == D("0.600554")
    assert leg.fee_drift_usdt == 0
    # A long pays a positive rate: 0.0001 per 8 h, held 1 h, on 0.01 x 60008.
    assert leg.expected_funding_usdt == -D("0.01") * D("60008") * D("0.0001") * D(3600) / (8 * HOUR) == D("-0.0075010")
    assert leg.funding_usdt == D("-0.06")
    assert leg.funding_drift_usdt == D("-0.06") - leg.expected_funding_usdt
    assert leg.basis_usdt == D("601") - entry_notional == D("0.892")
    assert leg.expected_basis_usdt == D("0.01") * (D("60104") - D("60008")) == D("0.96")
    assert leg.slippage_usdt == D("0.068") == leg.entry_slippage_usdt + leg.exit_slippage_usdt
    assert leg.total_usdt == D("0.892") - D("0.600554") - D("0.06")
    assert sum(leg.parts().values(), D(0)) == leg.total_usdt


def test_short_leg_slippage_and_funding_have_the_short_signs():
    leg = attribute_leg(LegInputs(
        venue="hyperliquid", symbol="BTC", side="sell",
        fills=(LegFill("sell", D("0.01"), D("60200"), D("0.2709"), 1.0),
               LegFill("buy", D("0.01"), D("60150"), D("0.270675"), 2.0)),
        funding=(D("0.03"), D("0.031")), entry=expectation("60210", "60205", fee="0.00045"),
        exit=expectation("60140", "60145", fee="0.00045"), held_s=D(7200),
    ))
    assert leg.entry_slippage_usdt == D("0.05")  # sold 5 below the expected depth price
    assert leg.exit_slippage_usdt == D("0.05")  # bought back 5 above it
    assert leg.expected_funding_usdt > 0  # a short receives a positive rate
    assert leg.funding_usdt == D("0.061")
    assert leg.basis_usdt == D("0.5")
    assert leg.expected_basis_usdt == D("0.6")
    assert leg.fee_drift_usdt == 0
    assert leg.total_usdt == D("0.5") - D("0.541575") + D("0.061")
    assert sum(leg.parts().values(), D(0)) == leg.total_usdt


def test_a_venue_charging_another_rate_shows_as_fee_drift():
    inputs = long_leg()
    charged = tuple(LegFill(f.side, f.base_qty, f.price, f.base_qty * f.price * D("0.0004"), f.ts) for f in inputs.fills)
    leg = attribute_leg(LegInputs(**{**{k: getattr(inputs, k) for k in inputs.__slots__}, "fills": charged}))
    assert leg.fee_drift_usdt == leg.fees_usdt - leg.expected_fees_usdt < 0
    assert leg.fee_drift_usdt == -(D("600.108") + D("601")) * D("0.0001")


def test_a_leg_without_expectations_takes_its_fills_as_reference():
    leg = attribute_leg(LegInputs("okx", "BTC-USDT-SWAP", "buy", long_leg().fills, (), None, None, D(10)))
    assert leg.entry_slippage_usdt == leg.exit_slippage_usdt == leg.slippage_usdt == 0
    assert leg.fee_drift_usdt == 0 and leg.expected_funding_usdt == 0
    assert leg.total_usdt == leg.basis_usdt - leg.fees_usdt


def test_an_open_leg_has_no_basis_yet():
    inputs = long_leg()
    leg = attribute_leg(LegInputs(inputs.venue, inputs.symbol, "buy", inputs.fills[:2], (), inputs.entry, None, D(5)))
    assert leg.exit_qty == 0 and leg.basis_usdt == 0 and leg.expected_basis_usdt == 0
    assert leg.total_usdt == -leg.fees_usdt
    assert leg.entry_slippage_usdt == D("0.028")


def test_trade_round_trips_through_its_dict_and_sums_per_day_strategy_and_venue():
    legs = (attribute_leg(long_leg()), attribute_leg(long_leg()))
    trade = TradeAttribution("t1", "price_spread", "BTC", 86400.0 * 3 + 5, 86400.0 * 3 + 3605, D("12.5"), D("0.7"), legs)
    again = TradeAttribution.from_dict(trade.as_dict())
    assert again == trade
    assert trade.as_dict()["realized_pnl_usdt"] == str(2 * legs[0].total_usdt)
    (row,) = daily_summary([trade, again])
    assert (row.day, row.strategy, row.venue, row.legs) == ("1970-01-04", "price_spread", "binance", 4)
    assert row.figures["total_usdt"] == 4 * legs[0].total_usdt
    assert row.as_dict()["funding_realized_expected_ratio"] == str(D("-0.06") / legs[0].expected_funding_usdt)


prices = st.decimals(min_value=D("100"), max_value=D("100000"), places=2)
sizes = st.decimals(min_value=D("0.001"), max_value=D("5"), places=3)


@settings(max_examples=200, deadline=None)
@given(side=st.sampled_from(["buy", "sell"]), entry=st.lists(st.tuples(sizes, prices), min_size=1, max_size=4),
       exit_price=prices, depth=prices, exit_depth=prices, funding=st.decimals(min_value=-5, max_value=5, places=6))
def test_parts_always_add_up_to_the_realised_pnl_the_portfolio_books(side, entry, exit_price, depth, exit_depth, funding):
    """Whatever the fills, the leg's total equals what the portfolio realises for them, minus fees, plus
    funding, and the parts add up to it to the last digit."""
    close = "sell" if side == "buy" else "buy"
    qty = sum((q for q, _ in entry), D(0))
    fills = tuple(LegFill(side, q, p, q * p * D("0.0005"), 1.0) for q, p in entry) + (
        LegFill(close, qty, exit_price, qty * exit_price * D("0.0005"), 2.0),)
    leg = attribute_leg(LegInputs("bybit", "BTCUSDT", side, fills, (funding,), expectation("1", str(depth)),
                                  expectation("1", str(exit_depth)), D(60)))
    portfolio = Portfolio(clock=lambda: 10.0)
    realized = sum((portfolio.apply_fill("bybit", "BTCUSDT", f.side, f.base_qty, f.price, f.fee, ts=10.0).realized_pnl
                    for f in fills), D(0))
    assert leg.basis_usdt == realized
    assert leg.total_usdt == realized - leg.fees_usdt + funding
    assert sum(leg.parts().values(), D(0)) == leg.total_usdt


def test_each_fill_is_judged_by_its_own_decisions_expectation():
    """Two partial exits decided at different prices, and a close-all flatten no decision expected."""
    first, second = expectation("60110", "60100"), expectation("60210", "60200")
    leg = attribute_leg(LegInputs(
        venue="binance", symbol="BTCUSDT", side="buy",
        fills=(LegFill("buy", D("0.03"), D("60000"), D("0.9"), 1.0, expectation("59990", "59995")),
               LegFill("sell", D("0.01"), D("60090"), D("0.3"), 2.0, first),
               LegFill("sell", D("0.01"), D("60205"), D("0.3"), 3.0, second),
               LegFill("sell", D("0.01"), D("60150"), D("0.3"), 4.0, None)),
        funding=(), entry=None, exit=None, held_s=D(3),
    ))
    # Exit slippage: 10 under the first decision's depth price, 5 over the second's, none for the flatten.
    assert leg.exit_slippage_usdt == D("0.01") * 10 - D("0.01") * 5 == D("0.05")
    assert leg.exit_depth_price == (D("0.01") * 60100 + D("0.01") * 60200 + D("0.01") * 60150) / D("0.03")
    assert leg.entry_slippage_usdt == D("0.03") * 5 == D("0.15")
    assert leg.slippage_usdt == D("0.2")
    assert leg.basis_usdt == D("0.01") * (60090 + 60205 + 60150) - D("0.03") * 60000
    assert sum(leg.parts().values(), D(0)) == leg.total_usdt


def test_an_exit_past_the_entry_realises_only_the_closing_share():
    leg = attribute_leg(LegInputs(
        venue="okx", symbol="BTC-USDT-SWAP", side="sell",
        fills=(LegFill("sell", D("0.01"), D("60000"), D("0"), 1.0, expectation("60010", "60005")),
               LegFill("buy", D("0.02"), D("59900"), D("0"), 2.0, expectation("59890", "59895"))),
        funding=(), entry=None, exit=None, held_s=D(1),
    ))
    portfolio = Portfolio(clock=lambda: 10.0)
    realised = portfolio.apply_fill("okx", "X", "sell", D("0.01"), D("60000"), D(0), ts=10.0).realized_pnl
    realised += portfolio.apply_fill("okx", "X", "buy", D("0.02"), D("59900"), D(0), ts=10.0).realized_pnl
    assert leg.basis_usdt == realised == D("1")
    assert leg.expected_basis_usdt == D("0.01") * (60005 - 59895)
    assert sum(leg.parts().values(), D(0)) == leg.total_usdt
