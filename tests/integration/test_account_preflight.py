"""Account preflight against the simulated venues through the real ccxt clients: at start every venue's
leverage is set as configured and its position and margin modes are right; a wrong position mode, a wrong
margin mode and leverage off are each fixed; what the venue refuses to change (a position open) keeps the
venue out of trading with its reason in /api/trading/state, the metric and the risk gate."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from perpbot.app import App

from test_e2e_trading_core import start_app, stop_app
from test_margin_positions import SYMBOLS, frozen_market_settings
from testkit import wait_until

LEVERAGE = D(3)  # risk.max_leverage's default: the leverage every symbol is set to


def preflight_done(app: App) -> bool:
    preflight = app.engine.preflight
    return preflight is not None and set(preflight.results) == set(SYMBOLS)


async def started(tmp_path) -> tuple[App, object]:
    app, task = await start_app(frozen_market_settings(tmp_path))
    await wait_until(lambda: preflight_done(app), timeout=30)
    return app, task


async def test_start_sets_every_venues_leverage_and_leaves_one_way_cross_accounts_trading(tmp_path):
    app, task = await started(tmp_path)
    engine = app.engine.engine
    try:
        results = app.engine.preflight.results
        assert {venue: result.problems for venue, result in results.items()} == {venue: [] for venue in SYMBOLS}
        for venue, symbol in SYMBOLS.items():
            account = app.simulator.exchanges[venue].account
            assert account.leverage_of(symbol) == LEVERAGE, venue
            assert (account.position_mode, account.margin_mode_of(symbol)) == ("one_way", "cross"), venue
            assert engine.metrics.venue_preflight_ok.labels(venue)._value.get() == 1
        assert engine.desk.venues_blocked == {}
        # Where the venue tells its leverage, the change is reported as a fix (the simulator starts at 1x).
        fixes = {venue: [fix for r in app.engine.preflight.history if r.venue == venue for fix in r.fixed]
                 for venue in SYMBOLS}
        assert "BTCUSDT leverage 1 -> 3" in fixes["binance"] and "BTC-USDT-SWAP leverage 1 -> 3" in fixes["okx"]
        # The account's own fee rates were read where the venue answers them.
        assert results["binance"].fees["BTCUSDT"] == (D("0.0002"), D("0.0005"))
    finally:
        await stop_app(app, task)


@pytest.mark.parametrize("venue", ["binance", "okx", "bybit"])
async def test_a_hedge_mode_account_is_switched_back_to_one_way(tmp_path, venue):
    app, task = await started(tmp_path)
    try:
        sim = app.simulator.exchanges[venue]
        sim.set_position_mode("hedge")
        result = await app.engine.preflight.check(venue)
        assert result.ok, result.problems
        assert sim.account.position_mode == "one_way"
        if venue != "bybit":  # Bybit has no position-mode read: it is set, not found wrong first
            assert "position mode hedge -> one-way" in result.fixed
    finally:
        await stop_app(app, task)


@pytest.mark.parametrize("venue", ["binance", "okx", "bybit", "hyperliquid"])
async def test_a_wrong_margin_mode_and_leverage_are_set_back(tmp_path, venue):
    app, task = await started(tmp_path)
    try:
        sim = app.simulator.exchanges[venue]
        symbol = SYMBOLS[venue]
        sim.set_margin_mode(symbol, "isolated")
        sim.set_leverage(symbol, D(7))
        result = await app.engine.preflight.check(venue)
        assert result.ok, result.problems
        assert sim.account.margin_mode_of(symbol) == "cross" and sim.account.leverage_of(symbol) == LEVERAGE
        if venue == "binance":
            assert f"{symbol} margin mode isolated -> cross" in result.fixed
            assert f"{symbol} leverage 7 -> 3" in result.fixed
    finally:
        await stop_app(app, task)


@pytest.mark.parametrize("venue", ["binance", "okx", "bybit"])
async def test_a_change_the_venue_refuses_keeps_the_venue_out_of_trading_with_its_reason(tmp_path, venue):
    app, task = await started(tmp_path)
    engine = app.engine.engine
    try:
        sim = app.simulator.exchanges[venue]
        symbol = SYMBOLS[venue]
        sim.set_position(symbol, D(1), sim.market.mark(venue, symbol))
        sim.account.position_mode = "hedge"  # set by hand at the venue while a position is open
        result = await app.engine.preflight.check(venue)
        assert not result.ok
        assert sim.account.position_mode == "hedge"  # the venue refused: nothing changed
        reason = engine.desk.venues_blocked[venue]
        assert "refused" in reason
        assert engine.trading_state()["venues_blocked"] == {venue: reason}
        assert engine.metrics.venue_preflight_ok.labels(venue)._value.get() == 0
        ctx = engine.states.risk_context()
        assert ctx.venues_blocked == {venue: reason}
        # Closed and set right at the venue, the next pass lets it trade again.
        sim.set_position(symbol, D(0), D(0))
        assert (await app.engine.preflight.check(venue)).ok
        assert venue not in engine.desk.venues_blocked
    finally:
        await stop_app(app, task)


async def test_a_private_stream_reconnect_checks_that_venues_account_again(tmp_path):
    app, task = await started(tmp_path)
    try:
        streams = app.engine.private_streams
        await wait_until(lambda: all(s.live for s in streams.streams.values()), timeout=30)
        sim = app.simulator.exchanges["binance"]
        sim.set_position_mode("hedge")  # changed at the venue while the bot runs
        passes = len(app.engine.preflight.history)
        history = app.engine.preflight.history
        streams.streams["binance"].restart("test: reconnect")
        await wait_until(lambda: len(history) > passes and history[-1].venue == "binance", timeout=60)
        assert sim.account.position_mode == "one_way"
        assert "position mode hedge -> one-way" in history[-1].fixed
        # The fix is in the audit trail beside the operators' requests (logged and audited).
        rows = await app.engine.journal.db.execute_fetchall(
            "SELECT method, path, scope, outcome FROM control_audit WHERE path = 'preflight_fix/binance'")
        assert ("BOT", "preflight_fix/binance", "bot", "fix position mode hedge -> one-way") in rows, rows
    finally:
        await stop_app(app, task)


async def test_a_preflight_the_venue_did_not_answer_is_tried_again_not_left_blocked(tmp_path):
    from perpbot.sim.faults import Fault

    app, task = await started(tmp_path)
    engine = app.engine.engine
    try:
        app.simulator.faults.add(Fault("rest_5xx", "binance", count=1))
        result = await app.engine.preflight.check("binance")
        assert result.transient and not result.ok
        assert "binance" in engine.desk.venues_blocked
        # The next pass (RETRY_S later) finds the venue answering and the account right: trading again.
        await wait_until(lambda: "binance" not in engine.desk.venues_blocked, timeout=20)
        assert app.engine.preflight.results["binance"].ok
    finally:
        await stop_app(app, task)
