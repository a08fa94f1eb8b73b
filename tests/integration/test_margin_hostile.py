"""Hostile margin scenarios against the simulator, on every venue: a mark shock that approaches one leg's
liquidation makes the bot reduce both legs before the venue liquidates; a one-leg liquidation or ADL makes
it close the other leg within the unhedged-exposure budget. Money stays exact: the bot's positions, entries
and fees equal the simulator's after each scenario."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D

import pytest

from perpbot.app import App
from perpbot.control.views import trading_state
from perpbot.core.decisions import Decision, Leg
from perpbot.settings import Settings
from perpbot.sim.faults import Fault

from test_e2e_trading_core import start_app, stop_app
from testkit import free_port, wait_until

SYMBOLS = {"okx": "BTC-USDT-SWAP", "hyperliquid": "BTC", "binance": "BTCUSDT", "bybit": "BTCUSDT"}
# (long venue, short venue): every venue holds a long once (the shocked or liquidated leg).
PAIRS = [("okx", "binance"), ("binance", "okx"), ("bybit", "hyperliquid"), ("hyperliquid", "bybit")]
QTY = D("0.005")  # ~300 USDT a leg
WALLET = D("110")  # on the long's venue: a ~36 % move against the long liquidates it at 10x


def settings_for(tmp_path, long: str, short: str) -> Settings:
    ports = {venue: free_port() for venue in SYMBOLS}
    # 10x on every venue, set by the account preflight (as the accounts are leveraged in these scenarios).
    venues = {venue: {"enabled": venue in (long, short), "symbols": [symbol], "leverage": 10}
              for venue, symbol in SYMBOLS.items()}
    return Settings(
        mode="sim", log_dir=str(tmp_path / "logs"), journal={"path": str(tmp_path / "journal.sqlite")},
        http={"host": "127.0.0.1", "port": 0}, api_token="margin-hostile-token", venues=venues,
        sim={"enabled": True, "ports": ports, "admin_port": free_port(), "seed": 21, "tick_interval_s": 0.05,
             "dislocation_rate": 0.0},
        feeds={"backoff_initial_s": 0.05, "backoff_max_s": 0.5},
        risk={"min_edge_bps": 1, "max_book_age_s": 5.0, "max_leverage": 5, "margin_check_interval_s": 0.05},
        strategies={"price_spread": {"enabled": False}, "funding_spread": {"enabled": False}},
        execution={"reconcile_interval_s": 0.5, "order_timeout_s": 5.0},
    )


async def open_trade(app: App, long: str, short: str) -> str:
    """One hedged trade through the engine's own path (risk gate, both legs, journal): long on `long`."""
    engine = app.engine.engine
    streams = app.engine.private_streams
    assert streams is not None and app.engine.preflight is not None
    await wait_until(lambda: all(s.live for s in streams.streams.values()), timeout=30)
    await asyncio.wait_for(app.engine.preflight.first_pass.wait(), 30)
    assert engine.desk.venues_blocked == {}
    market = app.simulator.market
    _, asks = market.levels(long, SYMBOLS[long])
    bids, _ = market.levels(short, SYMBOLS[short])
    legs = (Leg(long, SYMBOLS[long], "buy", QTY, asks[0][0]), Leg(short, SYMBOLS[short], "sell", QTY, bids[0][0]))
    decision = Decision("price_spread", "open", "BTC", legs, D(50), D(1), "margin scenario")
    [report] = await engine.on_decisions([decision])
    assert report.get("outcome") == "hedged", report
    [trade_id] = list(engine.desk.open_trades)
    return trade_id


def sim_size(app: App, venue: str) -> D:
    return app.simulator.exchanges[venue].account.position(SYMBOLS[venue]).size


def assert_bot_equals_simulator(app: App, venues: tuple[str, str]) -> None:
    portfolio = app.engine.engine.portfolio
    for venue in venues:
        account = app.simulator.exchanges[venue].account
        position = account.position(SYMBOLS[venue])
        local = portfolio.positions.get((venue, SYMBOLS[venue]))
        assert (local.size if local else D(0)) == position.size, venue
        if position.size:
            assert local is not None and local.entry_price == position.entry, venue
        bot_fees = sum((f.fee for f in portfolio.fills if f.venue == venue), D(0))
        ours = sum((f.fee for f in account.fills if f.client_id is not None), D(0))
        venue_closes = sum((f.fee for f in account.fills if f.client_id is None), D(0))
        # Our own orders' fees are booked from their fills; the venue's own closes (liquidation) are not ours.
        assert bot_fees in (ours, ours + venue_closes), (venue, bot_fees, ours, venue_closes)


