"""Orders confirmed by the private stream: each execution booked once by the venue's trade id
(pushed twice, out of order, after a REST answer, after a restart), a silent stream falls back to
asking the venue by client id, and a late push after that fallback books nothing twice.
The journal is the real SQLite one; the venue is a fake that acknowledges orders without fills,
as OKX's order answer does."""

from __future__ import annotations

import asyncio
from decimal import Decimal as D

import pytest
from engine_fakes import OKX, FakeVenue, make_desk

from perpbot.core.orders import OrderRequest, OrderResult
from perpbot.core.private_events import OrderUpdate, VenueFill
from perpbot.execution.confirmations import Confirmations
from perpbot.execution.orders import OrderLifecycle
from perpbot.journal.sqlite import Journal
from testkit import approved

NOW = 1_800_000_000.0


class AckVenue(FakeVenue):
    """Answers with the acknowledgement only (no fill numbers); the fills come on the stream."""

    async def place_order(self, order):  # type: ignore[override]
        request = order.request
        self.placed.append(request)
        self.known[request.client_order_id] = OrderResult(
            self.venue, request.symbol, request.client_order_id, "7001", "filled", request.side, request.qty,
            filled_qty=request.qty, avg_price=request.price)
        return OrderResult(self.venue, request.symbol, request.client_order_id, "7001", "open", request.side,
                           request.qty, details_complete=False)


def update(cid: str, status: str, filled: str, qty: str = "2") -> OrderUpdate:
    return OrderUpdate("okx", OKX.symbol, cid, "7001", status, "buy", D(qty), D(filled), None, None, "USDT", None,
                       1, NOW)


def fill(cid: str, trade_id: str, qty: str, price: str = "30000", fee: str = "0.3") -> VenueFill:
    return VenueFill("okx", OKX.symbol, trade_id, cid, "7001", "buy", D(qty), D(price), D(fee), "USDT", "taker", 1,
                     NOW)


@pytest.fixture
async def desk(tmp_path):
    desk = make_desk(stream_confirm_timeout_s=2.0)
    desk.clients["okx"] = AckVenue("okx")
    real = Journal(tmp_path / "journal.sqlite")
    await real.open()
    desk.journal = real
    yield desk
    await real.close()


async def start(desk) -> tuple[OrderLifecycle, Confirmations, asyncio.Task]:
    orders = OrderLifecycle(desk)
    confirmations = Confirmations(desk, orders.settle_pushed)
    desk.confirmations = confirmations
    confirmations.set_live("okx", True)
    return orders, confirmations, asyncio.get_running_loop().create_task(confirmations.run())


async def send_pushing(desk, orders, confirmations, request: OrderRequest, pushes: list):
    """Send the order; once the venue has it, push `pushes` as the stream would."""
    await desk.journal.record_order(request, "entry", "i1")
    sending = asyncio.get_running_loop().create_task(orders.send(approved(request, "entry"), "s"))
    while not desk.clients["okx"].placed:
        await asyncio.sleep(0)
    confirmations.on_events(pushes)
    return await asyncio.wait_for(sending, 5)


async def test_a_fill_pushed_twice_is_booked_once_and_the_order_settles_from_the_stream(desk):
    orders, confirmations, task = await start(desk)
    try:
        req = OrderRequest("okx", OKX.symbol, "buy", D("2"), D("30100"), "c1")
        sent = await send_pushing(desk, orders, confirmations, req, [
            fill("c1", "t1", "1.5", "30000", "0.45"), fill("c1", "t1", "1.5", "30000", "0.45"),
            fill("c1", "t2", "0.5", "30004", "0.15"), update("c1", "filled", "2")])
        assert sent.filled_base == D("0.02") and sent.result is not None
        assert sent.result.avg_price == (D("1.5") * 30000 + D("0.5") * 30004) / 2  # the executions' prices
        assert sent.result.fee == D("0.60")
        assert confirmations.duplicates == 1
        assert desk.portfolio.positions[("okx", OKX.symbol)].size == D("0.02")
        assert len(desk.portfolio.fills) == 1
        assert desk.clients["okx"].placed and (await desk.journal.order("okx", "c1")).status == "filled"
    finally:
        task.cancel()


