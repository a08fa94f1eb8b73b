"""Order lifecycle: send one approved order, resolve a lost answer by its client id (never
re-sent), settle what the venue answered (journal, fills counted once, portfolio), and the
aggressive limit price of corrective orders."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from decimal import Decimal

from perpbot.core import errors
from perpbot.core.numbers import scaled_to_decimal
from perpbot.core.orders import OrderRequest, OrderResult, ResultStatus
from perpbot.execution.doubts import doubt, doubt_margin, is_reduce_only_refusal
from perpbot.execution.desk import ZERO, Desk, Sent, side
from perpbot.journal.settlement import FillEntry, OrderState
from perpbot.journal.sqlite import FINAL_STATUSES
from perpbot.portfolio.book import Position
from perpbot.core.approved import ApprovedOrder

log = logging.getLogger("perpbot.execution.engine")

RESOLVE_ATTEMPTS = 3
RESULT_STATUSES: dict[str, ResultStatus] = {
    "filled": "filled", "partially_filled": "partially_filled", "canceled": "canceled", "rejected": "rejected",
    "expired": "expired",
}


class OrderLifecycle:
    def __init__(self, desk: Desk) -> None:
        self.desk = desk
        self._settle_lock = asyncio.Lock()

    async def send(self, approved: ApprovedOrder, strategy: str | None) -> Sent:
        """Place one approved (and already journalled) order and settle what it did."""
        request = approved.request
        try:
            return await self._send(approved, strategy)
        finally:
            # Only once the order is settled: a push arriving later is then the consumer's to book
            # (before, the sender's settle would have counted it as its own and booked it again).
            if self.desk.confirmations is not None:
                self.desk.confirmations.forget(request.venue, request.client_order_id)

    async def _send(self, approved: ApprovedOrder, strategy: str | None) -> Sent:
        desk = self.desk
        request: OrderRequest = approved.request
        desk.metrics.orders_total.labels(request.venue, request.side).inc()
        desk.in_flight[request.client_order_id] = {
            "venue": request.venue, "symbol": request.symbol, "side": request.side, "qty": str(request.qty),
            "price": str(request.price), "client_order_id": request.client_order_id, "purpose": approved.purpose,
        }
        started = time.perf_counter()
        confirmations = desk.confirmations if self._streamed(request.venue) else None
        if confirmations is not None:
            # Registered before the order leaves: the stream may push its fills before the answer.
            confirmations.expect(request.venue, request.symbol, request.client_order_id)
        result: OrderResult | None
        try:
            result = await self._place(approved, confirmations is not None)
        except errors.OrderRejected as exc:
            await desk.journal.update_order(request.venue, request.client_order_id, "rejected", reason=exc.message)
            desk.metrics.orders_rejected_total.labels(request.venue, type(exc).__name__).inc()
            log.warning("Order rejected: %s %s %s id=%s reason=%s", request.venue, request.symbol, request.side,
                        request.client_order_id, exc.message)
            self._doubt_if_reducing(request, exc.message)
            if isinstance(exc, errors.InsufficientFunds) and not request.reduce_only:
                doubt_margin(desk, request.venue, exc.message)
            return Sent(rejected=True, error=exc.message)
        except (errors.RateLimited, errors.TemporaryError) as exc:
            # Certainly not on the book: nothing to resolve.
            await desk.journal.update_order(request.venue, request.client_order_id, "failed", reason=exc.message)
            log.warning("order not placed on %s (%s): %s", request.venue, type(exc).__name__, exc.message)
            return Sent(error=exc.message)
        except errors.UnknownOutcome as exc:
            await desk.journal.update_order(request.venue, request.client_order_id, "unknown", reason=exc.message)
            log.warning("order %s on %s: outcome unknown (%s); resolving %s", request.client_order_id,
                        request.venue, exc.message, "from the private stream" if confirmations else "by query")
            # The stream may still show what it did; else (or when it does not) ask by client id.
            result = await self._pushed(request) if confirmations is not None else None
        finally:
            desk.metrics.order_execution_duration.labels(request.venue).observe(time.perf_counter() - started)
            desk.in_flight.pop(request.client_order_id, None)
        if result is None:
            return await self.resolve(request, strategy)
        sent = await self.settle(request, result, strategy)
        if confirmations is not None:
            confirmations.note_settled(request.venue, request.client_order_id)
        return sent

    def _streamed(self, venue: str) -> bool:
        confirmations = self.desk.confirmations
        return confirmations is not None and confirmations.is_live(venue)

    async def _place(self, approved: ApprovedOrder, streamed: bool) -> OrderResult | None:
        """The venue's answer, completed from the private stream when it was only an acknowledgement;
        None when the stream did not show the order final in time (the caller then asks REST)."""
        request = approved.request
        client = self.desk.clients[request.venue]
        try:
            # asyncio.timeout, not wait_for: the placement runs in this task at once (wait_for would
            # start it in a task of its own, a loop turn later), so the two legs leave back to back.
            async with asyncio.timeout(self.desk.settings.execution.order_timeout_s):
                result = await client.place_order(approved)
        except TimeoutError:
            raise errors.UnknownOutcome(request.venue, "no answer within order_timeout_s") from None
        if result.details_complete:
            return result
        if not streamed:
            # The client took the stream for live (it came up after this order was registered, or
            # went down meanwhile) and answered with the acknowledgement only: never "nothing
            # filled" on that; the order is resolved by its client id.
            return None
        pushed = await self._pushed(request)
        if pushed is None:
            return None
        return dataclasses.replace(pushed, venue_order_id=pushed.venue_order_id or result.venue_order_id)

    async def _pushed(self, request: OrderRequest) -> OrderResult | None:
        """The order's final state as its venue's private stream shows it, waited for a bounded time."""
        desk = self.desk
        confirmations = desk.confirmations
        if confirmations is None:
            return None
        timeout_s = desk.settings.execution.stream_confirm_timeout_s
        pushed = await confirmations.wait(request.venue, request.client_order_id, timeout_s)
        if pushed is None:
            desk.metrics.private_confirm_timeouts_total.labels(request.venue).inc()
            log.warning("order %s on %s: no final state on the private stream within %.1fs; asking the venue "
                        "by client id", request.client_order_id, request.venue, timeout_s)
        return pushed

    async def _query(self, request: OrderRequest, attempt: int) -> OrderResult | None:
        """The venue's answer for the client id (an open order is canceled first); None when
        the venue has none, could not be read, or shows an IOC still working: an IOC never rests,
        so that view is behind the venue (REST lagging its own matching) and is asked again, never
        taken as "nothing filled" (a hedge on that answer would double the leg)."""
        client = self.desk.clients[request.venue]
        try:
            result = await client.fetch_order(request.symbol, request.client_order_id)
        except errors.VenueErrorBase as exc:
            log.warning("resolving %s on %s failed (attempt %d): %s", request.client_order_id,
                        request.venue, attempt, exc.message)
            return None
        if result is not None and result.status == "open":
            if request.time_in_force == "IOC":
                log.warning("order %s on %s: the venue's REST still shows the IOC working (behind the venue); "
                            "asking again", request.client_order_id, request.venue)
                return None
            try:
                result = await client.cancel_order(request.symbol, request.client_order_id) or result
            except errors.VenueErrorBase as exc:
                log.warning("cancel of %s failed: %s", request.client_order_id, exc.message)
        return result

    async def _between_attempts(self, request: OrderRequest, delay: float) -> OrderResult | None:
        """Wait before the next query; the private stream's answer, if it comes meanwhile."""
        confirmations = self.desk.confirmations
        if confirmations is not None and confirmations.is_waiting(request.venue, request.client_order_id):
            return await confirmations.wait(request.venue, request.client_order_id, delay, count_miss=False)
        await asyncio.sleep(delay)
        return None

    async def resolve(self, request: OrderRequest, strategy: str | None) -> Sent:
        """Find out what an order with a lost answer did, by its client id (and its private stream,
        when it is still expected there). Never re-sends."""
        client = self.desk.clients[request.venue]
        delay = 0.1
        for attempt in range(1, RESOLVE_ATTEMPTS + 1):
            result = await self._query(request, attempt)
            if result is None:
                result = await self._between_attempts(request, delay)
                delay *= 2
            if result is not None:
                return await self.settle(request, result, strategy)
        try:
            final = await client.fetch_order(request.symbol, request.client_order_id)
        except errors.VenueErrorBase:
            return Sent(unknown=True, error="outcome still unknown")
        if final is not None and final.status == "open" and request.time_in_force == "IOC":
            # Still behind the venue: unknown, so the legs policy resolves it again before acting.
            return Sent(unknown=True, error="the venue's REST still shows the IOC working")
        if final is None:
            await self.desk.journal.update_order(request.venue, request.client_order_id, "not_found",
                                                 reason="venue has no order with this client id")
            return Sent(error="not found at venue")
        return await self.settle(request, final, strategy)

    async def settle(self, request: OrderRequest, result: OrderResult, strategy: str | None) -> Sent:
        """Record a venue answer: journal the order, count new fill quantity once, update the portfolio.
        One at a time: the sender and the private stream's consumer may settle the same order."""
        async with self._settle_lock:
            return await self._settle(request, result, strategy)

    async def settle_pushed(self, client_order_id: str, result: OrderResult) -> Sent | None:
        """Settle what a venue's private stream showed of a journalled order nobody waits for."""
        row = await self.desk.journal.order(result.venue, client_order_id)
        if row is None:
            return None
        request = OrderRequest(row.venue, row.symbol, side(row.side), row.qty, row.price, row.client_order_id,
                               row.reduce_only)
        return await self.settle(request, dataclasses.replace(result, client_order_id=client_order_id), None)

    async def _settle(self, request: OrderRequest, result: OrderResult, strategy: str | None) -> Sent:
        desk = self.desk
        key = (request.venue, request.client_order_id)
        row = await desk.journal.order(*key)
        previous = desk.order_fills.get(key) or (
            (row.filled_qty, row.avg_price or ZERO, row.fee) if row else (ZERO, ZERO, ZERO)
        )
        if result.filled_qty < previous[0]:
            # A stale answer (REST behind the private stream): what was booked stands.
            result = dataclasses.replace(result, filled_qty=previous[0], avg_price=previous[1] or result.avg_price,
                                         fee=previous[2])
        if row is not None and row.status in FINAL_STATUSES and result.status not in FINAL_STATUSES:
            kept = RESULT_STATUSES.get(row.status)
            if kept is not None:
                result = dataclasses.replace(result, status=kept)  # never back from a final state
        fill = self._fill_entry(request, result, previous, strategy) if result.filled_qty > previous[0] else None
        instrument = desk.instruments.get((request.venue, request.symbol))
        filled_base = result.filled_qty * (instrument.contract_size if instrument else Decimal(1))
        status = result.status
        # The new fill, its position and the order's state: one transaction (one fsync).
        new = await desk.journal.settle_order(request.venue, request.client_order_id, fill, OrderState(
            status, result.venue_order_id, result.filled_qty, result.avg_price, result.fee, result.reason))
        if fill is not None:
            desk.fill_booked_at[(request.venue, request.symbol)] = time.time()
            if new:
                desk.portfolio.apply_fill(request.venue, request.symbol, request.side, fill.base_qty, fill.price,
                                          fill.fee, ts=fill.ts, strategy=strategy,
                                          client_order_id=request.client_order_id)
            avg = result.avg_price if result.avg_price is not None else request.price
            desk.order_fills[key] = (result.filled_qty, avg, result.fee)
        if status in FINAL_STATUSES:
            # The journal row now holds the final cumulative fill: the in-memory cache of a
            # finished order is dropped so it does not grow with every order of a weeks-long run.
            desk.order_fills.pop(key, None)
        if result.filled_qty > 0:
            desk.metrics.orders_success_total.labels(request.venue, request.side).inc()
        rejected = result.status == "rejected"
        if rejected:
            log.warning("Order rejected: %s %s id=%s reason=%s", request.venue, request.symbol,
                        request.client_order_id, result.reason)
            desk.metrics.orders_rejected_total.labels(request.venue, "rejected").inc()
            self._doubt_if_reducing(request, result.reason)
        return Sent(filled_base=filled_base, rejected=rejected, result=result)

    def _doubt_if_reducing(self, request: OrderRequest, reason: str | None) -> None:
        """A reduce-only order the venue refused for the position it holds: it may hold less there than the bot
        thinks (a liquidation not booked yet). Nothing more is sent there until the venue has said what it holds
        (perpbot.execution.doubts)."""
        if request.reduce_only and is_reduce_only_refusal(request.venue, reason):
            doubt(self.desk, request.venue, request.symbol, f"reduce-only {request.side} refused: {reason}")

    def _fill_entry(self, request: OrderRequest, result: OrderResult,
                    previous: tuple[Decimal, Decimal, Decimal], strategy: str | None) -> FillEntry:
        """The fill quantity new since `previous` (filled, avg, fee), as a journal entry with the
        position it leaves (computed on a copy: the portfolio changes only once it is journalled)."""
        desk = self.desk
        prev_filled, prev_avg, prev_fee = previous
        instrument = desk.instruments.get((request.venue, request.symbol))
        contract = instrument.contract_size if instrument else Decimal(1)
        delta = result.filled_qty - prev_filled
        avg = result.avg_price if result.avg_price is not None else request.price
        price = (avg * result.filled_qty - prev_avg * prev_filled) / delta
        filled_base = delta * contract
        trial = dataclasses.replace(
            desk.portfolio.positions.get((request.venue, request.symbol)) or Position(request.venue, request.symbol)
        )
        realized = trial.apply(filled_base if request.side == "buy" else -filled_base, price)
        # One timestamp for the journal row and the in-memory record: /api/trades answers the
        # same whether it reads memory or (past the portfolio's bound) the journal.
        return FillEntry(f"{request.client_order_id}:{result.filled_qty}", request.symbol, request.side, filled_base,
                         price, result.fee - prev_fee, realized, strategy, desk.clock(), trial.size,
                         trial.entry_price, trial.realized_pnl)

    def aggressive_price(self, venue: str, symbol: str, side: str, fallback: Decimal, attempt: int = 0) -> Decimal:
        """Limit price for a corrective IOC (hedge, unwind, flatten).

        Base: the touch of a usable book, else the last known mark, else `fallback` (the leg's own
        price). Band: execution.repair_slippage_bps doubled per corrective attempt, so a repair
        that missed because the market moved (a price jump, a stale book) reaches further each
        time instead of failing three times at a stale price and halting with a naked leg."""
        desk = self.desk
        book = desk.store.get(venue, symbol)
        touch = None
        if book is not None and desk.store.is_usable(book):
            best = book.best_ask() if side == "buy" else book.best_bid()
            touch = scaled_to_decimal(best) if best is not None else None
        if touch is None:
            touch = desk.portfolio.marks.get((venue, symbol))
        base = touch if touch is not None else fallback
        execution = desk.settings.execution
        bps = max(execution.slippage_bps, execution.repair_slippage_bps) * (2 ** max(attempt - 1, 0))
        slip = min(bps, Decimal(1000)) / Decimal(10_000)  # never beyond 10 % from the reference
        price = base * (1 + slip) if side == "buy" else base * (1 - slip)
        instrument = desk.instruments.get((venue, symbol))
        return instrument.round_price(price, side) if instrument else price
