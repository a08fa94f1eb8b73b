"""Paper mode books funding: PaperFunding settles paper positions at each venue's funding times from the
feeds' rates, once per interval, with the simulated venues' formula, and the engine journals and books
those payments through the same funding sync as a live venue's (controllable clocks, no sleeps)."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal as D

from perpbot.book.store import BookStore
from perpbot.core.events import FundingUpdate
from perpbot.core.instruments import Instrument
from perpbot.core.orders import OrderRequest
from perpbot.execution.engine import Engine
from perpbot.execution.paper import PaperClient, PaperFunding
from perpbot.feeds.supervisor import FundingStore
from perpbot.journal.sqlite import Journal
from perpbot.portfolio import Portfolio
from perpbot.risk.gate import RiskGate
from perpbot.settings import Settings
from perpbot.sim.server import Simulator
from perpbot.sim.trading.exchange import SimExchange
from perpbot.sim.market import SimInstrument
from perpbot.telemetry.metrics import Metrics
from perpbot.wiring import build_engine

from test_execution_support import HL, OKX, make_store
from testkit import approved, free_port, wait_until

HOUR_MS = 3_600_000
T = 1_763_798_400_000  # a funding time: a multiple of 8 h (2025-11-22 08:00 UTC)


def update(venue: str, symbol: str, rate: str, next_ms: int | None, mark: str | None = None,
           interval_hours: float = 8.0) -> FundingUpdate:
    return FundingUpdate(venue, symbol, D(rate), interval_hours, next_ms, D(mark) if mark else None,
                         exchange_ts_ms=0, recv_ts=0.0)


async def paper_venues(store: BookStore) -> dict[str, PaperClient]:
    """OKX long 0.02 BTC (2 contracts of 0.01) at 30000, Hyperliquid short 0.02 BTC at 29995."""
    okx = PaperClient("okx", store, {OKX.symbol: OKX}, latency_ms=0)
    hl = PaperClient("hyperliquid", store, {"BTC": HL}, latency_ms=0)
    assert (await okx.place_order(approved(OrderRequest("okx", OKX.symbol, "buy", D("2"), D("30000"), "o1")))).status == "filled"
    assert (await hl.place_order(approved(OrderRequest("hyperliquid", "BTC", "sell", D("0.02"), D("29995"), "h1")))).status == "filled"
    return {"okx": okx, "hyperliquid": hl}


async def test_each_settlement_is_paid_once_at_the_rate_reported_before_its_time():
    store = make_store()
    venues = await paper_venues(store)
    okx_cash, hl_cash = venues["okx"].cash, venues["hyperliquid"].cash
    funding = {
        ("okx", OKX.symbol): update("okx", OKX.symbol, "0.0001", T),  # OKX sends no mark: the book's mid
        ("hyperliquid", "BTC"): update("hyperliquid", "BTC", "0.00002", T, mark="30002", interval_hours=1),
    }
    schedule = PaperFunding(venues, funding)

    assert schedule.settle_due(T - 10_000) == []
    assert schedule.armed() == {("okx", OKX.symbol): (T, D("0.0001")), ("hyperliquid", "BTC"): (T, D("0.00002"))}
    funding[("okx", OKX.symbol)] = update("okx", OKX.symbol, "0.00015", T)  # the rate moves before settlement
    assert schedule.settle_due(T - 1) == []

    payments = schedule.settle_due(T)
    by_venue = {p.venue: p for p in payments}
    assert sorted(by_venue) == ["hyperliquid", "okx"]
    # Long pays a positive rate: -0.02 * 29995 (mid) * 0.00015; short receives: 0.02 * 30002 * 0.00002.
    assert by_venue["okx"].amount == D("-0.089985")
    assert by_venue["hyperliquid"].amount == D("0.0120008")
    assert by_venue["okx"].payment_id == f"paper:{OKX.symbol}:{T}" and by_venue["okx"].ts_ms == T
    assert venues["okx"].cash == okx_cash + D("-0.089985")
    assert venues["hyperliquid"].cash == hl_cash + D("0.0120008")

    # The feed still names the passed time (stale, or a newer rate for it): nothing is paid twice.
    funding[("okx", OKX.symbol)] = update("okx", OKX.symbol, "0.0003", T)
    assert schedule.settle_due(T + 500) == []
    assert ("okx", OKX.symbol) not in schedule.armed()
    assert venues["okx"].settle_funding(OKX.symbol, D("0.0003"), T) is None  # the client refuses a repeat too

    # The next interval, at a negative rate: the long receives.
    funding[("okx", OKX.symbol)] = update("okx", OKX.symbol, "-0.0001", T + 8 * HOUR_MS)
    funding[("hyperliquid", "BTC")] = update("hyperliquid", "BTC", "0.00002", T + HOUR_MS, mark="30002",
                                              interval_hours=1)
    assert schedule.settle_due(T + 1000) == []  # the next tick arms both
    assert [p.venue for p in schedule.settle_due(T + HOUR_MS)] == ["hyperliquid"]
    assert [(p.amount, p.ts_ms) for p in schedule.settle_due(T + 8 * HOUR_MS)] == [(D("0.05999"), T + 8 * HOUR_MS)]
    assert [p.ts_ms for p in await venues["okx"].fetch_funding_payments(0)] == [T, T + 8 * HOUR_MS]


async def test_flat_positions_and_venues_without_a_paper_client_pay_nothing():
    store = make_store()
    okx = PaperClient("okx", store, {OKX.symbol: OKX}, latency_ms=0)
    funding = {("okx", OKX.symbol): update("okx", OKX.symbol, "0.0001", T),
               ("binance", "BTCUSDT"): update("binance", "BTCUSDT", "0.0001", T, mark="30000")}
    schedule = PaperFunding({"okx": okx}, funding)
    assert schedule.settle_due(T - 1) == []
    assert list(schedule.armed()) == [("okx", OKX.symbol)]
    cash = okx.cash
    assert schedule.settle_due(T) == []
    assert okx.cash == cash and okx.funding_payments == []


async def test_a_feed_without_a_next_funding_time_settles_on_the_interval_boundary():
    store = make_store()
    venues = await paper_venues(store)
    funding = {("hyperliquid", "BTC"): update("hyperliquid", "BTC", "0.00001", None, mark="30000", interval_hours=1)}
    schedule = PaperFunding(venues, funding)
    assert schedule.settle_due(T + HOUR_MS - 5) == []
    assert schedule.armed() == {("hyperliquid", "BTC"): (T + HOUR_MS, D("0.00001"))}
    assert [(p.ts_ms, p.amount) for p in schedule.settle_due(T + HOUR_MS)] == [(T + HOUR_MS, D("0.006"))]


class OneSymbolMarket:
    """The market interface SimExchange reads: one symbol, a fixed mark and an 8-hourly rate."""

    def __init__(self) -> None:
        self.inst = SimInstrument("binance", "XUSDT", "X", "USDT", D("0.1"), D("0.001"), D("0.001"), D("5"),
                                  D("1"), D("0.0005"), D("0.0002"), 8, 20)

    def instrument(self, venue, symbol):
        return self.inst

    def levels(self, venue, symbol):
        return [(D("99.9"), D("50"))], [(D("100.1"), D("50"))]

    def mark(self, venue, symbol):
        return D("100")

    def funding(self, venue, symbol):
        return D("0.0001"), 8, 8 * HOUR_MS

    def symbols(self, venue):
        return ["XUSDT"]


async def test_paper_settlements_equal_the_simulated_venue_for_the_same_position_rate_and_mark():
    sim = SimExchange("binance", OneSymbolMarket())
    sim.set_position("XUSDT", D("10"), D("100"))
    sim_payments = sim.settle_funding(24 * HOUR_MS)

    store = BookStore(stale_after_s=60)
    book = store.add("binance", "XUSDT")
    book.replace([["99.9", "50"]], [["100.1", "50"]])
    book.valid, book.recv_ts = True, time.time()
    instrument = Instrument("binance", "XUSDT", "X", "USDT", "X/USDT:USDT", D("0.1"), D("0.001"), D("0.001"), D("5"))
    paper = PaperClient("binance", store, {"XUSDT": instrument}, latency_ms=0, starting_equity=D("100000"))
    assert (await paper.place_order(approved(OrderRequest("binance", "XUSDT", "buy", D("10"), D("100.1"), "b1")))).status == "filled"
    funding = {}
    schedule = PaperFunding({"binance": paper}, funding)
    paid = []
    for due in (8 * HOUR_MS, 16 * HOUR_MS, 24 * HOUR_MS):
        funding[("binance", "XUSDT")] = update("binance", "XUSDT", "0.0001", due, mark="100")
        schedule.settle_due(due - 1)
        paid += schedule.settle_due(due)
    assert [(p.ts_ms, p.amount) for p in paid] == [(p.ts_ms, p.amount) for p in sim_payments]
    assert len(paid) == 3 and paid[0].amount == D("-0.1")


async def test_engine_journals_and_books_each_paper_settlement_once(tmp_path):
    store = make_store()
    venues = await paper_venues(store)
    funding = {("okx", OKX.symbol): update("okx", OKX.symbol, "0.0001", T),
               ("hyperliquid", "BTC"): update("hyperliquid", "BTC", "0.00002", T, mark="30002", interval_hours=1)}
    now = [T / 1000 - 30]
    settings = Settings()
    metrics = Metrics()
    journal = Journal(tmp_path / "journal.sqlite")
    await journal.open()
    try:
        engine = Engine(settings, venues, RiskGate(settings.risk, settings.execution, metrics), store,
                        {OKX.key: OKX, HL.key: HL}, funding, journal, Portfolio(), metrics, clock=lambda: now[0])
        schedule = PaperFunding(venues, funding, clock=lambda: now[0])
        schedule.settle_due(int(now[0] * 1000))
        await engine.periodic()
        assert await journal.funding_since(0) == []

        now[0] = T / 1000 + 0.5
        paid = schedule.settle_due(int(now[0] * 1000))
        assert len(paid) == 2
        now[0] = T / 1000 + 30  # the engine's funding sync runs once a minute (FUNDING_SYNC_INTERVAL_S)
        await engine.periodic()
        rows = await journal.funding_since(0)
        assert sorted((r["venue"], r["payment_id"], r["amount"], r["ts"]) for r in rows) == [
            ("hyperliquid", f"paper:BTC:{T}", D("0.0120008"), T / 1000),
            ("okx", f"paper:{OKX.symbol}:{T}", D("-0.05999"), T / 1000),
        ]
        assert engine.portfolio.funding_total("okx") == D("-0.05999")
        assert engine.portfolio.funding_total("hyperliquid") == D("0.0120008")

        # Later syncs (and later ticks within the interval) book nothing again.
        for _ in range(3):
            now[0] += 61
            assert schedule.settle_due(int(now[0] * 1000)) == []
            await engine.periodic()
        assert len(await journal.funding_since(0)) == 2
        assert engine.portfolio.funding_total() == D("-0.05999") + D("0.0120008")
    finally:
        await journal.close()


async def test_run_loop_settles_when_the_controlled_clock_passes_the_funding_time():
    store = make_store()
    venues = await paper_venues(store)
    funding = {("hyperliquid", "BTC"): update("hyperliquid", "BTC", "0.00002", T, mark="30002", interval_hours=1)}
    now = [T / 1000 - 1]
    schedule = PaperFunding(venues, funding, clock=lambda: now[0], poll_s=0.005)
    stop = asyncio.Event()
    task = asyncio.create_task(schedule.run(stop))
    try:
        await wait_until(lambda: ("hyperliquid", "BTC") in schedule.armed())
        assert venues["hyperliquid"].funding_payments == []
        now[0] = T / 1000
        await wait_until(lambda: len(venues["hyperliquid"].funding_payments) == 1)
        assert venues["hyperliquid"].funding_payments[0].amount == D("0.0120008")
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_paper_mode_wiring_runs_funding_over_the_paper_clients(tmp_path):
    ports = {venue: free_port() for venue in ("okx", "hyperliquid", "binance", "bybit")}
    settings = Settings(mode="paper", log_dir=str(tmp_path / "logs"), journal={"path": str(tmp_path / "j.sqlite")},
                        sim={"enabled": True, "ports": ports, "admin_port": free_port()},
                        venues={"okx": {"enabled": False}, "hyperliquid": {"enabled": False},
                                "bybit": {"enabled": False}, "binance": {"symbols": ["BTCUSDT"]}})
    async with Simulator(settings, autotick=False):
        funding = FundingStore()
        service = await build_engine(settings, metrics=Metrics(), store=BookStore(stale_after_s=60), funding=funding)
        try:
            assert isinstance(service.clients["binance"], PaperClient)
            assert service.paper_funding is not None
            assert service.paper_funding.clients == {"binance": service.clients["binance"]}
            assert service.paper_funding.funding_map is funding.latest  # the feeds' live rates
        finally:
            await service.close()


async def test_paper_venue_remembers_its_newest_orders_only_and_keeps_order_ids_unique(monkeypatch):
    """N+1 orders: the paper venue keeps N (the oldest is unknown to it, as at an archiving venue),
    venue order ids never repeat, and its position still counts every fill."""
    from perpbot.execution import paper

    monkeypatch.setattr(paper, "MAX_PAPER_ORDERS", 2)
    okx = PaperClient("okx", make_store(), {OKX.symbol: OKX}, latency_ms=0)
    placed = [await okx.place_order(approved(OrderRequest("okx", OKX.symbol, "buy", D("1"), D("30000"), f"o{n}")))
              for n in range(3)]
    assert [p.status for p in placed] == ["filled"] * 3
    assert list(okx.orders) == ["o1", "o2"] and await okx.fetch_order(OKX.symbol, "o0") is None
    assert [p.venue_order_id for p in placed] == ["paper-1", "paper-2", "paper-3"]
    assert okx.positions[OKX.symbol].size == D("0.03")
