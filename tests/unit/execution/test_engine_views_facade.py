"""The control read views over a desk, and the facade's shared attributes (no SQLite, no venue)."""

from __future__ import annotations

from decimal import Decimal as D

from engine_fakes import INSTRUMENTS, OKX, FakeJournal, FakeVenue, make_desk, make_store

from perpbot.control import views
from perpbot.core.margin import LegMargin
from perpbot.core.orders import OrderResult
from perpbot.execution.desk import mark
from perpbot.execution.engine import Engine
from perpbot.portfolio import Portfolio
from perpbot.risk.gate import RiskGate
from perpbot.settings import Settings
from perpbot.telemetry.metrics import Metrics


def test_positions_show_mark_pnl_and_the_unhedged_residue():
    desk = make_desk()
    desk.portfolio.set_position("okx", OKX.symbol, D("0.02"), D("29000"))
    [row] = views.positions(desk.portfolio, {("okx", OKX.symbol): D("0.001")}, lambda v, s: mark(desk, v, s))
    no_margin_yet = {"liquidation_price": None, "liquidation_distance_pct": None, "maintenance_margin": None,
                     "margin_ratio": None, "adl_rank": None, "margin_mode": None, "margin_source": None}
    assert row == {"venue": "okx", "symbol": OKX.symbol, "side": "long", "size": "0.02", "entry_price": "29000",
                   "mark_price": "29995", "unrealized_pnl": "19.9", "leverage": None, "unhedged_base": "0.001",
                   **no_margin_yet}


def test_positions_show_the_legs_liquidation_price_and_distance_as_the_venue_stated_them():
    desk = make_desk()
    desk.portfolio.set_position("okx", OKX.symbol, D("0.02"), D("29000"))
    desk.portfolio.set_margin(LegMargin("okx", OKX.symbol, D("0.02"), D("30000"), D("27000.5"), D("2.4"),
                                        D("41.5"), 2, "cross", D("10"), 5, source="stream"))
    [row] = views.positions(desk.portfolio, {}, lambda v, s: mark(desk, v, s))
    assert (row["liquidation_price"], row["liquidation_distance_pct"], row["maintenance_margin"],
            row["margin_ratio"], row["adl_rank"], row["margin_mode"], row["margin_source"]) == (
        "27000.5", "9.9983", "2.4", "41.5", 2, "cross", "stream")
    # An older statement never replaces a newer one; a flat leg's is dropped.
    desk.portfolio.set_margin(LegMargin("okx", OKX.symbol, D("0.02"), D("30000"), D("1"), None, None, None,
                                        None, None, 4, source="rest"))
    assert desk.portfolio.margins[("okx", OKX.symbol)].liquidation_price == D("27000.5")
    desk.portfolio.set_margin(LegMargin("okx", OKX.symbol, D(0), None, None, None, None, None, None, None, 6))
    assert ("okx", OKX.symbol) not in desk.portfolio.margins


def test_trading_state_and_active_orders():
    desk = make_desk()
    desk.in_flight["c1"] = {"venue": "okx", "client_order_id": "c1"}
    desk.venue_open_orders["hyperliquid"] = [OrderResult("hyperliquid", "BTC", "c2", "v", "open", "buy", D("0.01"))]
    state = views.trading_state(desk)
    assert state["state"] == "PAUSED" and state["open_trades"] == 0 and state["reconciled"] == {
        "okx": False, "hyperliquid": False}
    assert [o["client_order_id"] for o in views.active_orders(desk)] == ["c1", "c2"]
    assert views.active_orders(desk)[1]["qty"] == "0.01"


async def test_trades_since_reads_memory_while_it_holds_the_whole_window():
    desk = make_desk()
    desk.portfolio.apply_fill("okx", OKX.symbol, "buy", D("0.02"), D("30000"), D("0.1"), ts=desk.clock(),
                              strategy="s", client_order_id="c1")
    [fill] = await views.trades_since(desk, 0)
    assert fill["client_order_id"] == "c1"
    assert views.pnl_today(desk.portfolio)["fees"] == "0.1"
    assert views.balances(desk.portfolio) == []


def make_engine(clock=lambda: 1000.0) -> Engine:
    settings, metrics = Settings(), Metrics()
    venues = {"okx": FakeVenue("okx"), "hyperliquid": FakeVenue("hyperliquid")}
    return Engine(settings, venues, RiskGate(settings.risk, settings.execution, metrics), make_store(),  # type: ignore[arg-type]
                  dict(INSTRUMENTS), None, FakeJournal(), Portfolio(), metrics, clock=clock)  # type: ignore[arg-type]


def test_the_facade_reads_and_writes_the_shared_desk():
    engine = make_engine()
    assert engine.state == "PAUSED" and engine.desk.state_since == 1000.0
    assert engine.reconciled is engine.desk.reconciled and engine._trade_lock is engine.desk.trade_lock
    engine._clock = lambda: 2000.0  # tests move the engine's clock: every part sees it
    assert engine.desk.clock() == 2000.0 and engine.states.desk.clock() == 2000.0
    engine.unhedged_usdt_seconds = D(5)
    assert engine.desk.unhedged_usdt_seconds == D(5)
    assert engine.funding_map == {} and engine.startup_funding is None


async def test_an_observer_of_reconcile_sees_the_periodic_pass():
    engine = make_engine()
    seen = []
    original = engine._reconcile

    async def observed(**kwargs):
        seen.append(kwargs)
        return await original(**kwargs)

    engine._reconcile = observed  # as perpbot.reliability.live does
    await engine.periodic()
    assert seen and engine.state == "ACTIVE"
    assert engine.trading_state()["reconciled"] == {"okx": True, "hyperliquid": True}
