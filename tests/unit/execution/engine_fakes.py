"""In-memory stand-ins (no tests) for the engine parts' unit tests: a journal without SQLite, a
venue without a network, and a Desk built on them with real books, risk gate and portfolio."""

from __future__ import annotations

import time
from decimal import Decimal as D
from types import SimpleNamespace
from typing import Any

from perpbot.book.store import BookStore
from perpbot.core import errors
from perpbot.core.approved import ApprovedOrder
from perpbot.core.decisions import Decision, Leg
from perpbot.core.instruments import Instrument
from perpbot.core.orders import OrderRequest, OrderResult, VenueBalance, VenuePosition
from perpbot.execution.desk import Desk
from perpbot.portfolio import Portfolio
from perpbot.risk.gate import RiskGate
from perpbot.settings import Settings
from perpbot.telemetry.metrics import Metrics

OKX = Instrument("okx", "BTC-USDT-SWAP", "BTC", "USDT", "BTC/USDT:USDT", D("0.1"), D("1"), D("1"), D("0"),
                 contract_size=D("0.01"))
HL = Instrument("hyperliquid", "BTC", "BTC", "USDC", "BTC/USDC:USDC", D("1"), D("0.00001"), D("0.00001"), D("0"))
INSTRUMENTS = {OKX.key: OKX, HL.key: HL}
FINAL = ("filled", "partially_filled", "canceled", "expired", "rejected", "failed", "not_found")


class FakeJournal:
    """The journal calls the engine makes, kept in lists and dicts."""

    def __init__(self) -> None:
        self.orders: dict[tuple[str, str], SimpleNamespace] = {}
        self.intents: dict[str, dict[str, Any]] = {}
        self.fill_ids: set[tuple[str, str]] = set()
        self.funding_ids: set[tuple[str, str]] = set()
        self.states: list[tuple[str, str, str, str]] = []
        self.finished: list[tuple[str, str, Any]] = []
        self.trade_changes: list[Any] = []
        self.closed_trades: list[str] = []
        self.saved_positions: list[tuple[str, str, D]] = []
        self.last_states: list[dict[str, Any]] = []
        self.trades: list[dict[str, Any]] = []

    async def record_state_change(self, previous: str, new: str, reason: str, actor: str) -> None:
        self.states.append((previous, new, reason, actor))

    async def record_intent(self, intent_id: str, strategy: str, action: str, base: str, decision: dict[str, Any],
                            orders: list[tuple[OrderRequest, str]], trade_id: str | None = None) -> None:
        self.intents[intent_id] = {"intent_id": intent_id, "strategy": strategy, "action": action, "base": base,
                                   "decision": decision, "trade_id": trade_id, "status": "sending"}
        for request, purpose in orders:
            await self.record_order(request, purpose, intent_id)

    async def record_order(self, request: OrderRequest, purpose: str, intent_id: str | None) -> None:
        self.orders[(request.venue, request.client_order_id)] = SimpleNamespace(
            venue=request.venue, client_order_id=request.client_order_id, intent_id=intent_id, purpose=purpose,
            symbol=request.symbol, side=request.side, qty=request.qty, price=request.price,
            reduce_only=request.reduce_only, status="pending", filled_qty=D(0), avg_price=None, fee=D(0),
            reason=None, venue_order_id=None)

    async def order(self, venue: str, client_order_id: str) -> SimpleNamespace | None:
        row = self.orders.get((venue, client_order_id))
        return None if row is None else SimpleNamespace(**vars(row))  # a read, as the journal's: a copy

    async def update_order(self, venue: str, client_order_id: str, status: str, **fields: Any) -> None:
        row = self.orders.get((venue, client_order_id))
        if row is not None:
            row.status = status
            for key, value in fields.items():
                if value is not None:
                    setattr(row, key, value)

    async def orders_with_status(self, *statuses: str) -> list[SimpleNamespace]:
        return [SimpleNamespace(**vars(r)) for r in self.orders.values() if r.status in statuses]

    async def orders_of_intent(self, intent_id: str) -> list[SimpleNamespace]:
        return [SimpleNamespace(**vars(r)) for r in self.orders.values() if r.intent_id == intent_id]

    async def intents_with_status(self, *statuses: str) -> list[dict[str, Any]]:
        return [i for i in self.intents.values() if i["status"] in statuses]

    async def set_intent_status(self, intent_id: str, status: str) -> None:
        self.intents[intent_id]["status"] = status

    async def finish_intent(self, intent_id: str, label: str, change: Any) -> None:
        self.finished.append((intent_id, label, change))
        if intent_id in self.intents:
            self.intents[intent_id]["status"] = label

    async def apply_trade_change(self, change: Any) -> None:
        self.trade_changes.append(change)

    async def close_trade(self, trade_id: str) -> None:
        self.closed_trades.append(trade_id)

    async def record_fill(self, venue: str, fill_id: str, *args: Any) -> bool:
        if (venue, fill_id) in self.fill_ids:
            return False
        self.fill_ids.add((venue, fill_id))
        return True

    async def save_position(self, venue: str, symbol: str, size: D, *args: Any) -> None:
        self.saved_positions.append((venue, symbol, size))

    async def settle_order(self, venue: str, client_order_id: str, fill: Any, order: Any) -> bool:
        """The journal's one-transaction settlement: the fill once, its position, the order's state."""
        new = False
        if fill is not None:
            new = await self.record_fill(venue, fill.fill_id)
            if new:
                await self.save_position(venue, fill.symbol, fill.position_size)
        await self.update_order(venue, client_order_id, order.status, venue_order_id=order.venue_order_id,
                                filled_qty=order.filled_qty, avg_price=order.avg_price, fee=order.fee,
                                reason=order.reason)
        return new

    async def record_funding(self, venue: str, payment_id: str, *args: Any) -> bool:
        if (venue, payment_id) in self.funding_ids:
            return False
        self.funding_ids.add((venue, payment_id))
        return True

    async def positions(self) -> list[Any]:
        return []

    async def fills_since(self, since_ts: float) -> list[Any]:
        return []

    async def funding_since(self, since_ts: float) -> list[Any]:
        return []

    async def open_trades(self) -> list[dict[str, Any]]:
        return list(self.trades)

    async def state_changes(self, limit: int = 100) -> list[dict[str, Any]]:
        return self.last_states[:limit]


