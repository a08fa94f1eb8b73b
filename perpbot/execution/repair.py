"""Leg repair: run the pure legs policy (perpbot.execution.legs) over a two-leg trade's outcomes
until the legs match or trading halts: resolve unknown legs, hedge or unwind a partial or
rejected leg (on the other venue when this one cannot trade the quantity), keep a residue no
venue can trade, and count the unhedged exposure meanwhile."""

from __future__ import annotations

import dataclasses
import logging
from decimal import Decimal

from perpbot.core.decisions import Refusal
from perpbot.core.orders import OrderRequest
from perpbot.execution.client_ids import client_order_id
from perpbot.execution.desk import ZERO, Desk
from perpbot.execution.legs import Done, Halt, Hedge, LegOutcome, Resolve, Unwind, decide, on_other_leg
from perpbot.execution.orders import OrderLifecycle
from perpbot.execution.states import TradingStates
from perpbot.execution.trade_book import TradeBook
from perpbot.core.approved import ApprovedOrder

log = logging.getLogger("perpbot.execution.engine")

# Refusals that mean "this venue cannot trade this quantity" (below its lot, minimum size or
# minimum notional): the correction is tried on the other leg's venue instead.
SIZE_RULES = frozenset({"lot_size", "min_qty", "min_notional"})

Corrective = tuple[Hedge | Unwind, ApprovedOrder]


