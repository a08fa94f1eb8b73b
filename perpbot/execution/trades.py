"""Two-leg trades: the scanner's decisions one after the other, each through the risk gate, journal
first, both legs at once (uncancellable as a pair), leg repair, and the trade's new shape ended
atomically with its intent (Journal.finish_intent)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from decimal import Decimal
from typing import Any, cast

from perpbot.core.decisions import Decision, Refusal
from perpbot.core.orders import OrderRequest
from perpbot.core.shielding import uncancellable
from perpbot.execution.client_ids import client_order_id, new_intent_id
from perpbot.execution.desk import ZERO, Desk, publish, request_base, s
from perpbot.execution.doubts import doubted_leg
from perpbot.execution.legs import Done, LegOutcome
from perpbot.execution.orders import OrderLifecycle
from perpbot.execution.repair import LegRepair
from perpbot.execution.states import TradingStates
from perpbot.execution.trade_book import TradeBook
from perpbot.core.approved import ApprovedOrder

log = logging.getLogger("perpbot.execution.engine")

Approval = tuple[list[ApprovedOrder], list[Refusal]]


def target_of(action: str, requests: list[OrderRequest], base: list[Decimal]) -> Decimal:
    """The difference leg0 - leg1 the legs policy aims at: 0 for an entry; for an exit, the
    difference of the two legs' sizes (`base`: each request in base units), so a trade holding a
    residue ends flat on both venues."""
    if action != "close":
        return ZERO
    return base[0] - base[1]


def outcome_label(halted: bool, attempt: int, hedged: Decimal) -> str:
    if halted:
        return "halted"
    if attempt == 0:
        return "hedged" if hedged > 0 else "nothing_filled"
    return "corrected" if hedged > 0 else "unwound"


class TwoLegTrades:
    def __init__(self, desk: Desk, orders: OrderLifecycle, repair: LegRepair, book: TradeBook,
                 states: TradingStates) -> None:
        self.desk = desk
        self.orders = orders
        self.repair = repair
        self.book = book
        self.states = states

    def _skip_reason(self, decision: Decision) -> str | None:
        desk = self.desk
        if desk.stopping:
            return "shutting down"
        # PAUSED is the operator's emergency stop: no order at all, exits included (positions stay
        # as they are; close-all is the explicit way out). REDUCING and HALTED still let exits run.
        if (desk.state != "ACTIVE" and decision.action == "open") or desk.state == "PAUSED":
            return f"trading state {desk.state}"
        return None

    async def on_decisions(self, decisions: list[Decision]) -> list[dict[str, Any]]:
        """Carry out the scanner's decisions one after the other; returns one report per decision."""
        desk = self.desk
        reports: list[dict[str, Any]] = []
        for decision in decisions:
            skip = self._skip_reason(decision)
            if skip is not None:
                reports.append({"outcome": "skipped", "reason": skip})
                continue
            async with desk.trade_lock:
                reports.append(await self._locked(decision))
            await self.states.check_breach()
        publish(desk)
        return reports

    async def _locked(self, decision: Decision) -> dict[str, Any]:
        """One decision under the trade lock."""
        if self.desk.stopping:  # the stop came while this decision waited for the trade before it
            return {"outcome": "skipped", "reason": "shutting down"}
        doubted = await self.doubted(decision)
        if doubted:
            # A refused reduce-only order or a liquidation/ADL there: the venue may hold less than the bot
            # thinks. Sent blind, an exit is refused again (and a repair would re-open the other leg).
            return {"outcome": "skipped", "reason": f"position {doubted} in doubt: waiting for the venue's statement"}
        held = self.held_by_open_trade(decision) if decision.action == "open" else None
        if held:
            # The scanner's decisions of one batch were all taken against the same open
            # trades: an entry on a venue/symbol a trade of this batch already holds would
            # net against that leg (one-way positions) and leave both trades' reduce-only
            # exits refused forever. Found by the hostile-venue suite (docs/RELIABILITY.md).
            return {"outcome": "skipped", "reason": f"{held} already in an open trade"}
        if decision.action == "close" and decision.trade_id not in self.desk.open_trades:
            # An exit decided before the trade ended (close-all, a start-up adoption, another exit
            # of the batch) while it waited for the lock: there is nothing left to reduce.
            return {"outcome": "skipped", "reason": f"trade {decision.trade_id} is no longer open"}
        return await self.execute(decision)

    async def doubted(self, decision: Decision) -> str | None:
        """'venue symbol' of a leg whose position is in doubt, once the pushes already here are booked."""
        if doubted_leg(self.desk, decision.legs) is None:
            return None
        if self.desk.confirmations is not None:
            await self.desk.confirmations.settle_doubts()
        return doubted_leg(self.desk, decision.legs)

    def held_by_open_trade(self, decision: Decision) -> str | None:
        """'venue symbol' of the first entry leg already used by an open trade, else None."""
        held = {(leg["venue"], leg["symbol"]) for trade in self.desk.open_trades.values() for leg in trade["legs"]}
        for leg in decision.legs:
            if (leg.venue, leg.symbol) in held:
                return f"{leg.venue} {leg.symbol}"
        return None

    async def execute(self, decision: Decision) -> dict[str, Any]:
        desk = self.desk
        intent_id = new_intent_id()
        legs = decision.legs
        cids = tuple(client_order_id(leg.venue, intent_id, "ab"[i], 0) for i, leg in enumerate(legs))
        approved, refusals = self.approve(decision, intent_id, cids)
        if refusals or len(approved) != 2:
            detail = "; ".join(f"{r.rule}: {r.detail}" for r in refusals) or "gate approved fewer than two legs"
            log.info("decision %s %s refused: %s", decision.strategy, decision.base, detail)
            return {"intent_id": intent_id, "outcome": "refused", "reason": detail}
        # Approved orders in leg order (the gate may have adjusted quantities or prices).
        ordered = sorted(approved, key=lambda a: cids.index(a.request.client_order_id))
        await desk.journal.record_intent(
            intent_id, decision.strategy, decision.action, decision.base,
            {"edge_bps": decision.edge_bps, "edge_usdt": decision.edge_usdt, "reason": decision.reason,
             "legs": [dataclasses.asdict(leg) for leg in legs],
             # What the strategy expected of each leg (perpbot.scanner.expectations): attribution reads it back.
             "expectation": dataclasses.asdict(decision.expectation) if decision.expectation else None},
            [(a.request, a.purpose) for a in ordered], trade_id=decision.trade_id,
        )
        # Both legs leave together or not at all: a cancellation (a stop past its grace) waits for
        # both sends to be answered and settled instead of cutting one of them off.
        sent = await uncancellable(asyncio.gather(*(self.orders.send(a, decision.strategy) for a in ordered)))
        requests = [a.request for a in ordered]
        bases = [request_base(desk, r) for r in requests]
        outcomes = [LegOutcome(b, x.filled_base, x.rejected, x.unknown) for b, x in zip(bases, sent)]
        outcome, attempt, halted = await self.repair.correct(
            intent_id, decision.strategy, requests, outcomes, target=target_of(decision.action, requests, bases),
            closing=decision.action == "close")
        hedged = outcome.hedged if isinstance(outcome, Done) else ZERO
        label = "awaiting_position" if isinstance(outcome, Done) and outcome.awaiting else \
            outcome_label(halted, attempt, hedged)
        change = self.book.trade_change(decision, intent_id, requests, outcomes)
        # The trade's new shape and the intent's end in one transaction (perpbot.journal.sqlite).
        await desk.journal.finish_intent(intent_id, label, change)
        self.book.apply(change, decision)
        if change is not None and change.kind == "close" and desk.attributions is not None:
            await desk.attributions.on_trade_closed(change.trade_id)
        desk.metrics.trades_total.labels(decision.strategy, label).inc()
        await self._count_leg_failures(attempt > 0 or halted)
        return {"intent_id": intent_id, "outcome": label, "hedged_base": s(hedged), "corrective_orders": attempt}

    async def _count_leg_failures(self, needed_repair: bool) -> None:
        """HALT after risk.max_leg_failures trades in a row needed leg repair."""
        desk = self.desk
        if not needed_repair:
            desk.leg_failures = 0
            return
        desk.leg_failures += 1
        if desk.leg_failures >= desk.settings.risk.max_leg_failures:
            await self.states.halt(f"{desk.leg_failures} trades in a row needed leg repair", "engine")

    def approve(self, decision: Decision, intent_id: str, cids: tuple[str, ...]) -> Approval:
        """Entries go through approve_entry (both legs or none); closes are two reduce-only exits."""
        desk = self.desk
        ctx = self.states.risk_context()
        if decision.action == "open":
            return desk.gate.approve_entry(decision, ctx, intent_id, cast("tuple[str, str]", cids))
        requests: list[OrderRequest] = []
        missing: list[Refusal] = []
        for leg, cid, size in zip(decision.legs, cids, self.exit_sizes(decision)):
            instrument = desk.instruments.get((leg.venue, leg.symbol))
            if instrument is None:
                missing.append(Refusal("instrument_known", f"{leg.venue} {leg.symbol} unknown"))
                continue
            requests.append(OrderRequest(
                venue=leg.venue, symbol=leg.symbol, side=leg.side, qty=instrument.base_to_venue_qty(size),
                price=desk.gate.limit_price(instrument, leg.side, leg.ref_price), client_order_id=cid,
                reduce_only=True,
            ))
        if missing:
            return [], missing
        # Both exits or neither: a half-approved close would spend an order-rate slot on an order never sent.
        return desk.gate.approve_orders(requests, "exit", ctx, intent_id)

    def exit_sizes(self, decision: Decision) -> list[Decimal]:
        """Base quantity to close on each leg. A strategy closes a whole trade at the smaller leg's
        size; when the trade's legs hold different sizes (a residue no venue could trade), each
        leg closes all it holds, so nothing is left naked on the larger one."""
        asked = [leg.base_qty for leg in decision.legs]
        trade = self.desk.open_trades.get(decision.trade_id) if decision.trade_id else None
        if trade is None:
            return asked
        held = {(leg["venue"], leg["symbol"]): Decimal(leg["base_qty"]) for leg in trade["legs"]}
        sizes = [held.get((leg.venue, leg.symbol)) for leg in decision.legs]
        known = [size for size in sizes if size is not None]
        if len(known) != len(sizes) or min(asked) < min(known):
            return asked  # a partial exit: as the strategy asked
        return known
