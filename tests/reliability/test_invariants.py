"""The invariant checks themselves: each one catches the breach it exists for."""

from __future__ import annotations

from decimal import Decimal

from perpbot.reliability import invariants as inv


def _accounts(**kw):
    base = {"positions": {}, "orders": [], "fills": []}
    return {"okx": {**base, **kw}}


def test_position_mismatch_between_bot_and_venue_is_a_violation():
    accounts = _accounts(positions={"BTC-USDT-SWAP": {"size": "-0.003", "entry": "60000"}})
    assert inv.check_positions({("okx", "BTC-USDT-SWAP"): Decimal("-0.003")}, accounts) == []
    assert inv.check_positions({("okx", "BTC-USDT-SWAP"): Decimal("0.003")}, accounts)
    assert inv.check_positions({}, accounts)


def test_venue_order_without_journal_row_or_sent_twice_is_a_violation():
    rows = [inv.JournalOrder("okx", "pbA", "filled", Decimal("1"))]
    assert inv.check_orders_approved(_accounts(orders=[{"client_id": "pbA"}]), rows) == []
    assert inv.check_orders_approved(_accounts(orders=[{"client_id": "pbB"}]), rows)
    assert inv.check_orders_approved(_accounts(orders=[{"client_id": "pbA"}, {"client_id": "pbA"}]), rows)


def test_fill_at_the_venue_missing_from_the_journal_is_a_violation():
    accounts = _accounts(fills=[{"client_id": "pbA", "base_qty": "0.002"}, {"client_id": "pbA", "base_qty": "0.001"}])
    assert inv.check_fills(accounts, [inv.JournalFill("okx", "pbA", Decimal("0.003"))]) == []
    assert inv.check_fills(accounts, [inv.JournalFill("okx", "pbA", Decimal("0.002"))])


def test_order_booked_beyond_or_short_of_the_venues_filled_quantity_is_a_violation():
    accounts = _accounts(orders=[{"client_id": "pbA", "filled": "3"}, {"client_id": "pbB", "filled": "0"}])
    rows = [inv.JournalOrder("okx", "pbA", "filled", Decimal("3")),
            inv.JournalOrder("okx", "pbB", "canceled", Decimal(0)),
            inv.JournalOrder("okx", "pbC", "failed", Decimal(0))]  # never reached the venue
    assert inv.check_order_fills(accounts, rows) == []
    # A fill pushed twice and booked twice: the journal says 6.
    doubled = [inv.JournalOrder("okx", "pbA", "filled", Decimal("6"))]
    assert "journal booked 6 != venue filled 3" in inv.check_order_fills(accounts, doubled)[0]
    # A late fill the journal never booked (the order closed at 2).
    assert inv.check_order_fills(accounts, [inv.JournalOrder("okx", "pbA", "partially_filled", Decimal("2"))])
    # A working order is not judged yet.
    assert inv.check_order_fills(accounts, [inv.JournalOrder("okx", "pbA", "pending", Decimal("0"))]) == []


def test_fee_charged_twice_or_missing_in_the_journal_is_a_violation():
    accounts = _accounts(fills=[{"client_id": "pbA", "base_qty": "0.002", "fee": "0.06"},
                                {"client_id": "pbA", "base_qty": "0.001", "fee": "0.03"}])
    assert inv.check_fees(accounts, [inv.JournalFill("okx", "pbA", Decimal("0.003"), Decimal("0.09"))]) == []
    assert inv.check_fees(accounts, [inv.JournalFill("okx", "pbA", Decimal("0.002"), Decimal("0.06")),
                                     inv.JournalFill("okx", "pbA", Decimal("0.001"), Decimal("0.06"))])
    assert inv.check_fees(accounts, [inv.JournalFill("okx", "pbA", Decimal("0.003"), Decimal("0.06"))])


