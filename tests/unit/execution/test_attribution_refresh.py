"""The engine's attribution keeping on a real SQLite journal: a trade closed outside a decision (start-up
repair) is attributed and its slippage observed by the periodic refresh, once; the refresh runs at most
every REFRESH_EVERY_S; the 24 h gauges sum the closed trades per venue."""

from __future__ import annotations

import json
from decimal import Decimal as D

from perpbot.core.orders import OrderRequest
from perpbot.execution.attribution import REFRESH_EVERY_S, TradeAttributions
from perpbot.journal.sqlite import Journal, TradeChange
from perpbot.telemetry.metrics import Metrics

EXPECTED = {"top_price": "60000", "depth_price": "60001", "fee_rate": "0.0005", "funding_rate": "0.0001",
            "funding_interval_s": "28800", "expected_funding_usdt": "0"}
LEGS = ({"venue": "binance", "symbol": "BTCUSDT", "side": "buy", "base_qty": "0.01"},
        {"venue": "okx", "symbol": "BTC-USDT-SWAP", "side": "sell", "base_qty": "0.01"})


class Clock:
    now = 10_000.0

    def __call__(self) -> float:
        return self.now


async def test_a_trade_closed_by_start_up_repair_is_attributed_and_observed_once_by_the_refresh(tmp_path):
    clock = Clock()
    journal = Journal(tmp_path / "journal.sqlite", clock=clock)
    await journal.open()
    try:
        decision = {"edge_bps": "5", "edge_usdt": "0.03", "legs": [dict(leg) for leg in LEGS],
                    "expectation": {"legs": [EXPECTED, EXPECTED], "hold_s": "600"}}
        orders = [(OrderRequest("binance", "BTCUSDT", "buy", D("0.01"), D("60010"), "c1"), "entry"),
                  (OrderRequest("okx", "BTC-USDT-SWAP", "sell", D("1"), D("60010"), "c2"), "entry")]
        await journal.record_intent("t1", "price_spread", "open", "BTC", json.loads(json.dumps(decision)), orders)
        await journal.record_fill("binance", "f1", "c1", "BTCUSDT", "buy", D("0.01"), D("60003"), D("0.3"))
        await journal.record_fill("okx", "f2", "c2", "BTC-USDT-SWAP", "sell", D("0.01"), D("59999"), D("0.3"))
        await journal.finish_intent("t1", "hedged", TradeChange("open", "t1", LEGS, "t1", "price_spread", "BTC"))
        metrics = Metrics()
        attributions = TradeAttributions(journal, metrics, ["binance", "okx"], clock)
        clock.now += 30
        await journal.apply_trade_change(TradeChange("close", "t1"))  # as start-up repair closes it: no hook
        count = lambda venue: metrics.registry.get_sample_value(  # noqa: E731
            "perpbot_slippage_bps_count", {"exchange": venue, "phase": "entry"})
        assert count("binance") == 0

        await attributions.refresh()
        assert count("binance") == count("okx") == 1
        # Bought 2 above, sold 2 below the expected depth price 60001: 2 / 60001 x 10^4 = 0.33 bps each, in the
        # (0, 1] bucket (a histogram with negative buckets has no _sum).
        bucket = lambda venue, le: metrics.registry.get_sample_value(  # noqa: E731
            "perpbot_slippage_bps_bucket", {"exchange": venue, "phase": "entry", "le": le})
        assert [bucket(v, "0.0") for v in ("binance", "okx")] == [0, 0]
        assert [bucket(v, "1.0") for v in ("binance", "okx")] == [1, 1]
        saved = await attributions.store.saved("t1")
        assert saved is not None and [leg["entry_slippage_bps"] for leg in saved["legs"]] == [
            str(D("0.02") * 10000 / D("600.01"))] * 2
        assert metrics.registry.get_sample_value("perpbot_fee_drift_bps", {"exchange": "binance"}) == float(
            (D("0.3") - D("600.03") * D("0.0005")) / D("600.03") * 10000)
        assert saved["status"] == "closed"

        clock.now += REFRESH_EVERY_S / 2
        await journal.record_funding("okx", "p1", "BTC-USDT-SWAP", D("0.05"), 10_010.0)  # late, inside the hold
        await attributions.refresh()  # too soon: nothing recomputed
        assert (await attributions.store.saved("t1"))["totals"]["funding_usdt"] == "0"
        clock.now += REFRESH_EVERY_S
        await attributions.refresh()
        assert (await attributions.store.saved("t1"))["totals"]["funding_usdt"] == "0.05"
        assert count("binance") == count("okx") == 1  # observed once
        assert metrics.registry.get_sample_value("perpbot_funding_drift_usdt", {"exchange": "okx"}) > 0
    finally:
        await journal.close()
