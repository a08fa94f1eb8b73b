"""Reconciliation: settle unresolved orders, make local positions and balances equal the venues'
(every venue at once, one failing does not stop the others), book funding payments, and the
periodic pass (reconcile, start-up ACTIVE once every venue is reconciled, residues, breach check,
heartbeat, metrics).

The periodic pass does not hold the trade lock while it queries the venues (seconds with funding
history): it reads which orders are unresolved and marks every (venue, symbol) key under the lock,
queries every venue without it, then takes it again only to apply the difference, key by key. A key
a trade touched meanwhile (an order sent on it, a fill booked, an order still in flight) is left to
the next pass: the snapshot may predate what the engine now knows of it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Coroutine, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from decimal import Decimal
from typing import Any

from perpbot.core import errors
from perpbot.core.orders import OrderRequest, OrderResult, VenuePosition
from perpbot.core.ports import ExchangeClient
from perpbot.execution.desk import STARTING_REASON, Desk, Key, in_flight_keys, publish, s, sent_count, side
from perpbot.execution.doubts import settle_by_read
from perpbot.execution.orders import OrderLifecycle
from perpbot.execution.reconcile import diff_positions, moved_keys
from perpbot.execution.states import TradingStates
from perpbot.execution.trade_book import TradeBook
from perpbot.journal.sqlite import OrderRow

log = logging.getLogger("perpbot.execution.engine")

FUNDING_SYNC_INTERVAL_S = 60.0  # venues settle funding hourly at the most often

Found = list[dict[str, Any]]
Reconcile = Callable[..., Coroutine[Any, Any, dict[str, Any]]]
Answers = list[tuple[OrderRow, OrderResult | None]]
KeyMark = tuple[int, Decimal, Decimal, Decimal | None]

# The trade lock a reconciliation started in this context takes itself, for its local reads and its
# writes only; unset, the caller holds the lock (close-all) or needs none (start-up's own sequencing).
_OUTSIDE_LOCK: ContextVar[asyncio.Lock | None] = ContextVar("perpbot_reconcile_outside_lock", default=None)


@contextmanager
def outside_lock(lock: asyncio.Lock) -> Iterator[None]:
    """Reconciliations started within do their venue I/O without `lock` and take it only to read what is
    unresolved and to apply what they found (the caller must not hold it). Works through the engine's
    observable reconcile (perpbot.reliability wraps it), whose signature has no room for a lock."""
    token = _OUTSIDE_LOCK.set(lock)
    try:
        yield
    finally:
        _OUTSIDE_LOCK.reset(token)


class _VenueReads:
    """What one venue answered: its unresolved orders' answers, then positions, balance, open orders."""

    def __init__(self, answers: Answers, reads: list[Any], problem: str | None) -> None:
        self.answers = answers
        self.problem = problem  # a venue error on one of the orders (that order is left out)
        self.reads = reads
        self.failed = [r for r in reads if isinstance(r, errors.VenueErrorBase)]
        # Funding payments fetched with the reads (outside the lock), or the venue error fetching them;
        # None: fetched when written (a reconciliation under its caller's lock).
        self.funding: list[Any] | errors.VenueErrorBase | None = None
        self.read_at = 0.0  # when the positions read began (epoch s): doubts older than it are answered