def test_unhedged_exposure_integrates_over_time_and_breaks_the_budget():
    accounts = {"okx": {"positions": {"BTC-USDT-SWAP": {"size": "-0.01", "entry": "60000"}}},
                "binance": {"positions": {"BTCUSDT": {"size": "0.01", "entry": "60010"}}},
                "bybit": {"positions": {"ETHUSDT": {"size": "1", "entry": "3000"}}}}
    exposure = inv.net_exposure_usdt(accounts, inv.marks_from(accounts))
    assert exposure == {"ETH": Decimal("3000")}  # BTC legs hedge each other across venues
    meter = inv.ExposureMeter()
    meter.sample(0.0, Decimal(3000))
    meter.sample(2.0, Decimal(0))
    assert meter.usdt_seconds == Decimal(6000)
    assert inv.check_unhedged(meter.usdt_seconds, Decimal(5000), "test")
    assert inv.check_unhedged(Decimal(4999), Decimal(5000), "test") == []


def test_integrity_fault_without_invalidation_or_resync_is_a_violation():
    assert inv.check_books_invalidated({"okx": 1}, {"okx": 2}, {"okx": 0.0}, {"okx": 1.0}, ["okx"]) == []
    assert inv.check_books_invalidated({"okx": 1}, {"okx": 1}, {"okx": 0.0}, {"okx": 1.0}, ["okx"])
    assert inv.check_books_invalidated({"okx": 1}, {"okx": 2}, {"okx": 1.0}, {"okx": 1.0}, ["okx"])


def test_state_after_recovery_must_be_active_or_halted_with_a_reason():
    assert inv.check_state("ACTIVE", "reconciled", True) == []
    assert inv.check_state("HALTED", "3 trades in a row needed leg repair", True) == []
    assert inv.check_state("PAUSED", "starting", True)
    assert inv.check_state("HALTED", " ", True)


LOTS = {("hyperliquid", "BTC"): Decimal("0.00001"), ("binance", "BTCUSDT"): Decimal("0.001"),
        ("okx", "ETH-USDT-SWAP"): Decimal("0.001"), ("bybit", "ETHUSDT"): Decimal("0.01")}


def _trade(trade_id, buy, sell):
    """An open trade: (venue, symbol, base_qty) bought on one venue and sold on the other."""
    return {"trade_id": trade_id, "legs": [{"venue": buy[0], "symbol": buy[1], "side": "buy", "base_qty": buy[2]},
                                           {"venue": sell[0], "symbol": sell[1], "side": "sell", "base_qty": sell[2]}]}


def _venues(**positions):
    accounts = {}
    for key, size in positions.items():
        venue, symbol = key.split("__")
        accounts.setdefault(venue, {"positions": {}})["positions"][symbol] = {"size": size, "entry": "60000"}
    return accounts


def test_open_trade_at_its_old_size_after_a_partial_exit_is_a_violation():
    trade = _trade("t1", ("hyperliquid", "BTC", "0.003"), ("binance", "BTCUSDT", "0.003"))
    whole = _venues(hyperliquid__BTC="0.003", binance__BTCUSDT="-0.003")
    assert inv.check_trades_match_venue([trade], whole, LOTS) == []
    # The exit filled a third on both venues; the journal still says 0.003 (the partial exit was not kept).
    partial = _venues(hyperliquid__BTC="0.002", binance__BTCUSDT="-0.002")
    found = inv.check_trades_match_venue([trade], partial, LOTS)
    assert len(found) == 2 and "t1" in found[0]
    # The journal kept it: legs resized.
    kept = _trade("t1", ("hyperliquid", "BTC", "0.002"), ("binance", "BTCUSDT", "0.002"))
    assert inv.check_trades_match_venue([kept], partial, LOTS) == []
    # A venue position no open trade explains (a leg left behind) is one too.
    assert inv.check_trades_match_venue([], _venues(binance__BTCUSDT="0.001"), LOTS)


