"""The periodic reconciliation reads the venues without the trade lock and applies, under it, only
what nothing touched meanwhile (no SQLite, no venue: engine_fakes)."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D
from types import SimpleNamespace
from typing import Any

from engine_fakes import (INSTRUMENTS, OKX, FakeJournal, FakeVenue, journal, make_desk, make_store, open_decision,
                          ready, venue)

from perpbot.core.orders import OrderRequest, OrderResult, VenuePosition
from perpbot.execution.desk import in_flight_keys, sent_count
from perpbot.execution.engine import Engine
from perpbot.execution.orders import OrderLifecycle
from perpbot.execution.reconcile import moved_keys
from perpbot.execution.reconciler import Reconciler
from perpbot.execution.states import TradingStates
from perpbot.execution.trade_book import TradeBook
from perpbot.portfolio import Portfolio
from perpbot.risk.gate import RiskGate
from perpbot.settings import Settings
from perpbot.telemetry.metrics import Metrics

OKX_KEY = {"venue": "okx", "symbol": OKX.symbol}
GUARD_S = 5.0  # a hung test fails instead of hanging; nothing waits on it to synchronise


class HeldVenue(FakeVenue):
    """A FakeVenue whose reads (positions, balance, open orders, funding history) signal `reading` and
    then wait for `gate`, as a slow venue keeps a reconciliation waiting on its answers."""

    def __init__(self, venue: str) -> None:
        super().__init__(venue)
        self.gate: asyncio.Event | None = None
        self.reading = asyncio.Event()
        self.lock_held_while_read: list[bool] = []
        self.lock: asyncio.Lock | None = None

    async def _held(self) -> None:
        if self.lock is not None:
            self.lock_held_while_read.append(self.lock.locked())
        self.reading.set()
        if self.gate is not None:
            await self.gate.wait()

    async def fetch_positions(self) -> list[VenuePosition]:
        await self._held()
        return await super().fetch_positions()

    async def fetch_balance(self) -> Any:
        await self._held()
        return await super().fetch_balance()

    async def fetch_open_orders(self) -> list[Any]:
        await self._held()
        return await super().fetch_open_orders()

    async def fetch_funding_payments(self, since_ms: int) -> list[Any]:
        await self._held()
        return await super().fetch_funding_payments(since_ms)


def make_engine() -> Engine:
    settings, metrics = Settings(), Metrics()
    venues = {"okx": HeldVenue("okx"), "hyperliquid": HeldVenue("hyperliquid")}
    gate = RiskGate(settings.risk, settings.execution, metrics)
    engine = Engine(settings, venues, gate, make_store(), dict(INSTRUMENTS), None,  # type: ignore[arg-type]
                    FakeJournal(), Portfolio(), metrics)  # type: ignore[arg-type]
    ready(engine.desk)
    for client in venues.values():
        client.lock = engine.desk.trade_lock
    return engine


def held(engine: Engine) -> list[HeldVenue]:
    venues = [c for c in engine.desk.clients.values() if isinstance(c, HeldVenue)]
    assert len(venues) == len(engine.desk.clients)
    return venues


def hold(engine: Engine) -> asyncio.Event:
    gate = asyncio.Event()
    for client in held(engine):
        client.gate = gate
    return gate


async def all_reading(engine: Engine) -> None:
    await asyncio.wait_for(asyncio.gather(*(c.reading.wait() for c in held(engine))), GUARD_S)


def reconciler_of(desk: Any) -> Reconciler:
    states, orders, book = TradingStates(desk), OrderLifecycle(desk), TradeBook(desk)
    return Reconciler(desk, orders, states, book, lambda: [])


async def test_a_decision_trades_while_the_periodic_reconciliation_waits_on_the_venues():
    engine = make_engine()
    gate = hold(engine)
    periodic = asyncio.create_task(engine.periodic())
    await all_reading(engine)  # every venue's queries started, none answered
    [report] = await asyncio.wait_for(engine.on_decisions([open_decision()]), GUARD_S)
    okx, hyperliquid = held(engine)
    assert report["outcome"] == "hedged"
    assert [o.symbol for o in okx.placed] == [OKX.symbol] and [o.symbol for o in hyperliquid.placed] == ["BTC"]
    assert not gate.is_set() and not periodic.done()  # placed while the reconciliation still waited
    gate.set()
    answer = await asyncio.wait_for(periodic, GUARD_S)
    # The venues' answers predate the trade (the fakes report no position): not applied to its keys.
    assert engine.portfolio.positions[("okx", OKX.symbol)].size == D("0.02")
    assert engine.portfolio.positions[("hyperliquid", "BTC")].size == D("-0.02")
    assert answer["changed"] == [] and OKX_KEY in answer["skipped"]
    assert not any(okx.lock_held_while_read) and not any(hyperliquid.lock_held_while_read)
    assert engine.reconciled == {"okx": True, "hyperliquid": True}


async def test_a_key_with_an_order_in_flight_is_left_to_the_next_pass():
    desk = ready(make_desk())
    reconciler = reconciler_of(desk)
    venue(desk, "okx").positions = [VenuePosition("okx", OKX.symbol, D("0.05"), D("30000"))]
    venue(desk, "hyperliquid").positions = [VenuePosition("hyperliquid", "ETH", D("-1"), D("2000"))]
    desk.in_flight["c9"] = {"venue": "okx", "symbol": OKX.symbol, "client_order_id": "c9"}
    first = await reconciler.periodic()
    assert ("okx", OKX.symbol) not in desk.portfolio.positions
    assert first["skipped"] == [OKX_KEY] and desk.reconcile_skips == 1
    # The other keys are applied in the same pass.
    assert desk.portfolio.positions[("hyperliquid", "ETH")].size == D("-1")
    assert desk.reconciled == {"okx": True, "hyperliquid": True}
    del desk.in_flight["c9"]  # the order's answer came (it filled nothing)
    second = await reconciler.periodic()
    assert desk.portfolio.positions[("okx", OKX.symbol)].size == D("0.05")
    assert second["skipped"] == [] and [c["symbol"] for c in second["changed"]] == [OKX.symbol]


async def test_an_order_sent_and_answered_while_the_venues_were_read_skips_its_key():
    engine = make_engine()
    okx, _ = held(engine)
    okx.positions = [VenuePosition("okx", OKX.symbol, D("0.05"), D("30000"))]
    gate = hold(engine)
    periodic = asyncio.create_task(engine.periodic())
    await all_reading(engine)
    engine.in_flight["c9"] = {"venue": "okx", "symbol": OKX.symbol}  # sent, and its answer lost: no fill booked
    del engine.in_flight["c9"]
    gate.set()
    answer = await asyncio.wait_for(periodic, GUARD_S)
    assert answer["skipped"] == [OKX_KEY] and ("okx", OKX.symbol) not in engine.portfolio.positions


async def test_a_fill_booked_between_snapshot_and_apply_is_not_overwritten():
    engine = make_engine()
    okx, hyperliquid = held(engine)
    hyperliquid.positions = [VenuePosition("hyperliquid", "ETH", D("-1"), D("2000"))]
    gate = hold(engine)
    periodic = asyncio.create_task(engine.periodic())
    await all_reading(engine)  # the snapshot: okx flat
    await asyncio.wait_for(engine.on_decisions([open_decision()]), GUARD_S)  # books a 0.02 fill on okx
    gate.set()
    answer = await asyncio.wait_for(periodic, GUARD_S)
    assert engine.portfolio.positions[("okx", OKX.symbol)].size == D("0.02")  # not the stale flat
    assert ("okx", OKX.symbol, D(0)) not in journal(engine.desk).saved_positions
    assert [c["symbol"] for c in answer["changed"]] == ["ETH"]  # the untouched key, applied
    # The next pass reads the venues after the fill: nothing to change, nothing skipped.
    okx.positions = [VenuePosition("okx", OKX.symbol, D("0.02"), D("30000"))]
    hyperliquid.positions.append(VenuePosition("hyperliquid", "BTC", D("-0.02"), D("29995")))
    again = await asyncio.wait_for(engine.periodic(), GUARD_S)
    assert again["changed"] == [] and again["skipped"] == []
    # And a real difference on that key is adopted again.
    okx.positions = [VenuePosition("okx", OKX.symbol, D("0.03"), D("30000"))]
    third = await asyncio.wait_for(engine.periodic(), GUARD_S)
    assert engine.portfolio.positions[("okx", OKX.symbol)].size == D("0.03") and third["skipped"] == []


async def test_funding_history_is_fetched_without_the_lock_and_booked_once():
    engine = make_engine()
    okx, _ = held(engine)
    okx.payments = [SimpleNamespace(symbol=OKX.symbol, payment_id="p1", amount=D("1.5"), ts_ms=5_000)]
    gate = hold(engine)
    periodic = asyncio.create_task(engine.periodic())  # funding is due: never synced
    await all_reading(engine)
    assert not engine.desk.trade_lock.locked()
    gate.set()
    answer = await asyncio.wait_for(periodic, GUARD_S)
    assert [c["payment_id"] for c in answer["changed"] if c["kind"] == "funding"] == ["p1"]
    assert engine.portfolio.funding_total("okx") == D("1.5") and engine.desk.funding_cursor_ms["okx"] == 5_000
    assert len(okx.lock_held_while_read) == 4 and not any(okx.lock_held_while_read)


async def test_an_orphan_order_is_settled_and_a_failing_venue_stays_unreconciled():
    desk = ready(make_desk())
    request = OrderRequest("okx", OKX.symbol, "buy", D(2), D("30000"), "c1")
    await journal(desk).record_order(request, "entry", "i1")
    okx = venue(desk, "okx")
    okx.known["c1"] = OrderResult("okx", OKX.symbol, "c1", "v1", "filled", "buy", D(2), filled_qty=D(2),
                                  avg_price=D("30000"))  # the venue has it; the journal still says pending
    okx.positions = [VenuePosition("okx", OKX.symbol, D("0.02"), D("30000"))]
    venue(desk, "hyperliquid").fail_reads = True
    report = await reconciler_of(desk).periodic()
    assert journal(desk).orders[("okx", "c1")].status == "filled"
    assert desk.portfolio.positions[("okx", OKX.symbol)].size == D("0.02")
    assert [c["kind"] for c in report["changed"]] == ["order"]  # the fill made local equal the venue
    assert report["errors"] == {"hyperliquid": "503"} and desk.reconciled == {"okx": True, "hyperliquid": False}


def test_the_in_flight_map_counts_every_order_put_in_flight_per_key():
    desk = make_desk()
    desk.in_flight["c1"] = {"venue": "okx", "symbol": OKX.symbol}
    desk.in_flight.pop("c1")
    desk.in_flight["c2"] = {"venue": "okx", "symbol": OKX.symbol}
    assert sent_count(desk, ("okx", OKX.symbol)) == 2 and sent_count(desk, ("hyperliquid", "BTC")) == 0
    assert in_flight_keys(desk) == {("okx", OKX.symbol)}
    keys = [("okx", "A"), ("okx", "B"), ("okx", "C")]
    assert moved_keys({("okx", "A"): 1}, {("okx", "A"): 2, ("okx", "B"): 1}, keys) == {("okx", "A"), ("okx", "B")}
