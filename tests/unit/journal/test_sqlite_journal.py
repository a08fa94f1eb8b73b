"""The SQLite journal on a real file: migrations, write-ahead orders, fills counted once."""

import sqlite3
from decimal import Decimal as D

import pytest

from perpbot.core.orders import OrderRequest
from perpbot.journal.sqlite import MIGRATIONS, Journal, JournalError


def req(cid="pbabc0", venue="okx", qty="3", price="30000.1"):
    return OrderRequest(venue, "BTC-USDT-SWAP", "buy", D(qty), D(price), cid)


@pytest.fixture
async def journal(tmp_path):
    j = Journal(tmp_path / "journal.sqlite")
    await j.open()
    yield j
    await j.close()


async def test_migrations_are_idempotent_across_reopen(tmp_path):
    path = tmp_path / "j.sqlite"
    for _ in range(3):
        j = Journal(path)
        await j.open()
        assert await j.migrate() == len(MIGRATIONS)
        assert await j.schema_version() == len(MIGRATIONS)
        await j.close()
    rows = sqlite3.connect(path).execute("SELECT COUNT(*) FROM schema_version").fetchone()
    assert rows[0] == len(MIGRATIONS)
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_journal_newer_than_the_build_is_refused_not_overwritten(tmp_path):
    path = tmp_path / "j.sqlite"
    j = Journal(path)
    await j.open()
    await j.db.execute("INSERT INTO schema_version VALUES (99, 0)")
    await j.close()
    again = Journal(path)
    with pytest.raises(JournalError, match="newer"):
        await again.open()
    await again.close()
    assert sqlite3.connect(path).execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == 99


async def test_intent_and_orders_are_durable_before_any_send(tmp_path, journal):
    await journal.record_intent("i1", "price_spread", "open", "BTC", {"edge_bps": D("9")},
                                [(req("pbi1a0"), "entry"), (req("pbi1b0", venue="bybit"), "entry")])
    # A second connection (another process after a crash) sees both rows, status pending.
    rows = sqlite3.connect(journal.path).execute(
        "SELECT venue, client_order_id, status, qty, price FROM orders ORDER BY venue").fetchall()
    assert rows == [("bybit", "pbi1b0", "pending", "3", "30000.1"), ("okx", "pbi1a0", "pending", "3", "30000.1")]


async def test_a_failing_intent_write_leaves_no_half_written_orders(journal):
    bad = OrderRequest("okx", "X", "buy", D("NaN"), D("1"), "pbbad")
    with pytest.raises(JournalError):
        await journal.record_intent("i2", "s", "open", "BTC", {}, [(req("pbgood"), "entry"), (bad, "entry")])
    assert await journal.orders_with_status("pending") == []


async def test_the_same_fill_reported_twice_is_counted_once(journal):
    first = await journal.record_fill("okx", "pbx:3", "pbx", "BTC-USDT-SWAP", "buy", D("0.03"), D("100"), D("0.01"))
    second = await journal.record_fill("okx", "pbx:3", "pbx", "BTC-USDT-SWAP", "buy", D("0.03"), D("100"), D("0.01"))
    assert (first, second) == (True, False)
    assert len(await journal.fills_since(0)) == 1


async def test_order_updates_keep_exact_decimals_and_unknown_status(journal):
    await journal.record_order(req("pbu0"), "hedge", "i3")
    await journal.update_order("okx", "pbu0", "unknown", reason="timeout")
    assert [o.client_order_id for o in await journal.orders_with_status("unknown")] == ["pbu0"]
    await journal.update_order("okx", "pbu0", "partially_filled", filled_qty=D("1.50"), avg_price=D("30000.10"))
    row = await journal.order("okx", "pbu0")
    assert row.status == "partially_filled" and row.filled_qty == D("1.5") and row.avg_price == D("30000.1")
    with pytest.raises(JournalError):
        await journal.update_order("okx", "pbu0", "exploded")
    with pytest.raises(JournalError):
        await journal.update_order("okx", "nope", "filled")


async def test_an_unreadable_row_is_skipped_and_the_rest_recovered(journal):
    await journal.record_order(req("pbok"), "entry", "i4")
    await journal.record_order(req("pbcorrupt"), "entry", "i4")
    await journal.db.execute("UPDATE orders SET qty='garbage' WHERE client_order_id='pbcorrupt'")
    rows = await journal.orders_with_status("pending")
    assert [r.client_order_id for r in rows] == ["pbok"]


async def test_positions_and_state_audit_survive_reopen(tmp_path):
    path = tmp_path / "j.sqlite"
    j = Journal(path)
    await j.open()
    await j.save_position("okx", "BTC-USDT-SWAP", D("-0.05"), D("30000"), D("1.2"))
    await j.record_state_change("PAUSED", "ACTIVE", "reconciled", "recovery")
    await j.close()
    j = Journal(path)
    await j.open()
    assert await j.positions() == [{"venue": "okx", "symbol": "BTC-USDT-SWAP", "size": D("-0.05"),
                                    "entry_price": D("30000"), "realized_pnl": D("1.2")}]
    assert (await j.state_changes(1))[0]["to"] == "ACTIVE"
    await j.close()
