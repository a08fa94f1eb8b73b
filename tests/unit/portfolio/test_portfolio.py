"""Portfolio accounting: average entry, realised PnL on reductions and flips, fees, funding, today."""

from decimal import Decimal as D

from hypothesis import given
from hypothesis import strategies as st

from perpbot.core.orders import VenueBalance
from perpbot.portfolio import Portfolio

NOON = 1_700_000_000.0 - (1_700_000_000.0 % 86400) + 43200


def clock():
    return NOON


def test_adding_to_a_long_averages_the_entry_and_reducing_realises_pnl():
    p = Portfolio(clock)
    p.apply_fill("okx", "BTC-USDT-SWAP", "buy", D("1"), D("100"), D("0.05"))
    p.apply_fill("okx", "BTC-USDT-SWAP", "buy", D("1"), D("110"), D("0.05"))
    position = p.positions[("okx", "BTC-USDT-SWAP")]
    assert position.size == D("2") and position.entry_price == D("105")
    record = p.apply_fill("okx", "BTC-USDT-SWAP", "sell", D("0.5"), D("115"), D("0.02"))
    assert record.realized_pnl == D("5.0")
    assert position.size == D("1.5") and position.entry_price == D("105")


def test_flipping_a_short_to_long_realises_the_short_and_reopens_at_the_fill_price():
    p = Portfolio(clock)
    p.apply_fill("bybit", "BTCUSDT", "sell", D("1"), D("100"), D("0"))
    record = p.apply_fill("bybit", "BTCUSDT", "buy", D("3"), D("90"), D("0"))
    position = p.positions[("bybit", "BTCUSDT")]
    assert record.realized_pnl == D("10")
    assert position.size == D("2") and position.entry_price == D("90")


def test_pnl_today_sums_realised_fees_funding_and_marks():
    p = Portfolio(clock)
    p.apply_fill("okx", "X", "buy", D("2"), D("100"), D("0.1"))
    p.apply_fill("okx", "X", "sell", D("1"), D("104"), D("0.1"))
    p.apply_funding("okx", "X", D("0.25"))
    p.apply_funding("okx", "X", D("-5"), ts=NOON - 86400 * 2)  # outside today and 24 h: pruned
    p.set_mark("okx", "X", D("103"))
    pnl = p.pnl_today()
    assert pnl == {"realized": D("4"), "fees": D("0.2"), "funding": D("0.25"), "unrealized": D("3"),
                   "net": D("4") - D("0.2") + D("0.25") + D("3"), "usdc_usdt": D("1")}


def test_sums_across_venues_count_a_usdc_venue_in_usdt_at_the_rate_and_say_which():
    p = Portfolio(clock, usdc_usdt=D("0.998"), usdc_venues=frozenset({"hyperliquid"}))
    # Long 1 BTC on Hyperliquid (USDC), short 1 on OKX (USDT); both marked 2 up or down since.
    p.apply_fill("hyperliquid", "BTC", "buy", D("1"), D("100"), D("0.05"))
    p.apply_fill("okx", "X", "sell", D("1"), D("100.2"), D("0.05"))
    p.apply_fill("hyperliquid", "BTC", "sell", D("0.5"), D("104"), D("0.02"))  # realises 2 USDC
    p.apply_funding("hyperliquid", "BTC", D("0.5"))
    p.apply_funding("okx", "X", D("-0.25"))
    p.set_mark("hyperliquid", "BTC", D("102"))
    p.set_mark("okx", "X", D("102.2"))
    # Each venue's own figures stay in its currency.
    assert p.unrealized("hyperliquid", "BTC") == D("1") and p.unrealized("okx", "X") == D("-2.0")
    rate = D("0.998")
    pnl = p.pnl_today()
    assert pnl["realized"] == 2 * rate
    assert pnl["fees"] == (D("0.05") + D("0.02")) * rate + D("0.05")
    assert pnl["funding"] == D("0.5") * rate - D("0.25")
    assert pnl["unrealized"] == 1 * rate - 2
    assert pnl["net"] == pnl["realized"] - pnl["fees"] + pnl["funding"] + pnl["unrealized"]
    assert pnl["usdc_usdt"] == rate
    p.set_balance(VenueBalance("hyperliquid", D("1000"), D("800"), D("200")))
    p.set_balance(VenueBalance("okx", D("1000"), D("1000"), D("0")))
    assert p.total_equity() == D("1998.000")
    assert p.capital_utilization_percent() == D("199.6") / D("1998") * 100


def test_capital_utilisation_is_used_margin_over_equity():
    p = Portfolio(clock)
    p.set_balance(VenueBalance("okx", D("1000"), D("800"), D("200")))
    p.set_balance(VenueBalance("bybit", D("1000"), D("1000"), D("0")))
    assert p.capital_utilization_percent() == D("10")


@given(st.lists(st.tuples(st.sampled_from(["buy", "sell"]), st.integers(1, 50), st.integers(90, 110)),
                min_size=1, max_size=30))
