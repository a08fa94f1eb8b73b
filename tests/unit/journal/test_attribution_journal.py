"""Attribution's journal view on a real SQLite journal: a trade's fills are its own orders' (entry, exit, a
close-all flatten while it was open), its funding is what its legs were paid while it was open, and the
computed attribution is kept per trade with its slippage observed once."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from perpbot.core.orders import OrderRequest
from perpbot.journal.attribution import AttributionJournal
from perpbot.journal.sqlite import MIGRATIONS, Journal, TradeChange

LEGS = ({"venue": "binance", "symbol": "BTCUSDT", "side": "buy", "base_qty": "0.01"},
        {"venue": "okx", "symbol": "BTC-USDT-SWAP", "side": "sell", "base_qty": "0.01"})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def journal(tmp_path):
    clock = Clock()
    j = Journal(tmp_path / "journal.sqlite", clock=clock)
    await j.open()
    j.test_clock = clock  # type: ignore[attr-defined]
    yield j
    await j.close()


def order(venue: str, symbol: str, side: str, cid: str) -> OrderRequest:
    return OrderRequest(venue=venue, symbol=symbol, side=side, qty=D("1"), price=D("60000"), client_order_id=cid)


async def test_a_trade_has_its_own_fills_and_the_funding_of_its_legs_while_open(journal):
    clock = journal.test_clock
    assert await journal.schema_version() == len(MIGRATIONS)
    # An earlier order on the same book, not of this trade.
    await journal.record_intent("old", "price_spread", "open", "BTC", {}, [(order("binance", "BTCUSDT", "buy", "c0"), "entry")])
    await journal.record_fill("binance", "f0", "c0", "BTCUSDT", "buy", D("0.01"), D("59000"), D("0.1"), ts=900.0)
    # The entry.
    await journal.record_intent("t1", "price_spread", "open", "BTC", {"edge_bps": "12"},
                                [(order("binance", "BTCUSDT", "buy", "c1"), "entry"),
                                 (order("okx", "BTC-USDT-SWAP", "sell", "c2"), "entry")])
    await journal.record_fill("binance", "f1", "c1", "BTCUSDT", "buy", D("0.01"), D("60000"), D("0.3"), ts=1000.0)
    await journal.record_fill("okx", "f2", "c2", "BTC-USDT-SWAP", "sell", D("0.01"), D("60100"), D("0.3"), ts=1000.0)
    await journal.finish_intent("t1", "hedged", TradeChange("open", "t1", LEGS, "t1", "price_spread", "BTC"))
    # Funding while it is open (and some before it, and on a venue it does not trade).
    clock.now = 1500.0
    await journal.record_funding("binance", "p0", "BTCUSDT", D("-0.5"), 800.0)
    await journal.record_funding("binance", "p1", "BTCUSDT", D("-0.06"), 1200.0)
    await journal.record_funding("okx", "p2", "BTC-USDT-SWAP", D("0.04"), 1200.0)
    await journal.record_funding("bybit", "p3", "BTCUSDT", D("0.9"), 1200.0)
    # An exit on binance, then close-all flattens okx.
    await journal.record_intent("x1", "price_spread", "close", "BTC", {}, [(order("binance", "BTCUSDT", "sell", "c3"), "exit")],
                                trade_id="t1")
    await journal.record_fill("binance", "f3", "c3", "BTCUSDT", "sell", D("0.01"), D("60050"), D("0.3"), ts=1500.0)
    await journal.record_order(order("okx", "BTC-USDT-SWAP", "buy", "c4"), "flatten", "closeall")
    await journal.record_fill("okx", "f4", "c4", "BTC-USDT-SWAP", "buy", D("0.01"), D("60020"), D("0.3"), ts=1500.0)
    clock.now = 1600.0
    await journal.close_trade("t1")
    await journal.record_funding("okx", "p4", "BTC-USDT-SWAP", D("0.04"), 1700.0)  # after it closed

    view = AttributionJournal(journal, clock)
    trade = await view.trade("t1")
    assert trade is not None and (trade.opened_ts, trade.closed_ts) == (1000.0, 1600.0)
    intents = await view.intents(trade)
    assert [(i.intent_id, i.action) for i in intents] == [("t1", "open"), ("x1", "close")]
    assert intents[0].decision == {"edge_bps": "12"}
    fills = await view.fills(trade, [i.intent_id for i in intents], trade.closed_ts)
    assert sorted((f.venue, f.side, f.price, f.intent_id) for f in fills) == [
        ("binance", "buy", D("60000"), "t1"), ("binance", "sell", D("60050"), "x1"),
        ("okx", "buy", D("60020"), None), ("okx", "sell", D("60100"), "t1")]
    funding = await view.funding(trade, trade.closed_ts)
    assert sorted((p.venue, p.amount) for p in funding) == [("binance", D("-0.06")), ("okx", D("0.04"))]
    assert await view.trade_ids_of([("binance", "c1"), ("binance", "c3"), ("okx", "c4"), ("binance", "c0")]) == {
        ("binance", "c1"): "t1", ("binance", "c3"): "t1"}

    # The computed attribution: saved, rewritten, observed once.
    await view.save(trade, {"trade_id": "t1", "realized_pnl_usdt": "1"})
    await view.save(trade, {"trade_id": "t1", "realized_pnl_usdt": "2"})
    assert await view.saved("t1") == {"trade_id": "t1", "realized_pnl_usdt": "2"}
    assert await view.saved_many(["t1", "t1", "nope"]) == {"t1": {"trade_id": "t1", "realized_pnl_usdt": "2"}}
    assert [a["realized_pnl_usdt"] for a in await view.closed_since(1600.0)] == ["2"]
    assert await view.closed_since(1600.5) == []
    assert await view.mark_observed("t1") is True
    assert await view.mark_observed("t1") is False
    await view.save(trade, {"trade_id": "t1", "realized_pnl_usdt": "3"})
    assert await view.mark_observed("t1") is False  # a rewrite keeps it observed
    assert [t.trade_id for t in await view.trades_since(1601.0)] == []
