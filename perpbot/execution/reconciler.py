"""Reconciliation: settle unresolved orders, make local positions and balances equal the venues'
(every venue at once, one failing does not stop the others), book funding payments, and the
periodic pass (reconcile, start-up ACTIVE once every venue is reconciled, residues, breach check,
heartbeat, metrics)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Coroutine
from contextlib import nullcontext
from typing import Any

from perpbot.core import errors
from perpbot.core.orders import OrderRequest, OrderResult, VenuePosition
from perpbot.core.ports import ExchangeClient
from perpbot.execution.desk import STARTING_REASON, Desk, publish, s, side
from perpbot.execution.orders import OrderLifecycle
from perpbot.execution.reconcile import diff_positions
from perpbot.execution.states import TradingStates
from perpbot.execution.trade_book import TradeBook
from perpbot.journal.sqlite import OrderRow

log = logging.getLogger("perpbot.execution.engine")

FUNDING_SYNC_INTERVAL_S = 60.0  # venues settle funding hourly at the most often

Found = list[dict[str, Any]]
Reconcile = Callable[..., Coroutine[Any, Any, dict[str, Any]]]


class _VenueReads:
    """What one venue answered: its unresolved orders' answers, then positions, balance, open orders."""

    def __init__(self, answers: list[tuple[OrderRow, OrderResult | None]], reads: list[Any],
                 problem: str | None) -> None:
        self.answers = answers
        self.problem = problem  # a venue error on one of the orders (that order is left out)
        self.reads = reads
        self.failed = [r for r in reads if isinstance(r, errors.VenueErrorBase)]


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
        venues while an interrupted trade is repaired, without writing inside its transactions)."""
        desk = self.desk
        unresolved: dict[str, list[OrderRow]] = {}
        for row in await desk.journal.orders_with_status("unknown", "pending", "open"):
            unresolved.setdefault(row.venue, []).append(row)
        # A copy: a venue left out meanwhile does not break the loop.
        venues = [(v, c) for v, c in desk.clients.items() if venues_only is None or v in venues_only]

        async def one_venue(venue: str, client: ExchangeClient) -> tuple[Found, str | None]:
            reads = await self._read_venue(client, unresolved.get(venue, []))
            if writes_after is not None:
                await writes_after.wait()
            return await self._write_venue(venue, client, reads, funding)

        outcomes = await asyncio.gather(*(one_venue(v, c) for v, c in venues), return_exceptions=True)
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
        return {"changed": changed, "venues": dict(desk.reconciled), "errors": problems}

    async def _read_venue(self, client: ExchangeClient, unresolved: list[OrderRow]) -> _VenueReads:
        """Everything one venue's part needs, before it writes anything. A venue error on an order
        is kept as that order's problem (the order is left out); anything else is raised."""
        answers: list[tuple[OrderRow, OrderResult | None]] = []
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
        reads = list(await asyncio.gather(client.fetch_positions(), client.fetch_balance(),
                                          client.fetch_open_orders(), return_exceptions=True))
        for read in reads:
            if isinstance(read, BaseException) and not isinstance(read, errors.VenueErrorBase):
                raise read
        return _VenueReads(answers, reads, problem)

    async def _settle_answers(self, answers: list[tuple[OrderRow, OrderResult | None]]) -> Found:
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

    async def _write_venue(self, venue: str, client: ExchangeClient, reads: _VenueReads,
                           funding: bool) -> tuple[Found, str | None]:
        """One venue's writes. Venues run concurrently; a venue's orders and positions touch only its
        own keys of the portfolio and the journal (no explicit transaction)."""
        desk = self.desk
        found = await self._settle_answers(reads.answers)
        problem: str | None = reads.problem
        if reads.failed:
            desk.reconciled[venue] = False
            desk.venue_connected[venue] = False
            return found, reads.failed[0].message
        remote, balance, open_orders = reads.reads
        found += await self._adopt(venue, remote, balance, open_orders)
        desk.reconciled[venue] = True
        desk.venue_connected[venue] = True
        if funding:
            try:
                found += await self.sync_funding(venue, client)
            except errors.VenueErrorBase as exc:
                problem = f"funding history: {exc.message}"
        return found, problem

    async def _adopt(self, venue: str, remote: list[VenuePosition], balance: Any,
                     open_orders: list[OrderResult]) -> Found:
        """The venue's positions, balance, open orders, marks and leverage become the local ones."""
        desk = self.desk
        portfolio = desk.portfolio
        portfolio.set_balance(balance)
        desk.venue_open_orders[venue] = open_orders
        local = {s: (p.size, p.entry_price) for (v, s), p in portfolio.positions.items() if v == venue}
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
        return found

    async def sync_funding(self, venue: str, client: ExchangeClient,
                           lock: asyncio.Lock | None = None) -> Found:
        """Fetch the venue's funding payments since the last one journalled; journal each once (unique per
        venue payment id) and apply only newly journalled ones to the portfolio. First run: the last 24 h.
        With `lock` (start-up's sync, which runs beside trading), the fetch runs outside it and the booking
        inside it, so no journal write lands inside a trade's transaction."""
        desk = self.desk
        fetch = getattr(client, "fetch_funding_payments", None)
        if fetch is None:
            return []
        since_ms = desk.funding_cursor_ms.get(venue) or int((desk.clock() - 86400) * 1000)
        booked: Found = []
        payments = await fetch(since_ms)
        async with (lock if lock is not None else nullcontext()):
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
        """One periodic pass. `reconcile`: the engine's own (observable) reconcile, else this one."""
        desk = self.desk
        run = reconcile or self.reconcile
        funding = desk.clock() - desk.funding_synced_at >= FUNDING_SYNC_INTERVAL_S
        async with desk.trade_lock:
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
