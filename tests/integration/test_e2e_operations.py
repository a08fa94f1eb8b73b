"""Runbook procedures end to end over HTTP against the simulator: emergency stop (pause), resume,
emergency flatten (close-all, including a position opened behind the bot's back) and resync (first as
a dry run that changes nothing, then applied)."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D

import aiohttp

from perpbot.app import App
from perpbot.sim.faults import Fault

from testkit import wait_until
from test_e2e_trading_core import VENUES, e2e_settings, start_app, stop_app

TOKEN = {"Authorization": "Bearer e2e-operator-token"}


def sim_order_count(app: App) -> int:
    return sum(len(app.simulator.exchanges[v].account.orders) for v in VENUES)


def sim_positions(app: App) -> dict[tuple[str, str], D]:
    return {(v, s): p.size for v in VENUES for s, p in app.simulator.exchanges[v].account.positions.items() if p.size}


async def test_pause_stops_orders_resume_trades_close_all_flattens_and_sync_adopts_the_venue(tmp_path):
    # Periodic reconciliation far away: the resync below is the operator's, not the timer's.
    settings = e2e_settings(tmp_path, max_hold_s=1.0, reconcile_interval_s=600.0)
    # No private streams: a position pushed by the venue would be reconciled by the bot at once, and the
    # inconsistency the runbook's resync (and its dry run) is for would heal before the operator looks.
    settings.execution.private_streams = False
    app, task = await start_app(settings)
    engine = app.engine.engine
    base = f"http://127.0.0.1:{app.control.port}"
    try:
        async with aiohttp.ClientSession() as http:
            async def call(method: str, path: str, **kw):
                async with http.request(method, base + path, **kw) as resp:
                    status, body = resp.status, await resp.json()
                while status == 202:  # a long close-all / sync: follow its operation to the end
                    async with http.get(base + body["poll"] + "?wait=8") as resp:
                        view = await resp.json()
                    if view["status"] != "running":
                        return (200, view["result"]) if view["status"] == "done" else (503, view)
                return status, body

            await wait_until(lambda: sim_order_count(app) >= 2, timeout=60)  # the bot trades dislocations

            # Emergency stop: without the token nothing changes; with it, no order reaches a venue afterwards.
            assert (await call("POST", "/api/trading/pause"))[0] == 401
            status, paused = await call("POST", "/api/trading/pause", json={"reason": "e2e emergency stop"},
                                        headers=TOKEN)
            assert status == 200 and paused["state"] == "PAUSED", paused
            frozen = sim_order_count(app)
            tick = app.simulator.market.tick
            # Dislocations continue (random ones plus injected jumps; open trades pass max_hold_s and want
            # to exit) while the venue order count stays put.
            for bps in (90, -90, 90):
                app.simulator.faults.add(Fault("price_jump", "binance", symbol="BTCUSDT", params={"bps": bps}))
            await wait_until(lambda: app.simulator.market.tick >= tick + 60
                             and not app.simulator.faults.pending(), timeout=30)
            assert sim_order_count(app) == frozen
            assert (await call("GET", "/api/orders/active"))[1] == []
            assert all(not ex.account.open_orders() for ex in app.simulator.exchanges.values())

            # Resume: trading again.
            status, resumed = await call("POST", "/api/trading/resume", headers=TOKEN)
            assert status == 200 and resumed["state"] == "ACTIVE", resumed
            await wait_until(lambda: sim_order_count(app) > frozen, timeout=60)

            # Emergency flatten, including positions the bot never opened (set at the venue behind its back
            # while the bot is stopped, so no exit of its own races the change).
            status, paused = await call("POST", "/api/trading/pause", headers=TOKEN)
            assert status == 200 and paused["state"] == "PAUSED", paused
            app.simulator.exchanges["binance"].set_position("BTCUSDT", D("0.007"), D("59000"))
            app.simulator.exchanges["hyperliquid"].set_position("BTC", D("-0.004"), D("60000"))
            status, flattened = await call("POST", "/api/positions/close-all", headers=TOKEN)
            assert status == 200, flattened
            by_position = {(r["venue"], r["symbol"]): r for r in flattened["results"]}
            assert by_position[("binance", "BTCUSDT")]["status"] == "closed", flattened
            assert D(by_position[("binance", "BTCUSDT")]["size"]) == D("0.007"), flattened
            assert by_position[("hyperliquid", "BTC")]["status"] == "closed", flattened
            assert all(r["status"] == "closed" for r in flattened["results"]), flattened
            assert sim_positions(app) == {}
            assert (await call("GET", "/api/positions"))[1] == []
            assert flattened["state"] == "PAUSED"
            assert sim_order_count(app) >= frozen + 2

            # Data inconsistency: a position changes behind the bot's back; sync reports it and adopts it.
            app.simulator.exchanges["binance"].set_position("BTCUSDT", D("-0.003"), D("61000.5"))
            status, preview = await call("POST", "/api/sync/positions?dry_run=true", headers=TOKEN)
            assert status == 200 and preview["dry_run"] is True, preview
            assert [(c["venue"], c["symbol"], D(c["local_size"]), D(c["venue_size"])) for c in preview["changed"]] == [
                ("binance", "BTCUSDT", D(0), D("-0.003"))], preview
            assert (await call("GET", "/api/positions"))[1] == []  # the dry run applied nothing
            assert ("binance", "BTCUSDT") not in engine.portfolio.positions or \
                engine.portfolio.positions[("binance", "BTCUSDT")].size == 0
            status, report = await call("POST", "/api/sync/positions", headers=TOKEN)
            assert status == 200, report
            changes = [c for c in report["changed"] if c.get("kind") != "funding"]
            assert len(changes) == 1, report
            assert changes[0]["venue"] == "binance" and changes[0]["symbol"] == "BTCUSDT", report
            assert D(changes[0]["venue_size"]) == D("-0.003"), report
            status, positions = await call("GET", "/api/positions")
            assert [(p["venue"], p["symbol"], D(p["size"]), D(p["entry_price"])) for p in positions] == [
                ("binance", "BTCUSDT", D("-0.003"), D("61000.5"))]
            assert {(p["venue"], p["symbol"]): D(p["size"]) for p in positions} == sim_positions(app)
            assert engine.portfolio.positions[("binance", "BTCUSDT")].entry_price == D("61000.5")
    finally:
        await stop_app(app, task)
