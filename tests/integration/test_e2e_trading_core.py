"""Trading core end to end: the in-process App trades the simulator's Hyperliquid and Binance venues through
the real ccxt classes; the engine's positions, fees, realised PnL and funding equal the simulator's accounts."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D

from perpbot.app import App
from perpbot.settings import Settings

from testkit import free_port, wait_started, wait_until

VENUES = {"hyperliquid": "BTC", "binance": "BTCUSDT"}


def e2e_settings(tmp_path, **strategy) -> Settings:
    """Two venues, one symbol each, frequent dislocations, short holds, fast reconciliation."""
    ports = {venue: free_port() for venue in ("okx", "hyperliquid", "binance", "bybit")}
    venues = {venue: {"enabled": venue in VENUES, "symbols": [VENUES.get(venue, "BTCUSDT")]}
              for venue in ports}
    venues["okx"]["symbols"] = ["BTC-USDT-SWAP"]
    return Settings(
        mode="sim", log_dir=str(tmp_path / "logs"), journal={"path": str(tmp_path / "journal.sqlite")},
        http={"host": "127.0.0.1", "port": 0}, api_token="e2e-operator-token", venues=venues,
        sim={"enabled": True, "ports": ports, "admin_port": free_port(), "seed": 5, "tick_interval_s": 0.05,
             "dislocation_rate": 0.6, "dislocation_bps": 80.0},
        feeds={"backoff_initial_s": 0.05, "backoff_max_s": 0.5},
        risk={"min_edge_bps": 1, "max_orders_per_minute": 600, "max_book_age_s": 5.0},
        strategies={"price_spread": {"order_size_usdt": 300, "min_edge_bps": 5, "exit_edge_bps": 2,
                                     "max_hold_s": strategy.get("max_hold_s", 1.0)},
                    "funding_spread": {"enabled": False}},
        execution={"reconcile_interval_s": strategy.get("reconcile_interval_s", 0.5), "order_timeout_s": 5.0},
    )


async def start_app(settings: Settings) -> tuple[App, asyncio.Task]:
    app = App(settings)
    task = asyncio.get_running_loop().create_task(app.run())
    await wait_started(app, task)
    await wait_until(lambda: app.engine is not None and app.engine.engine.state == "ACTIVE", timeout=30)
    return app, task


async def stop_app(app: App, task: asyncio.Task) -> None:
    app.request_stop()
    assert await asyncio.wait_for(task, 20) == 0


def sim_fills(app: App, venue: str) -> list:
    return app.simulator.exchanges[venue].account.fills


def assert_engine_equals_simulator(app: App) -> None:
    """Per venue and symbol: size, average entry, realised PnL, fees and funding, all Decimal-equal."""
    engine = app.engine.engine
    portfolio = engine.portfolio
    for venue, symbol in VENUES.items():
        account = app.simulator.exchanges[venue].account
        sim_position = account.positions.get(symbol)
        local = portfolio.positions.get((venue, symbol))
        sim_size = sim_position.size if sim_position else D(0)
        sim_entry = sim_position.entry if sim_position and sim_position.size else D(0)
        assert (local.size if local else D(0)) == sim_size, (venue, local, sim_position)
        assert (local.entry_price if local else D(0)) == sim_entry, (venue, local, sim_position)
        sim_realized = sum((f.realized_pnl for f in account.fills if f.symbol == symbol), D(0))
        assert (local.realized_pnl if local else D(0)) == sim_realized, (venue, local, sim_realized)
        bot_fees = sum((f.fee for f in portfolio.fills if f.venue == venue), D(0))
        assert bot_fees == account.fees_paid, (venue, bot_fees, account.fees_paid)
        assert len([f for f in portfolio.fills if f.venue == venue]) >= 1
        sim_funding = sum((p.amount for p in account.funding if p.symbol == symbol), D(0))
        assert portfolio.funding_total(venue, symbol) == sim_funding, (venue, portfolio.funding_total(venue), sim_funding)


async def test_bot_opens_and_closes_hedged_trades_and_its_books_equal_the_simulator_to_the_last_digit(tmp_path):
    app, task = await start_app(e2e_settings(tmp_path))
    engine = app.engine.engine
    try:
        # 1. The scanner finds injected dislocations and the engine opens a hedged trade on both venues.
        await wait_until(lambda: engine.open_trades and all(
            (p := app.simulator.exchanges[v].account.positions.get(s)) is not None and p.size
            for v, s in VENUES.items()), timeout=60)
        # 2. Funding settles at the simulator while both legs are open. Holding the trade lock keeps the
        # engine from placing orders meanwhile, so the positions compared here are the ones funded.
        async with engine._trade_lock:  # noqa: SLF001 - the engine's own serialisation point
            opened = {v: app.simulator.exchanges[v].account.positions[s].size for v, s in VENUES.items()}
            if not all(opened.values()):
                raise AssertionError(f"a leg closed before funding: {opened}")
            for venue, symbol in VENUES.items():
                exchange = app.simulator.exchanges[venue]
                rate, interval_h, next_ms = exchange.market.funding(venue, symbol)
                assert rate != 0
                due = max(next_ms, exchange._funding_due.get(symbol, 0))  # noqa: SLF001 - next unsettled time
                assert exchange.settle_funding(due + 2 * interval_h * 3_600_000)  # three settlements each
        funded = {v: [p for p in app.simulator.exchanges[v].account.funding] for v in VENUES}
        assert all(len(payments) == 3 for payments in funded.values()), funded
        # Opposite legs: one side pays, the other receives (rates differ per venue).
        assert {v: opened[v] > 0 for v in VENUES} != {v: True for v in VENUES}
        # 3. Trades exit (converged spread or max_hold_s) and at least one round trip completes.
        await wait_until(lambda: all(any(f.realized_pnl != 0 for f in sim_fills(app, v)) for v in VENUES),
                         timeout=60)
        # 4. Flatten (REDUCING: no new entries), then reconcile (this also fetches funding history).
        flattened = await engine.close_all()
        assert engine.state == "REDUCING" and not engine.open_trades and not engine.in_flight
        assert all(r["status"] == "closed" for r in flattened["results"]), flattened
        report = await engine.sync_positions()
        assert report["errors"] == {}, report
        assert [c for c in report["changed"] if c.get("kind") != "funding"] == [], report
        assert_engine_equals_simulator(app)
        for venue, symbol in VENUES.items():
            assert engine.portfolio.positions[(venue, symbol)].size == 0  # flat at the simulator too (above)
        # Funding is journalled once: another sync books nothing new, the totals stay equal.
        again = await engine.sync_positions()
        assert [c for c in again["changed"] if c.get("kind") == "funding"] == []
        assert_engine_equals_simulator(app)
        journal_rows = await engine.journal.funding_since(0)
        assert len(journal_rows) == 6
        assert sum((r["amount"] for r in journal_rows), D(0)) == sum(
            (p.amount for v in VENUES for p in app.simulator.exchanges[v].account.funding), D(0))
        pnl = engine.pnl_today()
        assert D(pnl["fees"]) == sum((app.simulator.exchanges[v].account.fees_paid for v in VENUES), D(0))
    finally:
        await stop_app(app, task)
