"""Sums across venues in USDT: a USDC venue's (Hyperliquid's) equity and legs count at the USDC/USDT rate in the
collateral plan and in /api/balances, which says the rate; each venue's own figures stay in its currency."""

import time
from decimal import Decimal as D

from engine_fakes import make_desk

from perpbot.control import views
from perpbot.core.orders import VenueBalance
from perpbot.execution.desk import collateral
from perpbot.portfolio import Portfolio


def desk_with_usdc_at(rate: str):
    desk = make_desk()
    desk.portfolio = Portfolio(time.time, usdc_usdt=D(rate), usdc_venues=frozenset({"hyperliquid"}))
    desk.portfolio.set_balance(VenueBalance("okx", D("1000"), D("1000"), D("0")))
    desk.portfolio.set_balance(VenueBalance("hyperliquid", D("1000"), D("1000"), D("0")))
    return desk


def test_the_collateral_plan_counts_usdc_equity_at_the_rate():
    plan = collateral(desk_with_usdc_at("0.99"))
    # No legs: the USDT total (1000 + 990) split evenly; Hyperliquid is 5 USDT short of its half.
    assert plan.equity == {"okx": D("1000"), "hyperliquid": D("990.00")}
    assert plan.target == {"hyperliquid": D("995.00"), "okx": D("995.00")}
    assert plan.imbalance == {"hyperliquid": D("-5.00"), "okx": D("5.00")}
    at_par = collateral(desk_with_usdc_at("1"))
    assert at_par.imbalance == {"hyperliquid": D("0.00"), "okx": D("0.00")}


def test_the_collateral_plan_counts_a_usdc_legs_notional_at_the_rate():
    desk = desk_with_usdc_at("1.01")
    desk.portfolio.set_position("hyperliquid", "BTC", D("0.1"), D("30000"))
    desk.portfolio.set_mark("hyperliquid", "BTC", D("30000"))
    plan = collateral(desk)
    leverage = desk.settings.risk.max_leverage
    intended = max(desk.settings.strategies.price_spread.order_size_usdt,
                   desk.settings.strategies.funding_spread.order_size_usdt)
    assert plan.need["hyperliquid"] == D("3000") * D("1.01") / leverage + intended / leverage
    assert plan.need["okx"] == intended / leverage


def test_balances_keep_each_venues_currency_and_say_the_usdt_equity_and_rate():
    desk = desk_with_usdc_at("0.9991")
    answer = {b["venue"]: b for b in views.balances(desk.portfolio)}
    assert answer["hyperliquid"]["equity"] == "1000" and answer["hyperliquid"]["currency"] == "USDC"
    assert D(answer["hyperliquid"]["equity_usdt"]) == D("999.1")
    assert answer["okx"]["currency"] == "USDT" and answer["okx"]["equity_usdt"] == "1000"
    assert answer["okx"]["usdc_usdt"] == answer["hyperliquid"]["usdc_usdt"] == "0.9991"
    assert views.pnl_today(desk.portfolio)["usdc_usdt"] == "0.9991"
