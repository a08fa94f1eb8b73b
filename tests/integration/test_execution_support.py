"""Shared pieces (no tests) for the execution integration tests: real books, the real risk gate, paper
venues with scripted faults (a stand-in for venue misbehaviour), a real SQLite journal."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal as D

from perpbot.book.store import BookStore
from perpbot.core import errors
from perpbot.core.approved import ApprovedOrder
from perpbot.core.decisions import Decision, Leg
from perpbot.core.instruments import Instrument
from perpbot.core.orders import OrderRequest, OrderResult
from perpbot.execution.engine import Engine
from perpbot.execution.paper import PaperClient
from perpbot.journal.sqlite import Journal
from perpbot.portfolio import Portfolio
from perpbot.risk.gate import RiskGate
from perpbot.settings import Settings
from perpbot.telemetry.metrics import Metrics
from testkit import approved

OKX = Instrument("okx", "BTC-USDT-SWAP", "BTC", "USDT", "BTC/USDT:USDT", D("0.1"), D("1"), D("1"), D("0"),
                 contract_size=D("0.01"))
HL = Instrument("hyperliquid", "BTC", "BTC", "USDC", "BTC/USDC:USDC", D("1"), D("0.00001"), D("0.00001"), D("0"))
INSTRUMENTS = {OKX.key: OKX, HL.key: HL}
OPEN_JOURNALS: list[Journal] = []  # closed by the tests' teardown


async def kill_process(task: asyncio.Task) -> None:
    """Stand-in for SIGKILL in one process: `task` and every other task of the loop but the test's
    own stop at their next await, shielded work included (a graceful cancel would let the two
    legs' sends and journal transactions finish; a dead process finishes nothing)."""
    me = asyncio.current_task()
    while not task.done() or any(t is not me and not t.done() for t in asyncio.all_tasks()):
        for other in asyncio.all_tasks():
            if other is not me:
                other.cancel()
        await asyncio.sleep(0)
    await asyncio.gather(task, return_exceptions=True)


def make_store() -> BookStore:
    store = BookStore(stale_after_s=60)
    okx = store.add("okx", OKX.symbol, OKX.contract_size)
    okx.replace([["29990.0", "100"], ["29980.0", "100"]], [["30000.0", "100"], ["30010.0", "100"]])
    hl = store.add("hyperliquid", "BTC")
    hl.replace([["29995", "1"], ["29990", "1"]], [["30005", "1"], ["30015", "1"]])
    for book in (okx, hl):
        book.valid, book.invalid_reason, book.recv_ts = True, None, time.time()
    return store


def open_decision(qty: str = "0.02") -> Decision:
    return Decision(
        strategy="price_spread", action="open", base="BTC",
        legs=(Leg("okx", OKX.symbol, "buy", D(qty), D("30000")), Leg("hyperliquid", "BTC", "sell", D(qty), D("29995"))),
        edge_bps=D("20"), edge_usdt=D("1"), reason="test",
    )


class ScriptedVenue:
    """A paper venue whose next orders misbehave as scripted: 'reject', 'lost' (placed, answer
    lost), 'hang' (placed, answer never comes), 'block' (never reaches the venue, never returns),
    ('partial', ratio) (only part fills). Everything else goes straight to the paper venue."""

    def __init__(self, inner: PaperClient, script: list | None = None, reject_all: bool = False) -> None:
        self.inner = inner
        self.venue = inner.venue
        self.script = list(script or [])
        self.reject_all = reject_all
        self.place_calls: list[OrderRequest] = []
        self.fetch_calls: list[str] = []
        self.on_place = None  # optional callback(request) run when an order arrives
        self.fail_reads = False

    async def place_order(self, order: ApprovedOrder) -> OrderResult:
        request = order.request
        self.place_calls.append(request)
        if self.on_place:
            self.on_place(request)
        step = self.script.pop(0) if self.script else None
        if self.reject_all or step == "reject":
            raise errors.InsufficientFunds(self.venue, "Insufficient margin to place order.")
        if step == "block":
            await asyncio.Event().wait()
        if isinstance(step, tuple) and step[0] == "partial":
            instrument = self.inner.instruments[request.symbol]
            smaller = (request.qty * step[1] / instrument.lot_size).to_integral_value() * instrument.lot_size
            result = await self.inner.place_order(approved(
                OrderRequest(request.venue, request.symbol, request.side, smaller, request.price,
                             request.client_order_id, request.reduce_only), order.purpose))
            result.qty, result.status = request.qty, "partially_filled"
            return result
        result = await self.inner.place_order(order)
        if step == "lost":
            raise errors.UnknownOutcome(self.venue, "connection reset after send")
        if step == "hang":
            await asyncio.Event().wait()
        return result

    async def fetch_order(self, symbol, client_order_id):
        self.fetch_calls.append(client_order_id)
        if self.fail_reads:
            raise errors.TemporaryError(self.venue, "503")
        return await self.inner.fetch_order(symbol, client_order_id)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def make_venues(store: BookStore) -> dict[str, ScriptedVenue]:
    return {
        "okx": ScriptedVenue(PaperClient("okx", store, {OKX.symbol: OKX}, latency_ms=0)),
        "hyperliquid": ScriptedVenue(PaperClient("hyperliquid", store, {"BTC": HL}, latency_ms=0)),
    }


def make_settings(**execution) -> Settings:
    settings = Settings()
    for key, value in execution.items():
        setattr(settings.execution, key, value)
    return settings


async def make_engine(tmp_path, venues, store, settings=None, redis_state=None, journal=None) -> Engine:
    settings = settings or make_settings(order_timeout_s=0.5)
    metrics = Metrics()
    if journal is None:
        journal = Journal(tmp_path / "journal.sqlite")
        await journal.open()
    OPEN_JOURNALS.append(journal)
    gate = RiskGate(settings.risk, settings.execution, metrics)
    return Engine(settings, venues, gate, store, dict(INSTRUMENTS), {}, journal, Portfolio(), metrics, redis_state)
