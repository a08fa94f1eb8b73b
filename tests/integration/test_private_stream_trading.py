"""Trading on the private streams: with every venue's stream live, an entry or exit trade makes no
REST request beyond its orders (fills, prices and fees come pushed), and what the bot booked equals
the simulator's accounts to the last digit. Requests are recorded where ccxt sends them (its HTTP
call) in the running bot."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D
from urllib.parse import urlsplit

from perpbot.execution.ccxt_client import CcxtClient
from perpbot.execution.order_routing import rest_of

from test_e2e_trading_core import VENUES, assert_engine_equals_simulator, e2e_settings, start_app, stop_app
from testkit import wait_until

# The order placements of each venue's REST API as ccxt sends them (path, method).
ORDER_PATHS = {
    "hyperliquid": ("/exchange", "POST"),
    "binance": ("/fapi/v1/order", "POST"),
}


def record_requests(clients: dict) -> list[tuple[str, str, str]]:
    """Wrap each venue client's ccxt fetch: (venue, method, path) of every request from now on."""
    seen: list[tuple[str, str, str]] = []
    for venue, client in clients.items():
        client = rest_of(client)
        assert isinstance(client, CcxtClient)
        send = client.exchange.fetch

        async def recording(url, method="GET", headers=None, body=None, _venue=venue, _send=send):
            seen.append((_venue, method, urlsplit(url).path))
            return await _send(url, method, headers, body)

        client.exchange.fetch = recording
    return seen


async def test_trades_on_live_private_streams_make_no_rest_request_beyond_their_orders(tmp_path):
    # Reconciliation far apart: the window below must hold nothing but the trades' own traffic.
    settings = e2e_settings(tmp_path, reconcile_interval_s=3600.0, max_hold_s=0.3)
    app, task = await start_app(settings)
    service = app.engine
    engine = service.engine
    try:
        streams = service.private_streams
        assert streams is not None and set(streams.streams) == set(VENUES)
        await wait_until(lambda: all(s.live for s in streams.streams.values()), timeout=30)
        # Start-up's background reads (funding history, instrument refresh) are done before recording.
        for background in (engine.startup_funding, service.instrument_refresh):
            if background is not None:
                await asyncio.wait_for(asyncio.shield(background), 30)
        await asyncio.wait_for(service.preflight.first_pass.wait(), 30)  # the account preflight's reads
        seen = record_requests(service.clients)
        booked_before = engine.desk.confirmations.booked
        fills_before = {v: len(app.simulator.exchanges[v].account.fills) for v in VENUES}
        # At least two round trips (entries and exits) on both venues, confirmed by the streams.
        await wait_until(lambda: all(
            sum(1 for f in app.simulator.exchanges[v].account.fills[fills_before[v]:] if f.realized_pnl != 0) >= 2
            for v in VENUES), timeout=60)
        async with engine._trade_lock:  # noqa: SLF001 - no trade in flight while we read
            placed = [(v, m, p) for v, m, p in seen if (p, m) == ORDER_PATHS[v]]
            others = [(v, m, p) for v, m, p in seen if (p, m) != ORDER_PATHS[v]]
            # Orders left over REST or over the venues' order sockets (execution.order_entry "ws").
            over_ws = sum(getattr(c, "ws_orders", 0) for c in service.clients.values())
            assert placed or over_ws, seen
            assert others == [], f"REST requests beyond the orders: {others}"
            confirmations = engine.desk.confirmations
            assert engine.metrics.private_confirm_timeouts_total.labels("binance")._value.get() == 0
            assert engine.metrics.private_confirm_timeouts_total.labels("hyperliquid")._value.get() == 0
            assert confirmations.duplicates >= 0 and confirmations.booked >= booked_before
        flattened = await engine.close_all()
        assert all(r["status"] == "closed" for r in flattened["results"]), flattened
        await engine.sync_positions()
        assert_engine_equals_simulator(app)
        # Every execution the venues reported is in the journal once, by its trade id.
        trades = sum(len(app.simulator.exchanges[v].account.fills) for v in VENUES)
        assert await engine.journal.venue_trade_count() == trades
        assert sum(D(f.qty) for v in VENUES for f in app.simulator.exchanges[v].account.fills) > 0
    finally:
        await stop_app(app, task)
