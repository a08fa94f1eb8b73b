"""Margin safety per leg, end to end: the bot's /api/positions shows each leg's liquidation price and distance
exactly as the simulator's own margin engine has them (OKX, Bybit, Hyperliquid from the private pushes,
Binance from REST), and a one-leg liquidation reaches the bot as a liquidation."""

from __future__ import annotations

from decimal import Decimal as D

import aiohttp

from perpbot.app import App
from perpbot.execution.desk import publish
from perpbot.settings import Settings

from test_e2e_trading_core import start_app, stop_app
from testkit import free_port, wait_until

SYMBOLS = {"okx": "BTC-USDT-SWAP", "hyperliquid": "BTC", "binance": "BTCUSDT", "bybit": "BTCUSDT"}
TOKEN = "margin-operator-token"


def frozen_market_settings(tmp_path) -> Settings:
    """All four venues, no trading (an edge no spread reaches) and a market that does not move (one tick an hour),
    so every mark, and every liquidation distance, holds still while it is compared."""
    ports = {venue: free_port() for venue in SYMBOLS}
    return Settings(
        mode="sim", log_dir=str(tmp_path / "logs"), journal={"path": str(tmp_path / "journal.sqlite")},
        http={"host": "127.0.0.1", "port": 0}, api_token=TOKEN,
        venues={venue: {"enabled": True, "symbols": [symbol]} for venue, symbol in SYMBOLS.items()},
        sim={"enabled": True, "ports": ports, "admin_port": free_port(), "seed": 11, "tick_interval_s": 3600.0},
        feeds={"backoff_initial_s": 0.05, "backoff_max_s": 0.5},
        risk={"min_edge_bps": 1, "max_book_age_s": 7200.0},
        strategies={"price_spread": {"order_size_usdt": 300, "min_edge_bps": 100000, "exit_edge_bps": 2},
                    "funding_spread": {"enabled": False}},
        execution={"reconcile_interval_s": 3600.0, "order_timeout_s": 5.0},
    )


async def api_positions(app: App) -> dict[tuple[str, str], dict]:
    assert app.control is not None
    port = app.control.port
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/api/positions",
                               headers={"Authorization": f"Bearer {TOKEN}"}) as response:
            assert response.status == 200, await response.text()
            rows = await response.json()
    return {(row["venue"], row["symbol"]): row for row in rows}


async def test_every_legs_liquidation_price_and_distance_equal_the_simulators_own_figures(tmp_path):
    app, task = await start_app(frozen_market_settings(tmp_path))
    engine = app.engine.engine
    try:
        sims = app.simulator.exchanges
        for index, (venue, symbol) in enumerate(SYMBOLS.items()):
            sim = sims[venue]
            sim.account.balances[sim.account.currency] = D(6000)
            sim.set_leverage(symbol, D(10))
            mark = sim.market.mark(venue, symbol)
            # Longs and shorts: a position taken behind the bot's back (pushed as an adjustment).
            sim.set_position(symbol, D(1) if index % 2 == 0 else D(-1), mark)
        await engine.sync_positions()
        expected = {(v, s): sims[v].leg_risk(s) for v, s in SYMBOLS.items()}
        assert all(leg is not None and leg.liquidation_price is not None for leg in expected.values())

        def stated() -> bool:
            margins = engine.portfolio.margins
            return all(k in margins and margins[k].liquidation_price == leg.liquidation_price
                       for k, leg in expected.items())

        await wait_until(stated, timeout=20)
        rows = await api_positions(app)
        for key, leg in expected.items():
            row = rows[key]
            assert D(row["liquidation_price"]) == leg.liquidation_price, (key, row)
            assert D(row["liquidation_distance_pct"]) == leg.distance_pct, (key, row)
            assert row["margin_mode"] == "cross", (key, row)
        # Binance pushes no liquidation price: its figures can only have come from REST.
        assert rows[("binance", "BTCUSDT")]["margin_source"] == "rest"
        assert D(rows[("okx", "BTC-USDT-SWAP")]["maintenance_margin"]) == expected[("okx", "BTC-USDT-SWAP")].maintenance_margin
        assert rows[("bybit", "BTCUSDT")]["adl_rank"] == expected[("bybit", "BTCUSDT")].adl_rank
        assert rows[("hyperliquid", "BTC")]["adl_rank"] is None  # Hyperliquid gives no ADL rank
        # And as metrics, per leg.
        publish(engine.desk)
        for (venue, symbol), leg in expected.items():
            gauge = engine.metrics.liquidation_price.labels(venue, symbol)
            assert gauge._value.get() == float(leg.liquidation_price), (venue, symbol)
            assert engine.metrics.liquidation_distance.labels(venue, symbol)._value.get() > 0
        # Collateral: each venue's equity against its share; 6000 USDT(C) each behind one leg each: balanced.
        imbalance = {v: engine.metrics.collateral_imbalance.labels(v)._value.get() for v in SYMBOLS}
        assert all(abs(value) < 100 for value in imbalance.values()), imbalance
    finally:
        await stop_app(app, task)
