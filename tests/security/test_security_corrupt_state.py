"""Garbage in Redis keys and corrupt journal rows are rejected one by one: the rest of the state survives."""

from __future__ import annotations

from decimal import Decimal

import redis.asyncio as redis_async

from perpbot.journal.redis_state import PREFIX, RedisState
from perpbot.journal.sqlite import Journal


async def test_garbage_written_into_redis_keys_is_rejected_without_losing_the_other_keys(redis_server):
    state = RedisState(redis_server)
    raw = redis_async.from_url(redis_server, decode_responses=True)
    try:
        await state.set_state("ACTIVE", "ok")
        await state.set_positions([{"venue": "okx", "symbol": "BTC-USDT-SWAP", "size": "0.01"}])
        await state.heartbeat()
        good_beat = await state.last_heartbeat()
        assert good_beat is not None

        await raw.set(PREFIX + "positions", "{not json")
        assert await state.get_positions() == []
        assert await state.get_state() == {"state": "ACTIVE", "reason": "ok", "since": (await raw.hget(PREFIX + "trading_state", "since"))}
        assert await state.last_heartbeat() == good_beat

        for junk in ('{"a": 1}', '[1, 2]', '"text"'):
            await raw.set(PREFIX + "positions", junk)
            assert await state.get_positions() == [], junk

        await raw.set(PREFIX + "heartbeat", "yesterday")
        assert await state.last_heartbeat() is None
        await raw.set(PREFIX + "heartbeat", "nan")
        assert await state.last_heartbeat() is None

        await raw.delete(PREFIX + "trading_state")
        await raw.set(PREFIX + "trading_state", "garbage")  # wrong type for a hash
        assert await state.get_state() == {}
        await raw.lpush(PREFIX + "positions.bad", "x")
        await raw.delete(PREFIX + "positions")
        await raw.lpush(PREFIX + "positions", "x")  # wrong type for a string
        assert await state.get_positions() == []

        # Writers still work over the garbage and every reader recovers.
        await raw.delete(PREFIX + "trading_state", PREFIX + "positions")
        await state.set_state("PAUSED", "operator")
        await state.set_positions([{"venue": "bybit", "symbol": "BTCUSDT", "size": "1"}])
        await state.heartbeat()
        assert (await state.get_state())["state"] == "PAUSED"
        assert await state.get_positions() == [{"venue": "bybit", "symbol": "BTCUSDT", "size": "1"}]
        assert await state.last_heartbeat() is not None
    finally:
        await raw.aclose()
        await state.close()


async def test_corrupt_journal_rows_are_skipped_and_every_other_row_is_still_read(tmp_path):
    journal = Journal(tmp_path / "journal.sqlite")
    await journal.open()
    try:
        await journal.save_position("okx", "BTC-USDT-SWAP", Decimal("0.01"), Decimal("60000"), Decimal("0"))
        await journal.save_position("bybit", "BTCUSDT", Decimal("-0.01"), Decimal("60010"), Decimal("1.5"))
        await journal.record_funding("okx", "p1", "BTC-USDT-SWAP", Decimal("-0.12"), 100.0)
        await journal.record_funding("okx", "p2", "BTC-USDT-SWAP", Decimal("0.05"), 200.0)
        await journal.record_fill("okx", "f1", None, "BTC-USDT-SWAP", "buy", Decimal("0.01"), Decimal("60000"), Decimal("0.1"), ts=100.0)
        await journal.record_fill("okx", "f2", None, "BTC-USDT-SWAP", "sell", Decimal("0.01"), Decimal("60010"), Decimal("0.1"), ts=101.0)
        await journal.open_trade("t1", "i1", "price_spread", "BTC", [{"venue": "okx"}])
        await journal.open_trade("t2", "i2", "price_spread", "BTC", [{"venue": "bybit"}])
        db = journal.db
        await db.execute("UPDATE positions SET size='NaN-ish' WHERE venue='okx'")
        await db.execute("UPDATE funding_payments SET amount='garbage' WHERE payment_id='p1'")
        await db.execute("UPDATE fills SET price='Infinity' WHERE fill_id='f1'")
        await db.execute("UPDATE trades SET legs='{broken' WHERE trade_id='t1'")
        await db.commit()

        positions = await journal.positions()
        assert [(p["venue"], p["size"]) for p in positions] == [("bybit", Decimal("-0.01"))]
        funding = await journal.funding_since(0.0)
        assert [(f["payment_id"], f["amount"]) for f in funding] == [("p2", Decimal("0.05"))]
        fills = await journal.fills_since(0.0)
        assert [f["fill_id"] for f in fills] == ["f2"]
        trades = await journal.open_trades()
        assert [t["trade_id"] for t in trades] == ["t2"]
    finally:
        await journal.close()