class FakeVenue:
    """A venue in memory: orders fill in full at their limit unless `script` says otherwise
    ('reject': insufficient margin, 'lost': placed but the answer lost, ('partial', venue qty), ('refuse',
    message): refused with the venue's message); positions as set."""

    def __init__(self, venue: str, script: list[Any] | None = None) -> None:
        self.venue = venue
        self.script = list(script or [])
        self.placed: list[OrderRequest] = []
        self.known: dict[str, OrderResult] = {}
        self.positions: list[VenuePosition] = []
        self.open_orders: list[OrderResult] = []
        self.canceled: list[str] = []
        self.fail_reads = False
        self.payments: list[Any] = []

    async def place_order(self, order: ApprovedOrder) -> OrderResult:
        request = order.request
        self.placed.append(request)
        step = self.script.pop(0) if self.script else None
        if step == "reject":
            raise errors.InsufficientFunds(self.venue, "insufficient margin")
        if isinstance(step, tuple) and step[0] == "refuse":  # ("refuse", the venue's message)
            raise errors.OrderRejected(self.venue, step[1])
        filled = step[1] if isinstance(step, tuple) else request.qty
        status = "filled" if filled == request.qty else "partially_filled"
        result = OrderResult(self.venue, request.symbol, request.client_order_id, f"v{len(self.placed)}", status,
                             request.side, request.qty, filled_qty=filled, avg_price=request.price)
        self.known[request.client_order_id] = result
        if step == "lost":
            raise errors.UnknownOutcome(self.venue, "connection reset after send")
        return result

    async def fetch_order(self, symbol: str, client_order_id: str) -> OrderResult | None:
        return self.known.get(client_order_id)

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderResult | None:
        self.canceled.append(client_order_id)
        return None

    async def fetch_positions(self) -> list[VenuePosition]:
        if self.fail_reads:
            raise errors.TemporaryError(self.venue, "503")
        return list(self.positions)

    async def fetch_balance(self) -> VenueBalance:
        if self.fail_reads:
            raise errors.TemporaryError(self.venue, "503")
        return VenueBalance(self.venue, D("10000"), D("10000"), D("0"))

    async def fetch_open_orders(self) -> list[OrderResult]:
        if self.fail_reads:
            raise errors.TemporaryError(self.venue, "503")
        return list(self.open_orders)

    async def fetch_funding_payments(self, since_ms: int) -> list[Any]:
        return list(self.payments)


def make_store() -> BookStore:
    store = BookStore(stale_after_s=60)
    okx = store.add("okx", OKX.symbol, OKX.contract_size)
    okx.replace([["29990.0", "100"], ["29980.0", "100"]], [["30000.0", "100"], ["30010.0", "100"]])
    hl = store.add("hyperliquid", "BTC")
    hl.replace([["29995", "1"], ["29990", "1"]], [["30005", "1"], ["30015", "1"]])
    for book in (okx, hl):
        book.valid, book.invalid_reason, book.recv_ts = True, None, time.time()
    return store


def make_desk(script_okx: list[Any] | None = None, script_hl: list[Any] | None = None, **execution: Any) -> Desk:
    settings = Settings()
    for key, value in execution.items():
        setattr(settings.execution, key, value)
    metrics = Metrics()
    venues = {"okx": FakeVenue("okx", script_okx), "hyperliquid": FakeVenue("hyperliquid", script_hl)}
    return Desk(settings=settings, clients=venues, gate=RiskGate(settings.risk, settings.execution, metrics),  # type: ignore[arg-type]
                store=make_store(), instruments=dict(INSTRUMENTS), journal=FakeJournal(),  # type: ignore[arg-type]
                portfolio=Portfolio(), metrics=metrics)


def venue(desk: Desk, name: str) -> FakeVenue:
    client = desk.clients[name]
    assert isinstance(client, FakeVenue)
    return client


def journal(desk: Desk) -> FakeJournal:
    assert isinstance(desk.journal, FakeJournal)
    return desk.journal


def open_decision(qty: str = "0.02") -> Decision:
    return Decision(
        strategy="price_spread", action="open", base="BTC",
        legs=(Leg("okx", OKX.symbol, "buy", D(qty), D("30000")), Leg("hyperliquid", "BTC", "sell", D(qty), D("29995"))),
        edge_bps=D("20"), edge_usdt=D("1"), reason="test",
    )


def ready(desk: Desk) -> Desk:
    """Reconciled, connected, ACTIVE, with balances: the gate lets entries through."""
    for name in desk.clients:
        desk.reconciled[name] = desk.venue_connected[name] = True
        desk.portfolio.set_balance(VenueBalance(name, D("10000"), D("10000"), D("0")))
    desk.state, desk.state_reason = "ACTIVE", "test"
    return desk