async def test_a_final_state_pushed_before_its_fill_waits_for_the_fill(desk):
    orders, confirmations, task = await start(desk)
    try:
        req = OrderRequest("okx", OKX.symbol, "buy", D("2"), D("30100"), "c2")
        sent = await send_pushing(desk, orders, confirmations, req, [
            update("c2", "filled", "2"), update("c2", "partially_filled", "1"), fill("c2", "t9", "2")])
        assert sent.filled_base == D("0.02") and sent.result.status == "filled"
        assert (await desk.journal.order("okx", "c2")).filled_qty == D("2")
    finally:
        task.cancel()


async def test_a_silent_stream_falls_back_to_the_venue_by_client_id_and_a_late_push_books_nothing_twice(desk):
    desk.settings.execution.stream_confirm_timeout_s = 0.05
    orders, confirmations, task = await start(desk)
    try:
        req = OrderRequest("okx", OKX.symbol, "buy", D("2"), D("30100"), "c3")
        sent = await send_pushing(desk, orders, confirmations, req, [])  # nothing pushed
        assert sent.filled_base == D("0.02")  # learnt from fetch_order by client id
        assert desk.metrics.private_confirm_timeouts_total.labels("okx")._value.get() == 1
        assert len(desk.clients["okx"].placed) == 1  # resolved, never re-sent
        confirmations.on_events([fill("c3", "t3", "2"), update("c3", "filled", "2")])
        await asyncio.wait_for(confirmations.drained(), 5)
        while not confirmations._queue.empty() or confirmations.booked == 0:  # noqa: SLF001
            await asyncio.wait_for(confirmations.applied.wait(), 5)
        assert desk.portfolio.positions[("okx", OKX.symbol)].size == D("0.02")
        assert len(desk.portfolio.fills) == 1
    finally:
        task.cancel()


async def test_an_execution_replayed_after_a_restart_is_recognised(desk, tmp_path):
    orders, confirmations, task = await start(desk)
    try:
        req = OrderRequest("okx", OKX.symbol, "buy", D("2"), D("30100"), "c4")
        await send_pushing(desk, orders, confirmations, req, [fill("c4", "t4", "2"), update("c4", "filled", "2")])
    finally:
        task.cancel()
    # A new process on the same journal: Hyperliquid-style snapshot replays the old execution.
    orders2, confirmations2, task2 = await start(desk)
    try:
        confirmations2.on_events([fill("c4", "t4", "2")])
        while confirmations2.duplicates == 0:
            await asyncio.wait_for(confirmations2.applied.wait(), 5)
        assert len(desk.portfolio.fills) == 1 and await desk.journal.venue_trade_count("okx") == 1
    finally:
        task2.cancel()


async def test_pushed_equity_reaches_the_risk_view_and_a_liquidation_brings_the_reconciliation_forward(desk):
    from perpbot.core.orders import VenueBalance
    from perpbot.core.private_events import BalanceUpdate, MarginEvent

    _, confirmations, task = await start(desk)
    try:
        desk.portfolio.set_balance(VenueBalance("okx", D("1000"), D("900"), D("100"), extra={"currency": "USDT"}))
        confirmations.on_events([
            BalanceUpdate("okx", "BTC", D("5"), D("5"), None, 1, NOW),  # another currency: ignored
            BalanceUpdate("okx", "USDT", D("1200.5"), D("1000.25"), D("1190"), 1, NOW),
            # A liquidation that does not say which position (a live stream's named one waits for its push).
            MarginEvent("okx", None, "liquidation", "partial_liquidation", 1, NOW),
        ])
        await asyncio.wait_for(confirmations.reconcile_soon.wait(), 5)
        balance = desk.portfolio.balances["okx"]
        assert (balance.equity, balance.available, balance.used_margin) == (D("1200.5"), D("1000.25"), D("200.25"))
        assert desk.metrics.private_margin_events_total.labels("okx", "liquidation")._value.get() == 1
    finally:
        task.cancel()


async def send_unconfirmed(desk, orders, client_order_id: str, intent_id: str):
    """One 1-contract order the stream never confirms (learnt by REST past the confirm timeout)."""
    req = OrderRequest("okx", OKX.symbol, "buy", D("1"), D("30100"), client_order_id)
    await desk.journal.record_order(req, "entry", intent_id)
    return await orders.send(approved(req, "entry"), "s")


