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