async def leveraged(app: App, long: str) -> None:
    await asyncio.wait_for(app.engine.preflight.first_pass.wait(), 30)  # it sets the 10x
    sim = app.simulator.exchanges[long]
    assert sim.account.leverage_of(SYMBOLS[long]) == D(10)
    sim.account.balances[sim.account.currency] = WALLET
    await app.engine.engine.sync_positions()  # the bot reads the smaller equity


@pytest.mark.parametrize("long, short", PAIRS, ids=[f"{a}-long-{b}-short" for a, b in PAIRS])
async def test_a_shock_toward_one_legs_liquidation_reduces_both_legs_before_the_venue_liquidates(tmp_path, long, short):
    app, task = await start_app(settings_for(tmp_path, long, short))
    engine = app.engine.engine
    try:
        await leveraged(app, long)
        trade_id = await open_trade(app, long, short)
        key = (long, SYMBOLS[long])
        await wait_until(lambda: key in engine.portfolio.margins
                         and engine.portfolio.margins[key].size == sim_size(app, long), timeout=20)
        leg = app.simulator.exchanges[long].leg_risk(SYMBOLS[long])
        assert leg is not None and leg.distance_pct is not None and D(30) < leg.distance_pct < D(40)
        # A shock on the long's venue alone, to a mark 7.5 % above the liquidation price: past the reduce
        # threshold (10 %), short of the critical one (5 %) and of the liquidation.
        target = leg.liquidation_price / (1 - D("0.075"))
        bps = float((target / leg.mark - 1) * 10_000)
        app.simulator.faults.add(Fault("mark_shock", long, SYMBOLS[long], params={"bps": bps}))
        # Both legs shrink together (half each), and the venue never liquidates.
        await wait_until(lambda: abs(sim_size(app, long)) < QTY and abs(sim_size(app, short)) < QTY, timeout=20)
        assert sim_size(app, long) == -sim_size(app, short) > 0
        await engine.sync_positions()
        sims = app.simulator.exchanges
        assert all(o.origin is None for v in (long, short) for o in sims[v].account.orders.values())
        trade = engine.desk.open_trades.get(trade_id)
        assert trade is not None and {D(leg["base_qty"]) for leg in trade["legs"]} == {sim_size(app, long)}
        assert app.engine.margin_guard.reductions >= 1
        assert_bot_equals_simulator(app, (long, short))
    finally:
        await stop_app(app, task)


@pytest.mark.parametrize("kind", ["liquidate", "adl"])
@pytest.mark.parametrize("long, short", PAIRS, ids=[f"{a}-long-{b}-short" for a, b in PAIRS])
async def test_one_leg_closed_by_the_venue_makes_the_bot_close_the_other_within_the_unhedged_budget(
        tmp_path, long, short, kind):
    app, task = await start_app(settings_for(tmp_path, long, short))
    engine = app.engine.engine
    try:
        await open_trade(app, long, short)
        if kind == "adl":
            # ADL takes a leg in profit: lift the long's venue a little so the long is it.
            app.simulator.faults.add(Fault("mark_shock", long, SYMBOLS[long], params={"bps": 100}))
        app.simulator.faults.add(Fault(kind, long, SYMBOLS[long]))
        await wait_until(lambda: sim_size(app, long) == 0, timeout=20)
        closes = [o for o in app.simulator.exchanges[long].account.orders.values() if o.origin is not None]
        assert [o.origin for o in closes] == ["liquidation" if kind == "liquidate" else "adl"]
        # The bot learns it from the push, reconciles and closes the naked short.
        await wait_until(lambda: sim_size(app, short) == 0, timeout=20)
        await wait_until(lambda: engine.desk.open_trades == {}, timeout=10)
        await engine.sync_positions()
        assert app.engine.margin_guard.naked_closes == 1
        # Naked from the venue's close to ours, by the venues' own fill times: within the unhedged budget.
        forced_ms = closes[0].updated_ms
        ours = [f for f in app.simulator.exchanges[short].account.fills if f.client_id is not None]
        naked_usdt_s = QTY * ours[-1].price * D(ours[-1].ts_ms - forced_ms) / 1000
        assert D(0) <= naked_usdt_s < engine.settings.risk.unhedged_budget_usdt_seconds, naked_usdt_s
        assert engine.metrics.private_margin_events_total.labels(
            long, "liquidation" if kind == "liquidate" else "adl")._value.get() >= 1 or long == "hyperliquid"
        assert_bot_equals_simulator(app, (long, short))
    finally:
        await stop_app(app, task)


