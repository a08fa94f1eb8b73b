"""The running bot places its orders over the venues' order sockets (execution.order_entry "ws", the
default): trades open and close on the simulator with every order sent over WebSocket, no REST order
at all, the private streams confirming, and the bot's books equal to the simulator's to the last digit."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from perpbot.execution.order_routing import RoutedClient
from perpbot.settings import Settings

from test_e2e_trading_core import start_app, stop_app
from testkit import free_port, wait_until

NATIVE = {"okx": "BTC-USDT-SWAP", "binance": "BTCUSDT", "bybit": "BTCUSDT", "hyperliquid": "BTC"}


def settings_for(tmp_path, pair: tuple[str, str]) -> Settings:
    ports = {venue: free_port() for venue in NATIVE}
    venues = {venue: {"enabled": venue in pair, "symbols": [NATIVE[venue]]} for venue in NATIVE}
    return Settings(
        mode="sim", log_dir=str(tmp_path / "logs"), journal={"path": str(tmp_path / "journal.sqlite")},
        http={"host": "127.0.0.1", "port": 0}, api_token="e2e-operator-token", venues=venues,
        sim={"enabled": True, "ports": ports, "admin_port": free_port(), "seed": 5, "tick_interval_s": 0.05,
             "dislocation_rate": 0.6, "dislocation_bps": 80.0},
        feeds={"backoff_initial_s": 0.05, "backoff_max_s": 0.5},
        risk={"min_edge_bps": 1, "max_orders_per_minute": 600, "max_book_age_s": 5.0},
        strategies={"price_spread": {"order_size_usdt": 300, "min_edge_bps": 5, "exit_edge_bps": 2, "max_hold_s": 0.3},
                    "funding_spread": {"enabled": False}},
        execution={"reconcile_interval_s": 3600.0, "order_timeout_s": 5.0},
    )


def routed(app, pair) -> dict[str, RoutedClient]:
    clients = app.engine.clients
    return {v: clients[v] for v in pair if isinstance(clients[v], RoutedClient)}


@pytest.mark.parametrize("pair", [("okx", "binance"), ("bybit", "hyperliquid")])
async def test_the_bot_trades_over_its_order_sockets_and_its_books_equal_the_simulator(tmp_path, pair):
    app, task = await start_app(settings_for(tmp_path, pair))
    engine = app.engine.engine
    try:
        sockets = app.engine.order_sockets
        assert sockets is not None
        await wait_until(lambda: all(s.ready() for s in sockets.sockets.values()), timeout=30)
        ws_venues = routed(app, pair)
        assert set(ws_venues) == set(pair)  # every venue has its order socket
        # Two round trips on both venues (entries and exits), the socket venues' orders over WebSocket.
        await wait_until(lambda: all(
            sum(1 for f in app.simulator.exchanges[v].account.fills if f.realized_pnl != 0) >= 2 for v in pair),
            timeout=90)
        async with engine._trade_lock:  # noqa: SLF001 - no trade in flight while we read
            for venue, client in ws_venues.items():
                assert client.ws_orders >= 2 and client.rest_orders == 0, (venue, client.ws_orders, client.rest_orders)
                assert sockets.sockets[venue].unknown == 0
        flattened = await engine.close_all()
        assert all(r["status"] == "closed" for r in flattened["results"]), flattened
        await engine.sync_positions()
        portfolio = engine.portfolio
        for venue in pair:
            account = app.simulator.exchanges[venue].account
            position = account.positions.get(NATIVE[venue])
            local = portfolio.positions.get((venue, NATIVE[venue]))
            assert (local.size if local else D(0)) == (position.size if position else D(0))
            assert sum((f.fee for f in portfolio.fills if f.venue == venue), D(0)) == account.fees_paid
            realized = sum((f.realized_pnl for f in account.fills), D(0))
            assert (local.realized_pnl if local else D(0)) == realized
    finally:
        await stop_app(app, task)