def test_sub_lot_difference_on_the_fine_venue_is_left_to_the_residue_check():
    trade = _trade("t1", ("hyperliquid", "BTC", "0.002"), ("binance", "BTCUSDT", "0.002"))
    accounts = _venues(hyperliquid__BTC="0.00238", binance__BTCUSDT="-0.002")
    assert inv.check_trades_match_venue([trade], accounts, LOTS) == []
    marks = {"BTC": Decimal(60000)}
    # 0.00038 BTC net long, below binance's lot, in no trade and not reported: a violation.
    found = inv.check_residue(accounts, [trade], LOTS, marks)
    assert len(found) == 1 and "residue BTC" in found[0] and "0.00038" in found[0]
    # Reported by the bot (a residue gauge / the unhedged notional): fine.
    assert inv.check_residue(accounts, [trade], LOTS, marks, reported_usdt=Decimal("22.8")) == []
    # Carried by the journal's trade (legs differ by the residue): fine.
    carried = _trade("t1", ("hyperliquid", "BTC", "0.00238"), ("binance", "BTCUSDT", "0.002"))
    assert inv.check_residue(accounts, [carried], LOTS, marks) == []


def test_net_exposure_of_a_coarse_lot_or_more_is_a_naked_leg_unless_halted():
    accounts = {"bybit": {"positions": {"ETHUSDT": {"size": "-0.05", "entry": "3000"}}},
                "okx": {"positions": {"ETH-USDT-SWAP": {"size": "0.03", "entry": "3000"}}}}
    marks = inv.marks_from(accounts)
    found = inv.check_residue(accounts, [], LOTS, marks)
    assert len(found) == 1 and found[0].startswith("naked ETH") and "60.00 USDT" in found[0]
    assert inv.check_residue(accounts, [], LOTS, marks, halted=True) == []
    hedged = {"bybit": {"positions": {"ETHUSDT": {"size": "-0.05", "entry": "3000"}}},
              "okx": {"positions": {"ETH-USDT-SWAP": {"size": "0.05", "entry": "3000"}}}}
    assert inv.check_residue(hedged, [], LOTS, inv.marks_from(hedged)) == []


def test_reduce_only_refusals_and_reported_residue_are_read_from_the_metrics():
    text = """# HELP perpbot_risk_refusals_total Orders refused by the risk gate
# TYPE perpbot_risk_refusals_total counter
perpbot_risk_refusals_total{reason="reduce_only"} 37.0
perpbot_risk_refusals_created{reason="reduce_only"} 1.7e+09
perpbot_risk_refusals_total{reason="min_edge"} 5.0
perpbot_unhedged_notional_usdt 0.0
perpbot_unhedged_residue_usdt{base="BTC"} 22.8
"""
    metrics = inv.parse_metrics(text)
    assert inv.metric_sum(metrics, "perpbot_risk_refusals_total", reason="reduce_only") == 37.0
    assert inv.metric_sum(metrics, "perpbot_risk_refusals_total") == 42.0
    assert inv.reported_residue_usdt(metrics) == 22.8
    assert inv.reported_residue_usdt(inv.parse_metrics("perpbot_unhedged_notional_usdt 3.5\n")) == 3.5
    assert inv.check_exits_not_refused(37.0, "since the restart")
    assert inv.check_exits_not_refused(0.0, "since the restart") == []


def test_summary_is_median_and_max():
    assert inv.summary([]) == (None, None)
    assert inv.summary([3.0, 1.0, 2.0]) == (2.0, 3.0)
    assert inv.summary([4.0, 1.0, 2.0, 3.0]) == (2.5, 4.0)


