"""Private-stream confirmations: what the venues push about our orders, booked once.

The private streams (perpbot.feeds.private_stream) hand their parsed events to `on_events`; one
task (`run`) takes them in order. Fills are written to the journal by the venue's trade id first
(`Journal.note_venue_trade`): a fill pushed twice, pushed and also read over REST, or replayed
after a restart is recognised there and never booked twice. An order's booked quantity is its
cumulative fill (the sum of its executions), so the order lifecycle's `settle` books only what is
new, whichever source (stream or REST) told it first.

An order being sent registers a waiter first (`expect`); the sender then waits for the stream to
show the order final with every execution in (`wait`), and falls back to asking REST by client
id only when that does not happen within `execution.stream_confirm_timeout_s`. Events for an
order nobody waits for (a late fill after that fallback, a resting order) are settled here.

Positions and balances pushed by the venues are kept for the reconciliation and the control API;
funding is journalled and booked as the periodic funding sync books it (once per payment id).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from perpbot.core.orders import OrderResult, ResultStatus, VenueBalance
from perpbot.core.private_events import (
    BalanceUpdate, FundingEvent, MarginEvent, OrderUpdate, PositionUpdate, PrivateEvent, VenueFill,
)
from perpbot.execution.desk import Desk
from perpbot.execution.doubts import adopt_statement, doubt
from perpbot.journal.venue_trades import TradeTotals

log = logging.getLogger("perpbot.execution.confirmations")

Key = tuple[str, str]  # (venue, client order id)
STALL_TIMEOUTS = 2  # orders in a row not confirmed in time before a stream is taken for stalled
Settle = Callable[[OrderResult], Awaitable[object]]


@dataclass(slots=True)
class _Tracked:
    """What the stream said so far of one order: its last state and its executions' totals."""

    symbol: str
    update: OrderUpdate | None = None
    totals: TradeTotals = field(default_factory=TradeTotals)
    done: asyncio.Future[OrderResult] | None = None  # set while a sender waits
    last_recv_ts: float | None = None  # receive time of its newest execution

    def complete(self) -> bool:
        """Final on the stream with every execution it counted already in."""
        update = self.update
        return update is not None and update.final and self.totals.qty >= update.filled_qty


def result_of(update: OrderUpdate, totals: TradeTotals) -> OrderResult:
    """The OrderResult the stream amounts to: quantities, average and fee from the executions
    (the venue's own trade records), status from the order's last update."""
    filled = max(totals.qty, update.filled_qty)
    status = update.status
    final_status: ResultStatus
    if status in ("canceled", "expired") and filled > 0:
        final_status = "partially_filled"  # an IOC's rest canceled: what filled stays
    elif status == "partially_filled":
        final_status = "open"  # still working at the venue
    else:
        final_status = status
    avg = totals.avg_price if totals.qty else update.avg_price
    fee = totals.fee if totals.count else (update.fee or Decimal(0))
    return OrderResult(
        venue=update.venue, symbol=update.symbol, client_order_id=update.client_order_id or "",
        venue_order_id=update.venue_order_id, status=final_status,
        side=update.side, qty=update.qty, filled_qty=filled, avg_price=avg, fee=fee, reason=update.reason,
    )


