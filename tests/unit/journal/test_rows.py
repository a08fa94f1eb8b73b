"""Typed journal rows: attributes, and the mapping access kept for the former dict callers."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from perpbot.core.states import FINAL_ORDER_STATUSES, OrderStatus
from perpbot.journal.sqlite import FINAL_STATUSES, ORDER_STATUSES, Journal, JournalError, OrderRow, TradeChange
from perpbot.core.orders import OrderRequest


async def test_reads_return_typed_rows_that_also_answer_as_mappings(tmp_path):
    j = Journal(tmp_path / "j.sqlite")
    await j.open()
    try:
        await j.save_position("okx", "BTC-USDT-SWAP", D("-0.05"), D("30000"), D("1.2"))
        await j.record_fill("okx", "f1", "c1", "BTC-USDT-SWAP", "sell", D("0.05"), D("30000"), D("0.3"), ts=5.0)
        await j.record_funding("okx", "p1", "BTC-USDT-SWAP", D("-0.25"), 6.0)
        await j.record_state_change("PAUSED", "ACTIVE", "reconciled", "recovery")
        await j.apply_trade_change(TradeChange("open", "t1", ({"venue": "okx", "base_qty": "0.05"},), "i1", "s", "BTC"))
        await j.record_intent("i2", "s", "open", "BTC", {"legs": []}, [])

        [position] = await j.positions()
        assert position.size == D("-0.05") and position["size"] == D("-0.05")
        assert dict(position) == {"venue": "okx", "symbol": "BTC-USDT-SWAP", "size": D("-0.05"),
                                  "entry_price": D("30000"), "realized_pnl": D("1.2")}
        [fill] = await j.fills_since(0)
        assert (fill.fill_id, fill["base_qty"], fill.get("strategy")) == ("f1", D("0.05"), None)
        [payment] = await j.funding_since(0)
        assert payment.amount == payment["amount"] == D("-0.25")
        [change] = await j.state_changes(1)
        assert (change.from_state, change.to_state) == ("PAUSED", "ACTIVE")
        assert (change["from"], change["to"], "from_state" in change) == ("PAUSED", "ACTIVE", False)
        [trade] = await j.open_trades()
        assert trade.legs == trade["legs"] == [{"venue": "okx", "base_qty": "0.05"}]
        assert trade.get("entry_edge_bps") is None and {**dict(trade), "x": 1}["trade_id"] == "t1"
        [intent] = await j.intents_with_status("sending")
        assert intent.decision == {"legs": []} and intent["intent_id"] == "i2"
        with pytest.raises(KeyError):
            intent["nope"]
    finally:
        await j.close()


async def test_order_status_is_the_core_enum_and_an_unknown_one_is_refused(tmp_path):
    assert set(ORDER_STATUSES) == set(OrderStatus) and set(FINAL_STATUSES) == FINAL_ORDER_STATUSES
    assert "filled" in FINAL_STATUSES and "open" not in FINAL_STATUSES and OrderStatus.FILLED.final
    j = Journal(tmp_path / "j.sqlite")
    await j.open()
    try:
        await j.record_order(OrderRequest("okx", "BTC-USDT-SWAP", "buy", D("1"), D("100"), "c1"), "hedge", None)
        await j.update_order("okx", "c1", OrderStatus.FILLED, filled_qty=D("1"))
        row = await j.order("okx", "c1")
        assert isinstance(row, OrderRow) and row.status is OrderStatus.FILLED and row.status == "filled"
        assert row.as_dict()["status"] == "filled"
        with pytest.raises(JournalError):
            await j.update_order("okx", "c1", "done")
    finally:
        await j.close()