def test_a_round_trip_back_to_flat_realises_exactly_cash_flow(fills):
    """Property: once flat, realised PnL equals sells minus buys (exact, no rounding drift)."""
    p = Portfolio(clock)
    cash = D(0)
    for side, qty, price in fills:
        p.apply_fill("okx", "X", side, D(qty) / 10, D(price), D(0))
        cash += (D(qty) / 10) * D(price) * (1 if side == "sell" else -1)
    position = p.positions[("okx", "X")]
    if position.size != 0:  # close at 100
        side = "sell" if position.size > 0 else "buy"
        qty = abs(position.size)
        p.apply_fill("okx", "X", side, qty, D(100), D(0))
        cash += qty * D(100) * (1 if side == "sell" else -1)
    assert position.size == 0
    assert position.realized_pnl == cash


def test_fill_history_is_bounded_by_count_and_today_pnl_still_counts_every_fill(monkeypatch):
    """N+1 fills keep N in memory; today's realised PnL and fees still include the dropped one,
    and complete_since() tells readers that memory no longer holds every fill."""
    from perpbot.portfolio import book

    monkeypatch.setattr(book, "MAX_RECENT_FILLS", 3)
    p = Portfolio(clock)
    for n in range(4):  # buy 1 @100, sell 1 @101, buy 1 @100, sell 1 @101: +1 realised twice
        side = "buy" if n % 2 == 0 else "sell"
        p.apply_fill("okx", "X", side, D("1"), D(100 + n % 2), D("0.01"), ts=NOON - 100 + n)
    assert len(p.fills) == 3 and [f.ts for f in p.fills] == [NOON - 99, NOON - 98, NOON - 97]
    assert p.pnl_today()["realized"] == D("2") and p.pnl_today()["fees"] == D("0.04")
    assert p.complete_since(NOON - 99) and not p.complete_since(NOON - 100)
    assert [f.ts for f in p.trades_since(NOON - 98)] == [NOON - 98, NOON - 97]


def test_today_pnl_starts_from_zero_when_the_utc_day_changes():
    now = [NOON]
    p = Portfolio(lambda: now[0])
    p.apply_fill("okx", "X", "buy", D("1"), D("100"), D("0.5"))
    p.apply_funding("okx", "X", D("0.25"))
    assert p.pnl_today()["fees"] == D("0.5") and p.pnl_today()["funding"] == D("0.25")
    now[0] = NOON + 86400
    assert p.pnl_today()["fees"] == 0 and p.pnl_today()["funding"] == 0 and p.pnl_today()["realized"] == 0
    p.apply_fill("okx", "X", "sell", D("1"), D("103"), D("0.1"))
    assert p.pnl_today()["realized"] == D("3") and p.pnl_today()["fees"] == D("0.1")
    p.restore_fill(book_record(ts=NOON))  # a journalled fill of yesterday: history only, not today
    assert p.pnl_today()["fees"] == D("0.1")


def book_record(ts):
    from perpbot.portfolio.book import FillRecord

    return FillRecord("okx", "X", "buy", D("1"), D("100"), D("9"), D("0"), ts)


def test_funding_history_is_bounded_by_count_and_totals_keep_every_payment(monkeypatch):
    from perpbot.portfolio import book

    monkeypatch.setattr(book, "MAX_RECENT_FUNDING", 2)
    p = Portfolio(clock)
    for n in range(3):
        p.apply_funding("okx", "X", D("0.1"), ts=NOON - 10 + n)
    assert len(p.funding) == 2
    assert p.funding_total() == D("0.3") and p.pnl_today()["funding"] == D("0.3")


def test_a_smaller_history_bound_drops_the_oldest_and_marks_memory_incomplete():
    p = Portfolio(clock)
    for n in range(4):
        p.apply_fill("okx", "X", "buy", D("1"), D("100"), D("0"), ts=NOON - 10 + n)
        p.apply_funding("okx", "X", D("0.1"), ts=NOON - 10 + n)
    p.set_history_bound(2, 3)
    assert [f.ts for f in p.fills] == [NOON - 8, NOON - 7] and len(p.funding) == 3
    assert p.complete_since(NOON - 8) and not p.complete_since(NOON - 9)
    p.apply_fill("okx", "X", "buy", D("1"), D("100"), D("0"), ts=NOON)
    assert [f.ts for f in p.fills] == [NOON - 7, NOON] and not p.complete_since(NOON - 8)
    assert p.pnl_today()["funding"] == D("0.4")


def test_amounts_stamped_in_a_later_day_count_today_as_the_sum_over_fills_did():
    p = Portfolio(clock)
    p.apply_fill("okx", "X", "buy", D("1"), D("100"), D("0.5"))
    p.apply_funding("okx", "X", D("-0.25"), ts=NOON + 86400)  # a settlement stamped tomorrow
    pnl = p.pnl_today()
    assert pnl["fees"] == D("0.5") and pnl["funding"] == D("-0.25")
