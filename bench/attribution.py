"""Attribution cost on a journal holding N closed trades (real SQLite): one trade attributed at its close (under
the trade lock), the 24 h gauges, a one-day summary. `python bench/attribution.py [N] [--no-index]` (--no-index:
without migration 5's indexes, for comparison)."""
from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from decimal import Decimal as D
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from perpbot.journal.sqlite import Journal
from perpbot.execution.attribution import TradeAttributions
from perpbot.telemetry.metrics import Metrics

N = int(sys.argv[1]) if len(sys.argv) > 1 else 20000

async def main(path):
    j = Journal(path); await j.open()
    db = j.db
    t0 = 1_700_000_000.0
    exp = {"top_price": "60000", "depth_price": "60001", "fee_rate": "0.0005", "funding_rate": "0.0001",
           "funding_interval_s": "28800", "expected_funding_usdt": "0"}
    legs_dec = [{"venue": "binance", "symbol": "BTCUSDT"}, {"venue": "okx", "symbol": "BTC-USDT-SWAP"}]
    decision = json.dumps({"edge_bps": "10", "edge_usdt": "0.3", "legs": legs_dec, "expectation": {"legs": [exp, exp], "hold_s": "600"}})
    await db.execute("BEGIN")
    for n in range(N):
        ts = t0 + n * 10
        tid, xid = f"t{n}", f"x{n}"
        for iid, action, trade in ((tid, "open", None), (xid, "close", tid)):
            await db.execute("INSERT INTO intents VALUES (?,?,?,?,?,?,?,?,?)", (iid, "price_spread", action, "BTC", trade, decision, "hedged", ts, ts))
            for k, (venue, symbol) in enumerate((("binance", "BTCUSDT"), ("okx", "BTC-USDT-SWAP"))):
                cid = f"{iid}{k}"
                side = ("buy" if k == 0 else "sell") if action == "open" else ("sell" if k == 0 else "buy")
                await db.execute("INSERT INTO orders (client_order_id, venue, intent_id, purpose, symbol, side, qty, price, reduce_only, status, filled_qty, fee, created_ts, updated_ts) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                                 (cid, venue, iid, "entry", symbol, side, "1", "60000", 0, "filled", "1", "0.03", ts, ts))
                await db.execute("INSERT INTO fills VALUES (?,?,?,?,?,?,?,?,?,?,?)", (venue, "f" + cid, cid, symbol, side, "0.001", "60002", "0.03", "0", "price_spread", ts))
        await db.execute("INSERT INTO trades VALUES (?,?,?,?,?,'closed',?,?)", (tid, tid, "price_spread", "BTC",
                         json.dumps([{"venue": "binance", "symbol": "BTCUSDT", "side": "buy"}, {"venue": "okx", "symbol": "BTC-USDT-SWAP", "side": "sell"}]), ts, ts + 5))
        await db.execute("INSERT INTO funding_payments VALUES (?,?,?,?,?)", ("okx", f"p{n}", "BTC-USDT-SWAP", "0.01", ts + 2))
    await db.execute("COMMIT")
    if "--no-index" in sys.argv:
        for name in ("intents_trade", "orders_intent", "fills_order", "funding_payments_ts", "trades_closed", "trades_status"):
            await db.execute(f"DROP INDEX {name}")
    attributions = TradeAttributions(j, Metrics(), ["binance", "okx"], clock=lambda: t0 + N * 10)
    times = []
    for n in range(N - 200, N):
        start = time.perf_counter()
        await attributions.on_trade_closed(f"t{n}")
        times.append((time.perf_counter() - start) * 1000)
    result = await attributions.of_trade(f"t{N-1}")
    assert result is not None and len(result.legs) == 2 and result.legs[1].funding_usdt == D("0.01"), result
    start = time.perf_counter(); await attributions.update_gauges(); gauges = (time.perf_counter() - start) * 1000
    start = time.perf_counter(); rows = await attributions.summary(1); summary = (time.perf_counter() - start) * 1000
    times.sort()
    print(f"N={N} trades: on_trade_closed p50 {statistics.median(times):.2f} ms p99 {times[int(len(times)*0.99)-1]:.2f} ms; "
          f"update_gauges {gauges:.0f} ms; summary(1 day) {summary:.0f} ms ({len(rows)} rows)")
    await j.close()

with tempfile.TemporaryDirectory() as d:
    asyncio.run(main(os.path.join(d, "j.sqlite")))