async def test_a_leg_gone_without_a_pushed_liquidation_is_closed_only_after_the_grace(tmp_path):
    """A venue that closes a leg without saying why (no liquidation or ADL pushed: an adjustment): the margin
    watch waits NAKED_GRACE_S (a reconciliation may still be settling it), then closes the other leg."""
    from perpbot.execution.margin_guard import NAKED_GRACE_S

    long, short = "okx", "binance"
    app, task = await start_app(settings_for(tmp_path, long, short))
    engine = app.engine.engine
    try:
        await open_trade(app, long, short)
        app.simulator.exchanges[long].set_position(SYMBOLS[long], D(0), D(0))
        await wait_until(lambda: engine.portfolio.positions[(long, SYMBOLS[long])].size == 0, timeout=20)
        seen_at = engine.desk.clock()
        await wait_until(lambda: sim_size(app, short) == 0, timeout=20)
        assert engine.desk.clock() - seen_at >= NAKED_GRACE_S - 0.5  # not before the grace (less the check step)
        await wait_until(lambda: engine.desk.open_trades == {}, timeout=10)
        assert app.engine.margin_guard.naked_closes == 1
    finally:
        await stop_app(app, task)


def our_orders(app: App, venue: str) -> list:
    return [o for o in app.simulator.exchanges[venue].account.orders.values() if o.origin is None]


@pytest.mark.parametrize("long, short", PAIRS, ids=[f"{a}-long-{b}-short" for a, b in PAIRS])
async def test_an_exit_racing_an_adl_is_refused_once_never_retried_blind_and_never_reopens_the_other_leg(
        tmp_path, long, short):
    """The venue deleverages the long while its push is still on the way (stream_lag) and the strategy exits:
    the long's reduce-only sell is refused. The bot puts that position in doubt: the exit is not repaired by
    re-opening the short it just closed, no later exit goes to the doubted leg, and once the venue has stated
    the position (its push, or a REST read begun after the refusal) the trade, flat on both venues, is closed.
    Finding 16 of docs/RELIABILITY.md: before, the refused exit was retried ~20 times a second and the other
    leg re-opened, until three "leg repairs" HALTed trading."""
    app, task = await start_app(settings_for(tmp_path, long, short))
    engine = app.engine.engine
    symbol = SYMBOLS[long]
    try:
        trade_id = await open_trade(app, long, short)
        app.simulator.faults.add(Fault("stream_lag", long, duration_s=3.0, params={"ms": 1500}))
        # Its reads fail meanwhile (orders go on): only the push, when it comes, can settle the doubt.
        app.simulator.faults.add(Fault("rest_5xx", long, duration_s=6.0, params={"on": "read"}))
        app.simulator.faults.add(Fault("mark_shock", long, symbol, params={"bps": 100}))  # the long in profit
        app.simulator.faults.add(Fault("adl", long, symbol))
        await wait_until(lambda: sim_size(app, long) == 0, timeout=20)
        assert engine.portfolio.positions[(long, symbol)].size == QTY  # not pushed yet: the bot still holds it
        market = app.simulator.market
        bids, _ = market.levels(long, symbol)
        _, asks = market.levels(short, SYMBOLS[short])
        exit_ = Decision("price_spread", "close", "BTC",
                         (Leg(long, symbol, "sell", QTY, bids[0][0]), Leg(short, SYMBOLS[short], "buy", QTY, asks[0][0])),
                         D(0), D(0), "converged", trade_id=trade_id)
        [report] = await engine.on_decisions([exit_])
        assert report["outcome"] == "awaiting_position", report
        refused = [(r.venue, r.side) for r in await engine.desk.journal.orders_with_status("rejected")]
        assert refused == [(long, "sell")]  # the venue refused the long's exit (it holds no long any more)
        assert [o.side for o in our_orders(app, short)] == ["sell", "buy"]  # the exit's buy, no re-opening sell
        assert sim_size(app, short) == 0
        # Asked again while in doubt: skipped, nothing sent.
        assert (long, symbol) in engine.desk.doubted
        assert list(trading_state(engine.desk)["positions_in_doubt"]) == [f"{long} {symbol}"]  # /api/trading/state
        [again] = await engine.on_decisions([exit_])
        assert again["outcome"] == "skipped" and "in doubt" in again["reason"], again
        assert len(await engine.desk.journal.orders_with_status("rejected")) == 1
        assert [o.side for o in our_orders(app, long)] == ["buy"] and len(our_orders(app, short)) == 2
        # The venue's pushed position settles it (its reads still fail); the margin watch closes the trade
        # the venues hold nothing of.
        await wait_until(lambda: engine.desk.open_trades == {} and not engine.desk.doubted, timeout=20)
        assert app.simulator.faults.active(long, "rest_5xx", None) is not None  # settled with no REST read
        assert [(c["venue"], c["local_size"], c["venue_size"], c["source"]) for c in engine.desk.pushed_corrections
                ] == [(long, str(QTY), "0", "pushed it")]
        assert engine.state == "ACTIVE" and engine.desk.leg_failures == 0
        await engine.sync_positions()
        assert_bot_equals_simulator(app, (long, short))
    finally:
        await stop_app(app, task)
