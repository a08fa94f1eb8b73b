"""Operator commands: pause (cancel working orders), resume (only once reconciled), close-all (a
reduce-only flatten of every venue position), sync, and the graceful stop's drain."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from perpbot.core import errors
from perpbot.core.decisions import Refusal
from perpbot.core.orders import OrderRequest, Side, VenuePosition
from perpbot.core.ports import ExchangeClient
from perpbot.execution.client_ids import client_order_id, new_intent_id
from perpbot.execution.desk import Desk, in_flight_keys, publish, s
from perpbot.execution.orders import OrderLifecycle
from perpbot.execution.reconcile import diff_positions
from perpbot.execution.reconciler import Reconcile
from perpbot.execution.states import TradingStates
from perpbot.risk.states import OPERATOR_RESUME_AFTER_RECONCILIATION

log = logging.getLogger("perpbot.execution.engine")

Report = dict[str, Any]


def flatten_status(remaining: Any, rejected: bool, unknown: bool) -> str:
    if remaining == 0:
        return "closed"
    return "rejected" if rejected else "unknown" if unknown else "partial"


def flat_trades(desk: Desk) -> list[str]:
    """Open trades none of whose legs is held (as booked), with no order in flight and no position in doubt on
    them (perpbot.execution.doubts): the venues hold nothing of them any more."""
    busy = set(in_flight_keys(desk))
    found = []
    for trade_id, trade in desk.open_trades.items():
        keys = [(leg["venue"], leg["symbol"]) for leg in trade["legs"]]
        if any(key in busy or key in desk.doubted for key in keys):
            continue
        held = [desk.portfolio.positions.get(key) for key in keys]
        if all(p is None or p.size == 0 for p in held):
            found.append(trade_id)
    return found


class OperatorCommands:
    def __init__(self, desk: Desk, orders: OrderLifecycle, states: TradingStates, reconcile: Reconcile) -> None:
        self.desk = desk
        self.orders = orders
        self.states = states
        self.reconcile = reconcile  # the engine's (observable) reconcile

    async def pause(self, reason: str) -> Report:
        desk = self.desk
        await self.states.set_state("PAUSED", reason or "paused by operator", "operator")
        # A trade already under way finishes its legs (a half-done trade is worse than a late stop);
        # once the lock is ours nothing more is sent, so the answer means "no new orders from now".
        async with desk.trade_lock:
            canceled = await self.cancel_working_orders()
        return {"state": desk.state, "reason": desk.state_reason, "canceled_orders": canceled}

    async def resume(self) -> Report:
        desk = self.desk
        if not all(desk.reconciled.values()):
            missing = [v for v, ok in desk.reconciled.items() if not ok]
            return {"state": desk.state, "resumed": False,
                    "reason": f"not reconciled with {', '.join(missing)}; POST /api/sync/positions first"}
        reason = OPERATOR_RESUME_AFTER_RECONCILIATION if desk.state == "HALTED" else "resumed by operator"
        resumed = await self.states.set_state("ACTIVE", reason, "operator")
        if resumed:
            desk.leg_failures = 0
        return {"state": desk.state, "resumed": resumed}

    async def cancel_working_orders(self) -> list[Report]:
        canceled: list[Report] = []
        for venue, client in self.desk.clients.items():
            try:
                working = await client.fetch_open_orders()
            except errors.VenueErrorBase as exc:
                canceled.append({"venue": venue, "error": exc.message})
                continue
            for order in working:
                try:
                    result = await client.cancel_order(order.symbol, order.client_order_id)
                    canceled.append({"venue": venue, "client_order_id": order.client_order_id,
                                     "status": result.status if result else "not_found"})
                except errors.VenueErrorBase as exc:
                    canceled.append({"venue": venue, "client_order_id": order.client_order_id, "error": exc.message})
            self.desk.venue_open_orders[venue] = []
        return canceled

    async def close_all(self) -> Report:
        """Reduce-only flatten of every venue position, including ones the bot did not open."""
        desk = self.desk
        if desk.state == "ACTIVE":
            await self.states.set_state("REDUCING", "close-all requested", "operator")
        canceled = await self.cancel_working_orders()
        results: list[Report] = []
        async with desk.trade_lock:
            # Local positions first made equal to the venues', so reduce-only checks see the truth.
            await self.reconcile()
            intent_id = new_intent_id()
            for venue, client in desk.clients.items():
                try:
                    positions = await client.fetch_positions()
                except errors.VenueErrorBase as exc:
                    results.append({"venue": venue, "status": "error", "error": exc.message})
                    continue
                for number, position in enumerate(positions):
                    results.append(await self.flatten(client, position, intent_id, number))
            await self.reconcile()
            await self.close_flat_trades()
        publish(desk)
        return {"state": desk.state, "results": results, "canceled_orders": canceled}

    async def close_flat_trades(self, by: str = "close-all") -> None:
        """Trades whose legs are all flat at the venues are over: without this the scanner would keep
        sending exits for positions that no longer exist. Under the trade lock (`by`: who, for the log)."""
        desk = self.desk
        for trade_id in flat_trades(desk):
            if trade_id in desk.open_trades:
                await desk.journal.close_trade(trade_id)
                del desk.open_trades[trade_id]
                log.warning("trade %s closed by %s", trade_id, by)
                if desk.attributions is not None:
                    await desk.attributions.on_trade_closed(trade_id)

    async def flatten(self, client: ExchangeClient, position: VenuePosition, intent_id: str, number: int) -> Report:
        desk = self.desk
        venue, symbol = position.venue, position.symbol
        side: Side = "sell" if position.size > 0 else "buy"
        entry = {"venue": venue, "symbol": symbol, "size": s(position.size), "side": side}
        instrument = desk.instruments.get((venue, symbol))
        if instrument is None:
            try:
                instrument = (await client.load_instruments([symbol]))[symbol]
                desk.instruments[(venue, symbol)] = instrument
            except errors.VenueErrorBase as exc:
                return {**entry, "status": "error", "error": f"instrument unknown: {exc.message}"}
        qty = abs(position.size) / instrument.contract_size
        fallback = position.mark_price or position.entry_price
        request = OrderRequest(venue, symbol, side, qty, self.orders.aggressive_price(venue, symbol, side, fallback),
                               client_order_id(venue, intent_id, f"f{number}", 0), reduce_only=True)
        approved = desk.gate.approve_order(request, "flatten", self.states.risk_context(), intent_id)
        if isinstance(approved, Refusal):
            return {**entry, "status": "refused", "error": f"{approved.rule}: {approved.detail}"}
        await desk.journal.record_order(approved.request, "flatten", intent_id)
        sent = await self.orders.send(approved, None)
        remaining = abs(position.size) - sent.filled_base
        return {**entry, "status": flatten_status(remaining, sent.rejected, sent.unknown),
                "filled": s(sent.filled_base), "remaining": s(remaining),
                "client_order_id": request.client_order_id, "error": sent.error}

    async def sync_positions(self) -> Report:
        desk = self.desk
        async with desk.trade_lock:
            report = await self.reconcile(funding=True)
        desk.funding_synced_at = desk.clock()
        publish(desk)
        return report

    async def sync_preview(self) -> Report:
        """What sync_positions would change, changing nothing (POST /api/sync/positions?dry_run=true):
        each venue's positions against the local ones (pure diff), and the unresolved orders a sync
        would ask the venue about. Reads only; no lock, no journal write, no cancel."""
        desk = self.desk
        venues = list(desk.clients.items())
        reads = await asyncio.gather(*(client.fetch_positions() for _, client in venues), return_exceptions=True)
        changed: list[Report] = []
        problems: dict[str, str] = {}
        for (venue, _), remote in zip(venues, reads):
            if isinstance(remote, errors.VenueErrorBase):
                problems[venue] = remote.message
                continue
            if isinstance(remote, BaseException):
                raise remote
            local = {symbol: (p.size, p.entry_price) for (v, symbol), p in desk.portfolio.positions.items()
                     if v == venue}
            changed += [change.as_dict() for change in diff_positions(venue, local, remote)]
        unresolved = await desk.journal.orders_with_status("unknown", "pending", "open")
        orders = [{"kind": "order", "venue": row.venue, "symbol": row.symbol, "client_order_id": row.client_order_id,
                   "status": row.status} for row in unresolved]
        return {"dry_run": True, "changed": changed, "orders_to_settle": orders, "errors": problems}

    async def drain(self, grace_s: float) -> bool:
        """Graceful stop: take no new decision, let the execution in flight (both legs and their
        repair) finish. True when nothing is in flight any more (no decision starts after this:
        on_decisions checks the flag under the trade lock); False when `grace_s` ran out first."""
        lock = self.desk.trade_lock
        self.desk.stopping = True
        try:
            await asyncio.wait_for(lock.acquire(), timeout=grace_s)
        except asyncio.TimeoutError:
            log.critical("stop: an execution is still in flight after %.1fs; leaving it to start-up recovery", grace_s)
            return False
        lock.release()
        return True