class Reconciler:
    def __init__(self, desk: Desk, orders: OrderLifecycle, states: TradingStates, book: TradeBook,
                 positions: Callable[[], list[dict[str, Any]]]) -> None:
        self.desk = desk
        self.orders = orders
        self.states = states
        self.book = book
        self.positions = positions  # the read view published to Redis

    async def reconcile(self, funding: bool = False, venues_only: Collection[str] | None = None,
                        writes_after: asyncio.Event | None = None) -> dict[str, Any]:
        """Settle unresolved orders, then make local positions and balances equal the venues'; with
        `funding`, also book new funding payments. The same code runs at start-up, periodically and on
        POST /api/sync/positions. Close-all skips funding: funding-history reads are heavy in venue
        rate-limit weight (Binance income: 30) and a flatten must not wait on them.

        Every venue at once, each in the old order (its unresolved orders, then its positions, balance
        and open orders); one venue failing (or slow) does not keep the others from being reconciled.
        `venues_only`: those venues alone. `writes_after`: each venue reads everything it needs, then
        waits for the event before it changes the journal or the portfolio (start-up reads the other
        venues while an interrupted trade is repaired, without writing inside its transactions).
        Within outside_lock(): the venue I/O runs without the trade lock (see _reconcile_outside)."""
        desk = self.desk
        lock = _OUTSIDE_LOCK.get()
        # A copy: a venue left out meanwhile does not break the loop.
        venues = [(v, c) for v, c in desk.clients.items() if venues_only is None or v in venues_only]
        if lock is not None and writes_after is None:
            return await self._reconcile_outside(lock, venues, funding)
        unresolved = await self._unresolved()

        async def one_venue(venue: str, client: ExchangeClient) -> tuple[Found, str | None]:
            reads = await self._read_venue(client, unresolved.get(venue, []))
            if writes_after is not None:
                await writes_after.wait()
            return await self._write_venue(venue, client, reads, funding)

        outcomes = await asyncio.gather(*(one_venue(v, c) for v, c in venues), return_exceptions=True)
        return await self._report(venues, outcomes, [])

    async def _reconcile_outside(self, lock: asyncio.Lock, venues: list[tuple[str, ExchangeClient]],
                                 funding: bool) -> dict[str, Any]:
        """Under the lock, which orders are unresolved (a trade's own orders are never taken for
        orphans: none is half-sent while the lock is held) and each key's mark; without it, every
        venue's reads and funding history at once; under it again, each venue's writes, for the keys
        nothing touched meanwhile (skipped ones are left to the next pass)."""
        async with lock:
            unresolved = await self._unresolved()
            before = self._marks()
        snapshots = await asyncio.gather(
            *(self._snapshot(v, c, unresolved.get(v, []), funding) for v, c in venues), return_exceptions=True)
        outcomes: list[tuple[Found, str | None] | BaseException] = []
        skipped: list[Key] = []
        async with lock:
            for (venue, client), snapshot in zip(venues, snapshots):
                if isinstance(snapshot, BaseException):
                    outcomes.append(snapshot)
                    continue
                busy = self._busy(venue, snapshot, before)
                skipped += sorted(busy)
                try:
                    outcomes.append(await self._write_venue(venue, client, snapshot, funding, busy))
                except Exception as exc:  # as gather(return_exceptions=True) of the locked path
                    outcomes.append(exc)
        return await self._report(venues, outcomes, skipped)

    async def _unresolved(self) -> dict[str, list[OrderRow]]:
        unresolved: dict[str, list[OrderRow]] = {}
        for row in await self.desk.journal.orders_with_status("unknown", "pending", "open"):
            unresolved.setdefault(row.venue, []).append(row)
        return unresolved

    async def _snapshot(self, venue: str, client: ExchangeClient, unresolved: list[OrderRow],
                        funding: bool) -> _VenueReads:
        """One venue's reads and, with `funding`, its new funding payments, at once."""
        if not funding:
            return await self._read_venue(client, unresolved)
        reads: _VenueReads | BaseException
        payments: list[Any] | BaseException
        reads, payments = await asyncio.gather(self._read_venue(client, unresolved),
                                               self._fetch_funding(venue, client), return_exceptions=True)
        if isinstance(reads, BaseException):
            raise reads
        if isinstance(payments, BaseException) and not isinstance(payments, errors.VenueErrorBase):
            raise payments
        reads.funding = payments
        return reads

    def _marks(self) -> dict[Key, KeyMark]:
        """What the engine knows of each key: orders ever sent on it, its position's size, entry and
        realized P&L. A fill booked, an adoption, an order sent (even one that filled nothing) moves it."""
        desk = self.desk
        keys = set(desk.portfolio.positions) | set(getattr(desk.in_flight, "sent", {}))
        marks: dict[Key, KeyMark] = {}
        for key in keys:
            position = desk.portfolio.positions.get(key)
            size, entry, realized = ((position.size, position.entry_price, position.realized_pnl)
                                     if position is not None else (Decimal(0), Decimal(0), None))
            marks[key] = (sent_count(desk, key), size, entry, realized)
        return marks

    def _busy(self, venue: str, snapshot: _VenueReads, before: dict[Key, KeyMark]) -> set[Key]:
        """The venue's keys the snapshot must not be applied to: an order in flight on them now, or their
        mark moved since the snapshot began (a fill booked in between, an order sent and answered)."""
        desk = self.desk
        after = self._marks()
        keys = {k for k in (*before, *after) if k[0] == venue}
        keys |= {(venue, row.symbol) for row, _ in snapshot.answers}
        busy = moved_keys(before, after, keys) | {k for k in in_flight_keys(desk) if k[0] == venue}
        for key in sorted(busy):
            log.debug("reconciliation with %s leaves %s to the next pass: touched while the venue was read",
                      venue, key[1])
        desk.reconcile_skips += len(busy)
        return busy

    async def _report(self, venues: list[tuple[str, ExchangeClient]],
                      outcomes: Sequence[tuple[Found, str | None] | BaseException],
                      skipped: list[Key]) -> dict[str, Any]:
        desk = self.desk
        changed: Found = []
        problems: dict[str, str] = {}
        unexpected: BaseException | None = None
        for (venue, _), outcome in zip(venues, outcomes):
            if isinstance(outcome, BaseException):
                # Not a venue error (a bug, a cancel): every other venue has finished its part; raised below.
                log.error("reconciliation with %s raised %r", venue, outcome)
                unexpected = unexpected or outcome
                continue
            found, problem = outcome
            changed += found
            if problem is not None:
                problems[venue] = problem
        if unexpected is not None:
            raise unexpected
        for venue, problem in problems.items():
            log.error("reconciliation with %s failed: %s", venue, problem)
        if desk.redis_state is not None:
            await desk.redis_state.set_positions(self.positions())
        return {"changed": changed, "venues": dict(desk.reconciled), "errors": problems,
                "skipped": [{"venue": v, "symbol": sym} for v, sym in skipped]}

    async def _read_venue(self, client: ExchangeClient, unresolved: list[OrderRow]) -> _VenueReads:
        """Everything one venue's part needs, before it writes anything. A venue error on an order
        is kept as that order's problem (the order is left out); anything else is raised."""
        answers: Answers = []
        problem: str | None = None
        for row in unresolved:
            try:
                result = await client.fetch_order(row.symbol, row.client_order_id)
                if result is not None and result.status == "open":
                    result = await client.cancel_order(row.symbol, row.client_order_id) or result
            except errors.VenueErrorBase as exc:
                problem = f"order {row.client_order_id}: {exc.message}"
                continue
            answers.append((row, result))
        # Read after the orders' answers: the positions include what those orders filled.
        read_at = time.time()
        reads = list(await asyncio.gather(client.fetch_positions(), client.fetch_balance(),
                                          client.fetch_open_orders(), return_exceptions=True))
        for read in reads:
            if isinstance(read, BaseException) and not isinstance(read, errors.VenueErrorBase):
                raise read
        venue_reads = _VenueReads(answers, reads, problem)
        venue_reads.read_at = read_at
        return venue_reads

    async def _settle_answers(self, answers: Answers) -> Found:
        found: Found = []
        for row, result in answers:
            if result is None:
                await self.desk.journal.update_order(row.venue, row.client_order_id, "not_found",
                                                     reason="not at venue when reconciled")
                found.append({"kind": "order", "venue": row.venue, "client_order_id": row.client_order_id,
                              "from": row.status, "to": "not_found"})
                continue
            request = OrderRequest(row.venue, row.symbol, side(row.side), row.qty, row.price, row.client_order_id,
                                   row.reduce_only)
            await self.orders.settle(request, result, None)
            found.append({"kind": "order", "venue": row.venue, "client_order_id": row.client_order_id,
                          "from": row.status, "to": result.status, "filled_qty": s(result.filled_qty)})
        return found

    async def _write_venue(self, venue: str, client: ExchangeClient, reads: _VenueReads, funding: bool,
                           busy: Collection[Key] = ()) -> tuple[Found, str | None]:
        """One venue's writes, but none to the `busy` keys. Venues run concurrently (or one after the other
        under the lock); a venue's orders and positions touch only its own keys of the portfolio and the
        journal (no explicit transaction)."""
        desk = self.desk
        found = await self._settle_answers([(row, r) for row, r in reads.answers if (venue, row.symbol) not in busy])
        problem: str | None = reads.problem
        if reads.failed:
            desk.reconciled[venue] = False
            desk.venue_connected[venue] = False
            return found, reads.failed[0].message
        remote, balance, open_orders = reads.reads
        found += await self._adopt(venue, remote, balance, open_orders, busy)
        settle_by_read(desk, venue, reads.read_at, busy)
        desk.reconciled[venue] = True
        desk.venue_connected[venue] = True
        if funding:
            try:
                if reads.funding is None:
                    found += await self.sync_funding(venue, client)
                elif isinstance(reads.funding, errors.VenueErrorBase):
                    raise reads.funding
                else:
                    found += await self._book_funding(venue, reads.funding)
            except errors.VenueErrorBase as exc:
                problem = f"funding history: {exc.message}"
        return found, problem

    async def _adopt(self, venue: str, remote: list[VenuePosition], balance: Any,
                     open_orders: list[OrderResult], busy: Collection[Key] = ()) -> Found:
        """The venue's positions, balance, open orders, marks and leverage become the local ones (a busy
        key keeps its local position, mark, leverage and open orders)."""
        desk = self.desk
        portfolio = desk.portfolio
        portfolio.set_balance(balance)
        kept = [o for o in desk.venue_open_orders.get(venue, []) if (venue, o.symbol) in busy]
        desk.venue_open_orders[venue] = [o for o in open_orders if (venue, o.symbol) not in busy] + kept
        remote = [p for p in remote if (venue, p.symbol) not in busy]
        local = {s: (p.size, p.entry_price) for (v, s), p in portfolio.positions.items()
                 if v == venue and (v, s) not in busy}
        found: Found = []
        for change in diff_positions(venue, local, remote):
            portfolio.set_position(venue, change.symbol, change.venue_size, change.venue_entry)
            position = portfolio.positions[(venue, change.symbol)]
            await desk.journal.save_position(venue, change.symbol, position.size, position.entry_price,
                                             position.realized_pnl)
            found.append(change.as_dict())
        for remote_position in remote:
            if remote_position.mark_price is not None:
                portfolio.set_mark(venue, remote_position.symbol, remote_position.mark_price)
            if remote_position.leverage is not None:
                portfolio.leverage[(venue, remote_position.symbol)] = remote_position.leverage
            if remote_position.margin is not None:
                portfolio.set_margin(remote_position.margin)
        for key in [k for k in portfolio.margins if k[0] == venue and (venue, k[1]) not in busy
                    and not any(p.symbol == k[1] for p in remote)]:
            del portfolio.margins[key]  # flat at the venue: no liquidation price any more
        return found

    async def sync_funding(self, venue: str, client: ExchangeClient,
                           lock: asyncio.Lock | None = None) -> Found:
        """Fetch the venue's funding payments since the last one journalled; journal each once (unique per
        venue payment id) and apply only newly journalled ones to the portfolio. First run: the last 24 h.
        With `lock` (start-up's sync, which runs beside trading), the fetch runs outside it and the booking
        inside it, so no journal write lands inside a trade's transaction."""
        payments = await self._fetch_funding(venue, client)
        async with (lock if lock is not None else nullcontext()):
            return await self._book_funding(venue, payments)

    async def _fetch_funding(self, venue: str, client: ExchangeClient) -> list[Any]:
        """The venue's funding payments since its cursor (none from a venue that has no funding history)."""
        desk = self.desk
        fetch = getattr(client, "fetch_funding_payments", None)
        if fetch is None:
            return []
        since_ms = desk.funding_cursor_ms.get(venue) or int((desk.clock() - 86400) * 1000)
        payments: list[Any] = await fetch(since_ms)
        return payments

    async def _book_funding(self, venue: str, payments: list[Any]) -> Found:
        desk = self.desk
        booked: Found = []
        for payment in payments:
            ts = payment.ts_ms / 1000
            if await desk.journal.record_funding(venue, payment.payment_id, payment.symbol, payment.amount, ts):
                desk.portfolio.apply_funding(venue, payment.symbol, payment.amount, ts)
                booked.append({"kind": "funding", "venue": venue, "symbol": payment.symbol,
                               "payment_id": payment.payment_id, "amount": s(payment.amount),
                               "ts_ms": payment.ts_ms})
                log.info("funding %s %s %s (payment %s)", venue, payment.symbol, payment.amount,
                         payment.payment_id)
            desk.funding_cursor_ms[venue] = max(desk.funding_cursor_ms.get(venue, 0), payment.ts_ms)
        return booked

    async def periodic(self, reconcile: Reconcile | None = None) -> dict[str, Any]:
        """One periodic pass. `reconcile`: the engine's own (observable) reconcile, else this one. The
        venues are read without the trade lock (outside_lock): a decision arriving meanwhile trades."""
        desk = self.desk
        run = reconcile or self.reconcile
        funding = desk.clock() - desk.funding_synced_at >= FUNDING_SYNC_INTERVAL_S
        with outside_lock(desk.trade_lock):
            report = await run(funding=funding)
        if funding:
            desk.funding_synced_at = desk.clock()
        if (desk.state == "PAUSED" and desk.state_reason.startswith(STARTING_REASON) and desk.reconciled
                and all(desk.reconciled.values())):
            await self.states.set_state("ACTIVE", "reconciled with every venue", "recovery")
        self.book.accrue_residue()
        await self.states.check_breach()
        if desk.redis_state is not None:
            await desk.redis_state.heartbeat()
        publish(desk)
        return report
