"""USDC against USDT, never silently 1:1: an entry pairing a Hyperliquid (USDC) leg with a USDT leg needs a fresh
USDC/USDT rate, its edge is taken again with the rate, and a USDC notional counts at the rate in the size limit."""

from decimal import Decimal as D

from market_helpers import HYPERLIQUID_BTC, NOW, OKX_BTC, put_book
from risk_fixtures import EXECUTION, context, entry, risk_settings, with_leg

from perpbot.core.quote_rate import QuoteRate
from perpbot.risk import quotes
from perpbot.risk.gate import RiskGate
from perpbot.telemetry.metrics import Metrics

IDS = ("cid-okx-1", "cid-hl-1")


def hl_context(rate: QuoteRate | None):
    ctx = context(binance=HYPERLIQUID_BTC, quote_rate=rate, venue_connected={"okx": True, "hyperliquid": True},
                  equity_usdt={"okx": D("10000"), "hyperliquid": D("10000")},
                  used_margin_usdt={"okx": D("0"), "hyperliquid": D("0")}, leverage={"okx": D("3"), "hyperliquid": D("3")})
    put_book(ctx.store, HYPERLIQUID_BTC, [("60090", "10")], [("60100", "10")])
    return ctx


def hl_entry(edge_bps="10"):
    """Buy OKX (USDT), sell Hyperliquid (USDC)."""
    return with_leg(entry(edge_bps=edge_bps), 1, venue="hyperliquid", symbol="BTC", ref_price=D("60090"))


def refusals(ctx, decision, **risk):
    approved, refused = RiskGate(risk_settings(**risk), EXECUTION, Metrics()).approve_entry(decision, ctx, "i", IDS)
    return [r.rule for r in refused]


def test_a_usdc_usdt_pair_without_a_fresh_rate_is_refused_never_taken_one_to_one():
    assert refusals(hl_context(None), hl_entry()) == ["quote_rate"]
    stale = QuoteRate(D("1"), NOW - 7200, 3600)
    assert refusals(hl_context(stale), hl_entry()) == ["quote_rate"]
    assert refusals(hl_context(QuoteRate(D("1"), NOW - 60, 3600)), hl_entry()) == []


def test_the_edge_is_taken_again_with_the_rate():
    dear = QuoteRate(D("1.002"), NOW, 3600)  # 1 USDC = 1.002 USDT: USDC 20 bps dear
    ctx = hl_context(dear)
    # Selling in USDC earns 20 bps more than the 1:1 edge said; buying in USDC costs 20 bps more.
    assert quotes.entry_edge_bps(hl_entry("10"), OKX_BTC, HYPERLIQUID_BTC, ctx) == D("30.000")
    reverse = with_leg(with_leg(hl_entry("10"), 0, side="sell"), 1, side="buy")
    assert quotes.entry_edge_bps(reverse, OKX_BTC, HYPERLIQUID_BTC, ctx) == D("-10.000")
    cheap = hl_context(QuoteRate(D("0.998"), NOW, 3600))
    assert refusals(cheap, hl_entry("10")) == ["min_edge"]  # 10 bps at 1:1, -10 with USDC 20 bps cheap


def test_a_usdc_notional_counts_at_the_rate_in_the_size_limit():
    # 0.09 BTC at 60000 = 5400 USDC: within a 5420 USDT limit at 1:1, over it at 1.005 (5427 USDT).
    assert "max_position_size_usdt" not in refusals(hl_context(QuoteRate(D("1"), NOW, 3600)), hl_entry(),
                                                    max_position_size_usdt=D("5420"))
    assert "max_position_size_usdt" in refusals(hl_context(QuoteRate(D("1.005"), NOW, 3600)), hl_entry("50"),
                                                max_position_size_usdt=D("5420"))