class LegRepair:
    def __init__(self, desk: Desk, orders: OrderLifecycle, states: TradingStates, book: TradeBook) -> None:
        self.desk = desk
        self.orders = orders
        self.states = states
        self.book = book

    async def correct(self, intent_id: str, strategy: str | None, requests: list[OrderRequest],
                      outcomes: list[LegOutcome], start_attempt: int = 0,
                      target: Decimal = ZERO, closing: bool = False) -> tuple[Done | Halt, int, bool]:
        """Run the legs policy until the legs match or trading halts. `start_attempt` counts
        corrective orders already sent for this intent (after a restart), so their client ids
        are never reused and the retry cap still holds. `outcomes` is updated in place: on return
        it holds what each leg finally did. `closing`: an exit, which stops (Done, awaiting) when a leg's
        reduce-only order was refused and its position is in doubt: the venue may have closed that leg
        itself (a liquidation, an ADL), and unwinding the other leg would re-open a naked position."""
        attempt = start_attempt
        max_retries = self.desk.settings.execution.max_hedge_retries
        naked_since: float | None = None
        while True:
            action = decide(outcomes[0], outcomes[1], attempt, max_retries, target=target)
            if isinstance(action, Done):
                self.account_unhedged(naked_since, ZERO)
                return action, attempt, False
            if closing and self._leg_in_doubt(requests, outcomes):
                residual = outcomes[0].filled - outcomes[1].filled - target
                log.warning("intent %s: an exit leg was refused and its position is in doubt; no repair until the "
                            "venue states it (legs differ by %s)", intent_id, residual)
                return Done(hedged=min(o.filled for o in outcomes), residual=residual, awaiting=True), attempt, False
            if naked_since is None:
                naked_since = self.desk.clock()
            if isinstance(action, Halt):
                residual = outcomes[0].filled - outcomes[1].filled - target
                if not any(o.unknown for o in outcomes) and not self._tradeable_anywhere(requests, residual):
                    # Out of attempts, but what is left is below what either venue can trade: a
                    # residue (kept on the trade and counted), not a naked leg worth a HALT.
                    log.warning("intent %s: residual %s base left after %d attempts is below what either venue "
                                "can trade; kept on the trade and counted as unhedged exposure",
                                intent_id, residual, attempt)
                    self.account_unhedged(naked_since, ZERO)
                    return Done(hedged=min(o.filled for o in outcomes), residual=residual), attempt, False
                await self._halt(intent_id, action, requests, outcomes, naked_since, target)
                return action, attempt, True
            attempt += 1
            if isinstance(action, Resolve):
                await self._resolve(action, strategy, requests, outcomes)
                continue
            order = self._corrective_anywhere(intent_id, requests, action, attempt)
            if order is None:
                residual = outcomes[0].filled - outcomes[1].filled - target
                log.warning("intent %s: residual %s base is below what either venue can trade; kept on the "
                            "trade and counted as unhedged exposure", intent_id, residual)
                self.account_unhedged(naked_since, ZERO)
                return Done(hedged=min(o.filled for o in outcomes), residual=residual), attempt, False
            if isinstance(order, Refusal):
                if isinstance(action, Hedge):
                    outcomes[action.leg] = dataclasses.replace(outcomes[action.leg], rejected=True)
                continue
            await self._send_corrective(intent_id, strategy, order, outcomes)

    def _leg_in_doubt(self, requests: list[OrderRequest], outcomes: list[LegOutcome]) -> bool:
        return any(o.rejected and (r.venue, r.symbol) in self.desk.doubted for r, o in zip(requests, outcomes))

    async def _halt(self, intent_id: str, action: Halt, requests: list[OrderRequest], outcomes: list[LegOutcome],
                    naked_since: float, target: Decimal) -> None:
        exposure = [f"{r.venue} {r.symbol} {r.side} filled {o.filled}" for r, o in zip(requests, outcomes)]
        reason = f"intent {intent_id}: {action.reason} ({'; '.join(exposure)})"
        naked = abs(outcomes[0].filled - outcomes[1].filled - target) * requests[0].price
        self.account_unhedged(naked_since, naked)
        await self.states.set_state("HALTED", reason, "engine")

    async def _resolve(self, action: Resolve, strategy: str | None, requests: list[OrderRequest],
                       outcomes: list[LegOutcome]) -> None:
        for i in action.legs:
            sent = await self.orders.resolve(requests[i], strategy)
            outcomes[i] = dataclasses.replace(outcomes[i], unknown=sent.unknown).add(sent.filled_base)

    def _corrective_anywhere(self, intent_id: str, requests: list[OrderRequest], action: Hedge | Unwind,
                             attempt: int) -> Corrective | Refusal | None:
        order = self.corrective(intent_id, requests, action, attempt)
        if order is None:
            # The chosen venue cannot trade this quantity (below its lot or minimum): the other
            # venue may (its lot is finer, its minimum lower).
            order = self.corrective(intent_id, requests, on_other_leg(action), attempt)
        return order

    async def _send_corrective(self, intent_id: str, strategy: str | None, order: Corrective,
                               outcomes: list[LegOutcome]) -> None:
        chosen, approved = order
        is_hedge = isinstance(chosen, Hedge)
        await self.desk.journal.record_order(approved.request, approved.purpose, intent_id)
        sent = await self.orders.send(approved, strategy)
        filled = sent.filled_base if is_hedge else -sent.filled_base
        outcomes[chosen.leg] = outcomes[chosen.leg].add(filled, rejected=sent.rejected and is_hedge,
                                                        unknown=sent.unknown)

    def corrective(self, intent_id: str, requests: list[OrderRequest], action: Hedge | Unwind,
                   attempt: int) -> Corrective | Refusal | None:
        """The approved order carrying out `action`; None when its venue cannot trade the quantity
        (zero lots, or refused by a size rule); a Refusal for any other reason."""
        desk = self.desk
        original = requests[action.leg]
        is_hedge = isinstance(action, Hedge)
        side = original.side if is_hedge else ("sell" if original.side == "buy" else "buy")
        instrument = desk.instruments.get((original.venue, original.symbol))
        qty = instrument.base_to_venue_qty(action.qty) if instrument else action.qty
        if qty <= 0:
            return None
        tag = ("h" if is_hedge else "u") + "ab"[action.leg]
        request = OrderRequest(
            venue=original.venue, symbol=original.symbol, side=side, qty=qty,
            price=self.orders.aggressive_price(original.venue, original.symbol, side, original.price, attempt),
            client_order_id=client_order_id(original.venue, intent_id, tag, attempt),
            reduce_only=not is_hedge and self.reduces(original, qty),
        )
        purpose = "hedge" if is_hedge else "unwind"
        approved = desk.gate.approve_order(request, purpose, self.states.risk_context(), intent_id)
        if isinstance(approved, Refusal):
            log.warning("intent %s: %s on %s refused by risk: %s", intent_id, purpose, original.venue, approved.detail)
            return None if approved.rule in SIZE_RULES else approved
        return action, approved

    def _tradeable_anywhere(self, requests: list[OrderRequest], residual: Decimal) -> bool:
        """Whether either leg's venue could take `residual` (base) off: at least one lot and the
        venue's minimum size and minimum notional (a reduce-only exemption is not counted on)."""
        if residual == 0:
            return False
        for request in requests:
            instrument = self.desk.instruments.get((request.venue, request.symbol))
            if instrument is None:
                return True  # nothing known of this venue's grid: assume it could
            qty = instrument.base_to_venue_qty(abs(residual))
            if qty <= 0 or qty < instrument.min_qty:
                continue
            notional = instrument.venue_to_base_qty(qty) * request.price
            if notional >= instrument.min_notional:
                return True
        return False

    def reduces(self, filled: OrderRequest, venue_qty: Decimal) -> bool:
        """Whether undoing `filled` shrinks the venue position (so it can be sent reduce-only).

        Positions are netted per venue and symbol: when the fill itself reduced an existing
        position (one the bot did not open, say), its unwind re-opens that position and a
        reduce-only flag would make the venue refuse the unwind."""
        position = self.desk.portfolio.positions.get((filled.venue, filled.symbol))
        size = position.size if position is not None else ZERO
        instrument = self.desk.instruments.get((filled.venue, filled.symbol))
        base_qty = instrument.venue_to_base_qty(venue_qty) if instrument else venue_qty
        return size >= base_qty if filled.side == "buy" else -size >= base_qty

    def account_unhedged(self, since: float | None, still_naked_usdt: Decimal) -> None:
        desk = self.desk
        if since is not None:
            desk.unhedged_usdt_seconds += still_naked_usdt * Decimal(str(round(desk.clock() - since, 3)))
        desk.metrics.unhedged_notional.set(float(still_naked_usdt + self.book.residue_usdt()))
        desk.metrics.unhedged_usdt_seconds.set(float(desk.unhedged_usdt_seconds))

