"""Margin safety in the risk gate: a held position without a mark refuses an entry (never zero notional); no
entry that leaves a leg closer to liquidation than the minimum; every entry halts while a leg is critical;
the legs under the reduce threshold are found, closest first."""

from decimal import Decimal as D

from market_helpers import BINANCE_BTC, OKX_BTC
from risk_fixtures import EXECUTION, context, entry, risk_settings

from perpbot.core.margin import LegMargin
from perpbot.core.orders import OrderRequest
from perpbot.risk import margin
from perpbot.risk.gate import RiskGate
from perpbot.telemetry.metrics import Metrics

IDS = ("cid-okx-1", "cid-bin-1")
OKX_ETH = ("okx", "ETH-USDT-SWAP")


def gate(**risk_overrides) -> RiskGate:
    return RiskGate(risk_settings(**risk_overrides), EXECUTION, Metrics())


def stated(key, size, liquidation, mark="60000", maintenance=None) -> LegMargin:
    return LegMargin(key[0], key[1], D(size), D(mark), D(liquidation) if liquidation else None,
                     D(maintenance) if maintenance else None, None, 2, "cross", D("3"), 1)


def refused_rules(ctx, **risk_overrides) -> list[str]:
    approved, refusals = gate(**risk_overrides).approve_entry(entry(), ctx, "intent-m", IDS)
    assert (approved == []) == bool(refusals)
    return [r.rule for r in refusals]


def test_a_held_position_without_a_mark_refuses_an_entry_on_its_venue_instead_of_counting_zero():
    ctx = context(positions={OKX_ETH: D("30")})  # 30 ETH on OKX, no mark known for it
    assert refused_rules(ctx) == ["no_mark"]
    # With its mark, the same position is counted at its notional (and here stays within every limit).
    ctx = context(positions={OKX_ETH: D("1")}, mark_prices={OKX_BTC.key: D("60000"), BINANCE_BTC.key: D("60000"),
                                                            OKX_ETH: D("3000")})
    assert refused_rules(ctx) == []


def test_no_entry_that_would_leave_a_leg_closer_to_liquidation_than_the_minimum():
    # 1800 USDT of equity behind ~5400 USDT: a ~32.8 % move liquidates (0.5 % maintenance).
    ctx = context(equity_usdt={"okx": D("1800"), "binance": D("10000")})
    assert refused_rules(ctx) == []
    assert refused_rules(ctx, liquidation_entry_min_pct=D("40")) == ["liquidation_distance"]
    # The venue's stated maintenance margin counts where it is higher than the default rate.
    ctx = context(equity_usdt={"okx": D("2000"), "binance": D("10000")}, positions={OKX_BTC.key: D("0.01")})
    assert refused_rules(ctx, liquidation_entry_min_pct=D("30")) == []  # (2000 - 0.5 % of 6000) / 6000 = 32.8 %
    ctx.margins = {OKX_BTC.key: stated(OKX_BTC.key, "0.01", "20000", maintenance="90")}  # 15 % of its 600
    assert refused_rules(ctx, liquidation_entry_min_pct=D("30")) == ["liquidation_distance"]


def test_a_leg_the_venue_already_states_too_close_takes_no_more():
    ctx = context(positions={OKX_BTC.key: D("0.05")},
                  margins={OKX_BTC.key: stated(OKX_BTC.key, "0.05", "49000")})  # 18.33 % below the 60000 mark
    rules = refused_rules(ctx)
    assert rules == ["liquidation_distance"]


def test_every_entry_halts_while_any_leg_is_below_the_critical_distance():
    eth = stated(OKX_ETH, "-1", "3100", mark="3000")  # a short 3.33 % from liquidation
    ctx = context(positions={OKX_ETH: D("-1")}, margins={OKX_ETH: eth},
                  mark_prices={OKX_BTC.key: D("60000"), BINANCE_BTC.key: D("60000"), OKX_ETH: D("3000")})
    assert "liquidation_critical" in refused_rules(ctx)
    # An exit still goes: taking risk off is never refused for margin.
    exit_order = OrderRequest("okx", "ETH-USDT-SWAP", "buy", D("1"), D("3000.0"), "cid-x", True, "IOC")
    ctx.instruments[OKX_ETH] = ctx.instruments[OKX_BTC.key]
    answer = gate().approve_order(exit_order, "exit", ctx, "intent-x")
    assert not hasattr(answer, "rule") or answer.rule != "liquidation_critical"


def test_legs_below_a_threshold_are_found_closest_first_from_the_live_mark():
    ctx = context(positions={OKX_BTC.key: D("0.1"), BINANCE_BTC.key: D("-0.1")},
                  margins={OKX_BTC.key: stated(OKX_BTC.key, "0.1", "55000", mark="59000"),
                           BINANCE_BTC.key: stated(BINANCE_BTC.key, "-0.1", "63000")})
    # From the live mark 60000: OKX 8.3333 %, Binance 5 % (the venue's own mark is not used when a live one exists).
    assert margin.legs_below(ctx, D("10")) == [(BINANCE_BTC.key, D("5.0000")), (OKX_BTC.key, D("8.3333"))]
    assert margin.legs_below(ctx, D("5")) == []
    # A statement about a leg no longer held is not a leg to protect.
    ctx.positions = {}
    assert margin.legs_below(ctx, D("10")) == []


def test_a_venue_that_refused_an_entry_for_margin_takes_none_until_its_balance_is_read_again():
    ctx = context(margin_doubted=frozenset({"binance"}))
    assert refused_rules(ctx) == ["margin_refused"]
    ctx = context(margin_doubted=frozenset({"bybit"}))  # another venue's doubt: this entry is not on it
    assert refused_rules(ctx) == []
    # An exit on the doubted venue still goes.
    exit_order = OrderRequest("binance", BINANCE_BTC.symbol, "sell", D("0.01"), D("60000"), "cid-x", True, "IOC")
    answer = gate().approve_order(exit_order, "exit", context(margin_doubted=frozenset({"binance"}),
                                                            positions={BINANCE_BTC.key: D("0.01")}), "intent-x")
    assert not hasattr(answer, "rule"), answer