# --- the venue's own closes (liquidation, ADL) ---------------------------------------------------------
def _liquidated_long(short_closed_ms=None, reduce_only=True):
    """A hedged 0.01 BTC (long OKX, short Binance); OKX liquidates the long at t=1000 ms, and the bot buys
    the Binance short back at `short_closed_ms` (None: never), reduce-only (else: an entry of another trade)."""
    okx = {"positions": {}, "orders": [
        {"order_id": "1", "client_id": "pbA", "symbol": "BTC-USDT-SWAP", "side": "buy", "filled": "1", "origin": None},
        {"order_id": "2", "client_id": None, "symbol": "BTC-USDT-SWAP", "side": "sell", "filled": "1",
         "origin": "liquidation"}], "fills": [
        {"order_id": "1", "client_id": "pbA", "symbol": "BTC-USDT-SWAP", "side": "buy", "base_qty": "0.01",
         "price": "60000", "fee": "0.3", "ts_ms": 0},
        {"order_id": "2", "client_id": None, "symbol": "BTC-USDT-SWAP", "side": "sell", "base_qty": "0.01",
         "price": "40000", "fee": "0.2", "ts_ms": 1000}]}
    fills = [{"order_id": "7", "client_id": "pbB", "symbol": "BTCUSDT", "side": "sell", "base_qty": "0.01",
              "price": "60000", "fee": "0.3", "ts_ms": 0}]
    orders = [{"order_id": "7", "client_id": "pbB", "symbol": "BTCUSDT", "side": "sell", "filled": "0.01"}]
    if short_closed_ms is not None:
        fills.append({"order_id": "8", "client_id": "pbC", "symbol": "BTCUSDT", "side": "buy", "base_qty": "0.01",
                      "price": "40000", "fee": "0.2", "ts_ms": short_closed_ms})
        orders.append({"order_id": "8", "client_id": "pbC", "symbol": "BTCUSDT", "side": "buy", "filled": "0.01",
                       "reduce_only": reduce_only})
    return {"okx": okx, "binance": {"positions": {}, "orders": orders, "fills": fills}}


def test_a_venues_liquidation_is_not_an_unapproved_order_nor_a_fill_the_journal_missed():
    accounts = _liquidated_long(short_closed_ms=1500)
    rows = [inv.JournalOrder("okx", "pbA", "filled", Decimal(1)),
            inv.JournalOrder("binance", "pbB", "filled", Decimal(1)),
            inv.JournalOrder("binance", "pbC", "filled", Decimal(1))]
    fills = [inv.JournalFill("okx", "pbA", Decimal("0.01"), Decimal("0.3")),
             inv.JournalFill("binance", "pbB", Decimal("0.01"), Decimal("0.3")),
             inv.JournalFill("binance", "pbC", Decimal("0.01"), Decimal("0.2"))]
    assert inv.check_orders_approved(accounts, rows) == []
    assert inv.check_fills(accounts, fills) == []
    assert inv.check_fees(accounts, fills) == []
    # Anything else without a client id is still caught: an order with no origin, or an origin not forced.
    for origin in (None, "manual"):
        stray = _liquidated_long(short_closed_ms=1500)
        stray["okx"]["orders"][1]["origin"] = origin
        assert "client id None has no journal row" in inv.check_orders_approved(stray, rows)[0]
        assert inv.check_fills(stray, fills) and inv.check_fees(stray, fills)


def test_a_position_correction_is_explained_only_by_a_forced_close_of_exactly_its_size():
    [close] = inv.forced_closes(_liquidated_long())
    assert (close.venue, close.origin, close.base_qty, close.ts_ms) == ("okx", "liquidation", Decimal("-0.01"), 1000)
    exact = {"kind": "position", "venue": "okx", "symbol": "BTC-USDT-SWAP", "local_size": "0.01", "venue_size": "0"}
    assert inv.unexplained_corrections([exact], [close]) == ([], [])
    # A correction of another size, or on another venue, is drift: reported; the close awaits its own.
    partial = {**exact, "venue_size": "0.005"}
    elsewhere = {**exact, "venue": "binance", "symbol": "BTCUSDT"}
    assert inv.unexplained_corrections([partial, elsewhere], [close]) == ([partial, elsewhere], [close])
    # Without a forced close, every correction is drift.
    assert inv.unexplained_corrections([exact], []) == ([exact], [])


def test_the_other_leg_must_close_within_the_unhedged_budget_measured_from_the_venues_fill_times():
    lots = {"BTC": Decimal("0.001")}
    quick = _liquidated_long(short_closed_ms=1500)
    [close] = inv.forced_closes(quick)
    # 0.01 BTC x 40000 naked for 0.5 s = 200 USDT*s.
    assert inv.naked_after_forced_close(close, quick, lots) == (Decimal("200"), 500)
    violations, figures = inv.check_forced_close_hedged([close], quick, lots, Decimal(5000))
    assert violations == [] and "closed after 500 ms, naked 200.0 USDT*s" in figures[0]
    slow = _liquidated_long(short_closed_ms=14_000)  # 13 s: 5200 USDT*s
    assert "over the budget 5000" in inv.check_forced_close_hedged([close], slow, lots, Decimal(5000))[0][0]
    never = _liquidated_long()
    assert inv.naked_after_forced_close(close, never, lots) == (None, None)
    assert "has not closed the other leg" in inv.check_forced_close_hedged([close], never, lots, Decimal(5000))[0][0]
    # A buy that is no close (an entry of another trade) does not pass for the other leg's close.
    assert inv.naked_after_forced_close(close, _liquidated_long(1500, reduce_only=False), lots) == (None, None)
    assert inv.check_forced_close_hedged([close], never, lots, Decimal(5000), halted=True)[0] == []