class Confirmations:
    """The private streams' events applied to the desk: fills once, funding once, waiters woken."""

    def __init__(self, desk: Desk, settle_order: Callable[[str, OrderResult], Awaitable[object]]) -> None:
        self.desk = desk
        # settle_order(client id, result): the order lifecycle's settle for a journalled order.
        self._settle_order = settle_order
        self._queue: asyncio.Queue[PrivateEvent] = asyncio.Queue()
        self._tracked: dict[Key, _Tracked] = {}
        self.positions: dict[Key, PositionUpdate] = {}  # (venue, symbol) -> last pushed
        self.balances: dict[Key, BalanceUpdate] = {}  # (venue, currency) -> last pushed
        self.live: dict[str, bool] = {}  # venue -> private stream logged in and subscribed
        self.booked = 0
        self.duplicates = 0
        self.applied = asyncio.Event()  # set after each event is applied (tests, the bench)
        self.booking_latency_s: deque[float] = deque(maxlen=100_000)
        self.reconcile_soon = asyncio.Event()  # a liquidation was pushed: the periodic pass runs now
        self.position_drifts = 0  # pushed positions that differed from the book with nothing in flight
        # venue -> orders in a row the stream did not confirm in time; at STALL_TIMEOUTS the stream
        # is taken for stalled (open, silent) and `on_stalled` (the stream's reconnect) is called.
        self.missed: dict[str, int] = {}
        self.first_missed_at: dict[str, float] = {}
        self.last_push_at: dict[str, float] = {}  # venue -> when its stream last pushed an event
        self.on_stalled: Callable[[str], None] | None = None

    # -- the streams' side ---------------------------------------------------------------
    def on_events(self, events: Iterable[PrivateEvent]) -> None:
        for event in events:
            self.last_push_at[event.venue] = time.time()
            self._queue.put_nowait(event)

    def set_live(self, venue: str, live: bool) -> None:
        """Called by the venue's private stream; registering a venue (live False) makes its stream
        required for entries there."""
        self.live[venue] = live

    def is_live(self, venue: str) -> bool:
        return self.live.get(venue, False)

    # -- the sender's side ---------------------------------------------------------------
    def expect(self, venue: str, symbol: str, client_order_id: str) -> asyncio.Future[OrderResult]:
        """Register before the order leaves: events that arrive before the answer are kept."""
        tracked = self._tracked.setdefault((venue, client_order_id), _Tracked(symbol))
        tracked.done = asyncio.get_running_loop().create_future()
        if tracked.complete() and tracked.update is not None:
            tracked.done.set_result(result_of(tracked.update, tracked.totals))
        return tracked.done

    def is_waiting(self, venue: str, client_order_id: str) -> bool:
        tracked = self._tracked.get((venue, client_order_id))
        return tracked is not None and tracked.done is not None

    async def wait(self, venue: str, client_order_id: str, timeout_s: float,
                   count_miss: bool = True) -> OrderResult | None:
        """The order's final state from the stream, or None when it did not come in `timeout_s`."""
        tracked = self._tracked.get((venue, client_order_id))
        if tracked is None or tracked.done is None:
            return None
        try:
            result = await asyncio.wait_for(asyncio.shield(tracked.done), timeout_s)
        except asyncio.TimeoutError:
            if count_miss:
                self.note_missed(venue)
            return None
        self.missed[venue] = 0
        return result

    def note_missed(self, venue: str) -> None:
        """An order's final state did not come on the stream in time (it was asked over REST).
        Taken for a stall only when the stream also pushed nothing since the first such miss: a
        stream that is merely slow (a loaded host) still pushes, and stays."""
        now = time.time()
        if self.missed.get(venue, 0) == 0:
            self.first_missed_at[venue] = now
        self.missed[venue] = self.missed.get(venue, 0) + 1
        silent = self.last_push_at.get(venue, 0.0) < self.first_missed_at.get(venue, now)
        if self.missed[venue] >= STALL_TIMEOUTS and silent and self.on_stalled is not None:
            log.warning("private stream %s confirmed none of the last %d orders in time: reconnecting it",
                        venue, self.missed[venue])
            self.missed[venue] = 0
            self.set_live(venue, False)
            self.on_stalled(venue)

    def forget(self, venue: str, client_order_id: str) -> None:
        """The sender is done with the order: later events for it are settled here."""
        tracked = self._tracked.get((venue, client_order_id))
        if tracked is not None:
            if tracked.done is not None and not tracked.done.done():
                tracked.done.cancel()
            tracked.done = None
            if tracked.update is None or tracked.update.final:
                # Nothing more is expected (or a rejected order that never reached the stream); a
                # late push starts a new record and is booked against the journal's totals.
                self._tracked.pop((venue, client_order_id), None)

    async def drained(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded) until every queued event has been applied."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self._queue.empty() and loop.time() < deadline:
            try:
                await asyncio.wait_for(self.applied.wait(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                break  # what is left is learnt again at start-up (REST, or the stream's replay)

    # -- the consumer --------------------------------------------------------------------
    async def run(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self.apply(event)
            except Exception:  # one bad event must not stop the bookings after it
                log.exception("private stream event not applied: %r", event)
            finally:
                self.applied.set()
                self.applied = asyncio.Event()

    async def apply(self, event: PrivateEvent) -> None:
        if isinstance(event, VenueFill):
            await self._on_fill(event)
        elif isinstance(event, OrderUpdate):
            await self._on_update(event)
        elif isinstance(event, FundingEvent):
            await self._on_funding(event)
        elif isinstance(event, PositionUpdate):
            self.positions[(event.venue, event.symbol)] = event
            if event.margin is not None:
                self.desk.portfolio.set_margin(event.margin)
            elif not event.size:
                self.desk.portfolio.margins.pop((event.venue, event.symbol), None)
            await self._check_position(event)
        elif isinstance(event, BalanceUpdate):
            self.balances[(event.venue, event.currency)] = event
            self._on_balance(event)
        elif isinstance(event, MarginEvent):
            self.desk.metrics.private_margin_events_total.labels(event.venue, event.kind).inc()
            log.warning("venue %s pushed %s on %s: %s", event.venue, event.kind, event.symbol, event.detail)
            if event.kind in ("liquidation", "adl"):
                # Positions changed behind our back (or we were the counterparty): no order goes there
                # until the venue's position after it is booked (its push, else the reconciliation's read,
                # asked if no push came within doubts.PUSH_WAIT_S).
                self.desk.forced_closes.add((event.venue, event.symbol))
                if event.symbol is None:
                    self.reconcile_soon.set()  # which position is not said: read them all now
                else:
                    doubt(self.desk, event.venue, event.symbol, f"the venue pushed {event.kind}", event.recv_ts)
                    await self.settle_doubts()

    def _busy(self, venue: str, symbol: str) -> bool:
        """An order of ours in flight on the venue/symbol: being sent, a sender still settling (its record
        is forgotten only after the settle), or still working at the venue."""
        if any(o.get("venue") == venue and o.get("symbol") == symbol for o in self.desk.in_flight.values()):
            return True
        return any(key[0] == venue and t.symbol == symbol
                   and (t.done is not None or (t.update is not None and not t.update.final))
                   for key, t in self._tracked.items())

    async def settle_doubts(self) -> None:
        """Each position in doubt (perpbot.execution.doubts) whose venue pushed a position after the doubt
        began, with nothing of ours in flight there and no fill of ours booked there since the push came,
        takes the pushed size: the venue's own statement, without a REST read (whose rate budget may be
        spent just when a liquidation makes it needed)."""
        desk = self.desk
        for key, since in list(desk.doubted.items()):
            push = self.positions.get(key)
            if push is None or push.recv_ts < since or push.recv_ts <= desk.fill_booked_at.get(key, 0.0) \
                    or self._busy(*key):
                continue
            await adopt_statement(desk, key, push.size, push.entry_price, "pushed it")

    async def _check_position(self, event: PositionUpdate) -> None:
        """A pushed position that differs from the book's while nothing of ours is in flight on it
        (a manual trade, a liquidation, an order the bot lost track of) runs the reconciliation now;
        on a position in doubt it is booked at once (settle_doubts)."""
        desk = self.desk
        if self._busy(event.venue, event.symbol):
            return
        if (event.venue, event.symbol) in desk.doubted:
            await self.settle_doubts()
        position = desk.portfolio.positions.get((event.venue, event.symbol))
        held = position.size if position is not None else Decimal(0)
        if held != event.size:
            self.position_drifts += 1
            log.warning("venue %s pushed %s %s, the book holds %s: reconciling now", event.venue, event.symbol,
                        event.size, held)
            self.reconcile_soon.set()

    def _on_balance(self, event: BalanceUpdate) -> None:
        """The account's equity and available margin as pushed, for the risk gate, when the venue
        pushes both in the quote the bot accounts in (Binance pushes wallet balances only: the
        REST reconciliation keeps its equity)."""
        quote = self.desk.portfolio.balances.get(event.venue)
        currency = quote.extra.get("currency") if quote is not None else None
        if event.equity is None or event.available is None or (currency and currency != event.currency):
            return
        self.desk.portfolio.set_balance(VenueBalance(event.venue, event.equity, event.available,
                                                     max(event.equity - event.available, Decimal(0)),
                                                     extra={"currency": event.currency, "source": "stream"}))

    async def _on_fill(self, fill: VenueFill) -> None:
        desk = self.desk
        if not await desk.journal.note_venue_trade(fill):
            self.duplicates += 1
            desk.metrics.private_fills_duplicate_total.labels(fill.venue).inc()
            return
        if not fill.client_order_id:
            log.warning("venue %s pushed a fill of an order not ours (no client id): %s %s %s @ %s",
                        fill.venue, fill.symbol, fill.side, fill.qty, fill.price)
            return
        key = (fill.venue, fill.client_order_id)
        tracked = self._tracked.setdefault(key, _Tracked(fill.symbol))
        tracked.totals = await desk.journal.order_trade_totals(*key)
        tracked.last_recv_ts = fill.recv_ts
        desk.metrics.private_fills_total.labels(fill.venue).inc()
        waited = tracked.done is not None
        await self._progress(key, tracked)
        if not waited:
            self._booked(fill.venue, fill.recv_ts)

    def note_settled(self, venue: str, client_order_id: str) -> None:
        """The sender settled an order the stream confirmed: its last fill is booked now."""
        tracked = self._tracked.get((venue, client_order_id))
        if tracked is not None and tracked.last_recv_ts is not None:
            self._booked(venue, tracked.last_recv_ts)

    def _booked(self, venue: str, recv_ts: float) -> None:
        """From a fill frame's arrival on our socket to the fill booked (journal and portfolio):
        the bench's "fill pushed -> booked"."""
        latency = time.time() - recv_ts
        self.booking_latency_s.append(latency)
        self.desk.metrics.fill_booking_latency.labels(venue).observe(latency)

    async def _on_update(self, update: OrderUpdate) -> None:
        if not update.client_order_id:
            return
        key = (update.venue, update.client_order_id)
        tracked = self._tracked.setdefault(key, _Tracked(update.symbol))
        previous = tracked.update
        if previous is not None and previous.final and not update.final:
            return  # out of order: a working state after the final one changes nothing
        tracked.update = update
        await self._progress(key, tracked)

    async def _progress(self, key: Key, tracked: _Tracked) -> None:
        """Wake the sender when the order is complete; book it here when nobody waits for it."""
        update = tracked.update
        if tracked.done is not None:
            if tracked.complete() and update is not None and not tracked.done.done():
                tracked.done.set_result(result_of(update, tracked.totals))
            return
        if update is None and tracked.totals.qty == 0:
            return
        if await self.desk.journal.order(*key) is None:
            self._tracked.pop(key, None)
            return  # not an order this bot journalled (another client on the account)
        if update is None:
            return  # fills without a state yet: booked when the state comes (or the sender's query)
        if update.final and not tracked.complete():
            return  # final, its executions still on their way: booked with their prices and fees
        result = result_of(update, tracked.totals)
        if not update.final:
            # Still working: what its executions show so far (never the state's own numbers,
            # which may lack the average or the fee).
            result = dataclasses.replace(result, filled_qty=tracked.totals.qty, avg_price=tracked.totals.avg_price,
                                         fee=tracked.totals.fee)
        await self._settle_order(key[1], result)
        self.booked += 1
        if update.final:
            self._tracked.pop(key, None)

    async def _on_funding(self, payment: FundingEvent) -> None:
        desk = self.desk
        ts = payment.ts_ms / 1000
        if await desk.journal.record_funding(payment.venue, payment.payment_id, payment.symbol, payment.amount, ts):
            desk.portfolio.apply_funding(payment.venue, payment.symbol, payment.amount, ts)
            desk.funding_cursor_ms[payment.venue] = max(desk.funding_cursor_ms.get(payment.venue, 0),
                                                        payment.ts_ms)
