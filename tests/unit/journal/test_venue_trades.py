"""The venue's own trade ids in the journal: each execution recognised once, across a restart,
and an order's streamed totals summed exactly."""

from decimal import Decimal as D

from perpbot.core.private_events import VenueFill
from perpbot.journal.sqlite import Journal


def fill(trade_id: str, qty: str, price: str, fee: str, cid: str = "pbA1", venue: str = "okx") -> VenueFill:
    return VenueFill(venue, "BTC-USDT-SWAP", trade_id, cid, "7001", "buy", D(qty), D(price), D(fee), "USDT",
                     "taker", 1_700_000_000_000, 1_700_000_000.5)


async def test_a_trade_id_is_new_once_even_after_a_restart(tmp_path):
    path = tmp_path / "j.sqlite"
    journal = Journal(path)
    await journal.open()
    assert await journal.note_venue_trade(fill("t1", "2", "30000.1", "0.03"))
    assert not await journal.note_venue_trade(fill("t1", "2", "30000.1", "0.03"))  # pushed twice
    await journal.close()
    reopened = Journal(path)
    await reopened.open()
    try:
        assert not await reopened.note_venue_trade(fill("t1", "2", "30000.1", "0.03"))  # replayed after restart
        assert await reopened.note_venue_trade(fill("t2", "1", "30000.4", "0.015"))
        assert await reopened.venue_trade_count("okx") == 2
    finally:
        await reopened.close()


async def test_the_same_trade_id_on_another_venue_or_symbol_is_another_execution(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    await journal.open()
    try:
        assert await journal.note_venue_trade(fill("t1", "1", "1", "0"))
        assert await journal.note_venue_trade(fill("t1", "1", "1", "0", venue="bybit"))
        assert await journal.venue_trade_count() == 2
    finally:
        await journal.close()


async def test_an_orders_totals_are_the_exact_sum_of_its_executions(tmp_path):
    journal = Journal(tmp_path / "j.sqlite")
    await journal.open()
    try:
        await journal.note_venue_trade(fill("t1", "0.1", "30000.1", "0.0015"))
        await journal.note_venue_trade(fill("t2", "0.2", "30000.4", "0.003"))
        await journal.note_venue_trade(fill("t3", "5", "1", "0", cid="other"))
        totals = await journal.order_trade_totals("okx", "pbA1")
        assert (totals.qty, totals.fee, totals.count) == (D("0.3"), D("0.0045"), 2)
        assert totals.notional == D("0.1") * D("30000.1") + D("0.2") * D("30000.4")
        assert totals.avg_price == totals.notional / D("0.3")
        empty = await journal.order_trade_totals("okx", "nothing")
        assert empty.qty == 0 and empty.avg_price is None
    finally:
        await journal.close()