def test_with_the_partner_known_another_trades_exit_does_not_pass_for_its_close():
    lots = {"BTC": Decimal("0.001")}
    accounts = _liquidated_long(short_closed_ms=1500)
    [close] = inv.forced_closes(accounts)
    # The bot's reduce-only buy was on Binance BTCUSDT: the partner of the trade there counts it...
    assert inv.naked_after_forced_close(close, accounts, lots, ("binance", "BTCUSDT")) == (Decimal("200"), 500)
    # ...a partner on Bybit does not (that buy closed another trade's leg): the other leg is still open.
    assert inv.naked_after_forced_close(close, accounts, lots, ("bybit", "BTCUSDT")) == (None, None)
    partners = {close.order_id: ("bybit", "BTCUSDT")}
    [violation] = inv.check_forced_close_hedged([close], accounts, lots, Decimal(5000), partners=partners)[0]
    assert "(partner bybit BTCUSDT)" in violation and "has not closed the other leg" in violation


def test_the_trades_own_exit_that_beat_the_liquidation_closes_the_other_leg():
    """CI-length run: the strategy's exit of the trade and the venue's liquidation of one leg raced; the exit's
    reduce-only buy of the partner filled 40 ms before the liquidation. Nothing was left naked."""
    lots = {"BTC": Decimal("0.001")}
    accounts = _liquidated_long(short_closed_ms=960)  # the short (entered at 0 ms) bought back before 1000 ms
    [close] = inv.forced_closes(accounts)
    assert inv.naked_after_forced_close(close, accounts, lots, ("binance", "BTCUSDT")) == (Decimal(0), 0)
    # Without the partner known, only closes after the liquidation count (another trade's exit could pass).
    assert inv.naked_after_forced_close(close, accounts, lots) == (None, None)
    # A close before the partner's entry is an earlier trade's: it does not count.
    earlier = _liquidated_long(short_closed_ms=960)
    earlier["binance"]["fills"][0]["ts_ms"] = 980  # this trade's short filled after that buy
    assert inv.naked_after_forced_close(close, earlier, lots, ("binance", "BTCUSDT")) == (None, None)


def test_the_partner_is_the_trade_holding_the_leg_when_the_venue_closed_it_not_one_opened_just_after():
    """A CI-length run: Bybit deleveraged a long at t; the trade holding it (partner Binance) was closed 270 ms
    later, and a new trade on the same Bybit symbol (partner OKX) opened 420 ms after t. The first is the one."""
    close = inv.ForcedClose("bybit", "BTCUSDT", "adl-1", "adl", Decimal("-0.003"), Decimal("60000"), 54_608)

    def legs(other: str) -> list[dict]:
        return [{"venue": "bybit", "symbol": "BTCUSDT"}, {"venue": other, "symbol": "X"}]

    earlier = (legs("binance"), 52_219.0, 52_571.0)  # closed before t: not holding it
    holding = (legs("binance"), 54_425.0, 54_877.0)
    after = (legs("okx"), 55_028.0, 55_259.0)
    assert inv.partner_of(close, [earlier, holding, after]) == ("binance", "X")
    # Opened a few ms after the venue's fill time (opened_ts is written once the fills are booked): still it.
    booked_late = (legs("hyperliquid"), 54_615.0, None)
    assert inv.partner_of(close, [earlier, booked_late, after]) == ("hyperliquid", "X")
    assert inv.partner_of(close, [earlier]) is None