async def test_a_stream_that_confirms_nothing_twice_in_a_row_is_taken_for_stalled(desk):
    desk.settings.execution.stream_confirm_timeout_s = 0.02
    orders, confirmations, task = await start(desk)
    stalled: list[str] = []
    confirmations.on_stalled = stalled.append
    try:
        for n in (1, 2):
            assert (await send_unconfirmed(desk, orders, f"s{n}", f"i{n}")).filled_base == D("0.01")  # by REST
            assert stalled == ([] if n == 1 else ["okx"])
        assert not confirmations.is_live("okx")  # entries there are refused until it is back
    finally:
        task.cancel()


async def test_a_slow_stream_that_still_pushes_is_not_taken_for_stalled(desk):
    from perpbot.core.private_events import PositionUpdate

    desk.settings.execution.stream_confirm_timeout_s = 0.02
    orders, confirmations, task = await start(desk)
    stalled: list[str] = []
    confirmations.on_stalled = stalled.append
    try:
        for n in (1, 2):
            await send_unconfirmed(desk, orders, f"p{n}", f"j{n}")
            confirmations.on_events([PositionUpdate("okx", OKX.symbol, D("0.01") * n, None, 1, NOW)])
        assert stalled == [] and confirmations.is_live("okx")
    finally:
        task.cancel()


async def test_a_pushed_position_the_book_does_not_hold_brings_the_reconciliation_forward(desk):
    from perpbot.core.private_events import PositionUpdate

    _, confirmations, task = await start(desk)
    try:
        # Our own order in flight on the key: its position push is expected to lead its fill.
        desk.in_flight["x1"] = {"venue": "okx", "symbol": OKX.symbol}
        confirmations.on_events([PositionUpdate("okx", OKX.symbol, D("0.01"), None, 1, NOW)])
        while confirmations.positions.get(("okx", OKX.symbol)) is None:
            await asyncio.wait_for(confirmations.applied.wait(), 5)
        assert confirmations.position_drifts == 0 and not confirmations.reconcile_soon.is_set()
        del desk.in_flight["x1"]
        confirmations.on_events([PositionUpdate("okx", OKX.symbol, D("0.03"), None, 2, NOW)])  # a manual trade
        await asyncio.wait_for(confirmations.reconcile_soon.wait(), 5)
        assert confirmations.position_drifts == 1
    finally:
        task.cancel()


async def test_an_acknowledgement_is_never_taken_for_an_unfilled_order_when_the_stream_came_up_late(desk):
    """The stream was not live when the order was registered, the client saw it live and answered
    with the venue's acknowledgement only: the order is resolved by client id, not booked as 0."""
    orders, confirmations, task = await start(desk)
    confirmations.set_live("okx", False)
    try:
        req = OrderRequest("okx", OKX.symbol, "buy", D("2"), D("30100"), "late1")
        await desk.journal.record_order(req, "entry", "i-late")
        sent = await orders.send(approved(req, "entry"), "s")
        assert sent.filled_base == D("0.02") and not sent.unknown  # from fetch_order by client id
        assert (await desk.journal.order("okx", "late1")).status == "filled"
    finally:
        task.cancel()


async def test_rest_showing_an_ioc_still_working_is_asked_again_never_taken_for_unfilled(desk):
    """REST behind the venue: an IOC it shows open is not final; unknown after the attempts (the
    legs policy then resolves it again before acting), and never canceled or booked as 0."""
    class BehindVenue(AckVenue):
        async def fetch_order(self, symbol, client_order_id):  # type: ignore[override]
            known = self.known[client_order_id]
            return OrderResult(self.venue, symbol, client_order_id, "7001", "open", known.side, known.qty)

    desk.clients["okx"] = BehindVenue("okx")
    desk.settings.execution.stream_confirm_timeout_s = 0.01
    orders, confirmations, task = await start(desk)
    try:
        req = OrderRequest("okx", OKX.symbol, "buy", D("2"), D("30100"), "lag1")
        await desk.journal.record_order(req, "entry", "i-lag")
        sent = await orders.send(approved(req, "entry"), "s")
        assert sent.unknown and sent.filled_base == 0
        assert desk.clients["okx"].canceled == [] and desk.portfolio.positions.get(("okx", OKX.symbol)) is None
    finally:
        task.cancel()
