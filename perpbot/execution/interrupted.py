"""Start-up repair: intents a crash cut short are finished through the same legs policy a live
trade runs; open trades are checked against the venues' positions (adopted when the venue holds
less, rebalanced when the legs then differ, HALT when nothing explains it)."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any, cast

from perpbot.core.decisions import Decision, Leg
from perpbot.core.orders import OrderRequest
from perpbot.execution.client_ids import client_order_id, new_intent_id
from perpbot.execution.desk import ZERO, Desk, base_qty, mark, request_base, s, side
from perpbot.execution.legs import Done, LegOutcome
from perpbot.execution.repair import LegRepair
from perpbot.execution.states import TradingStates
from perpbot.execution.trade_book import TradeBook, resize_or_close
from perpbot.execution.trades import target_of
from perpbot.journal.sqlite import FINAL_STATUSES, OrderRow, TradeChange
from perpbot.portfolio.book import dstr

log = logging.getLogger("perpbot.execution.engine")

Report = dict[str, Any]


class Rebuilt:
    """An interrupted intent's two legs as the journal holds them after reconciliation."""

    def __init__(self, requests: list[OrderRequest], outcomes: list[LegOutcome], corrective: int) -> None:
        self.requests = requests
        self.outcomes = outcomes
        self.corrective = corrective  # corrective orders already sent for the intent


def restored_decision(intent: Any) -> Decision:
    """The decision an interrupted intent journalled, rebuilt (its two legs as dicts)."""
    payload = intent["decision"]
    return Decision(
        strategy=intent["strategy"], action=intent["action"], base=intent["base"],
        legs=cast("tuple[Leg, Leg]", tuple(
            Leg(leg["venue"], leg["symbol"], leg["side"], Decimal(str(leg["base_qty"])), Decimal(str(leg["ref_price"])))
            for leg in payload.get("legs") or [])),
        edge_bps=Decimal(str(payload.get("edge_bps", "0"))),
        edge_usdt=Decimal(str(payload.get("edge_usdt", "0"))),
        reason="restored after restart", trade_id=intent["trade_id"],
    )


def leg_against_venue(leg: dict[str, Any], held: Decimal) -> tuple[dict[str, Any] | None, str | None]:
    """A trade leg against the venue's signed position `held`: (the adopted leg when the venue holds
    less in the leg's direction, else None; a problem when the venue holds more or the other way)."""
    along = held if leg["side"] == "buy" else -held  # in the leg's own direction
    recorded = Decimal(leg["base_qty"])
    if along == recorded:
        return None, None
    if ZERO <= along < recorded:
        return {**leg, "base_qty": dstr(along)}, None
    return None, f"{leg['venue']} {leg['symbol']} holds {dstr(held)}, the trade expects {leg['side']} {leg['base_qty']}"


class StartupRepair:
    def __init__(self, desk: Desk, repair: LegRepair, book: TradeBook, states: TradingStates) -> None:
        self.desk = desk
        self.repair = repair
        self.book = book
        self.states = states

    # -------------------------------------------------------------- interrupted intents
    async def repair_interrupted(self) -> list[Report]:
        """Intents a crash cut short (still 'sending'): rebuild both legs' outcomes from the journal
        (already settled against the venues by reconciliation) and run the same leg-repair policy a
        live trade runs, so a leg that filled before the crash is hedged or unwound, never left naked."""
        repaired: list[Report] = []
        for intent in await self.desk.journal.intents_with_status("sending"):
            entry = await self._repair_one(intent)
            if entry is not None:
                repaired.append(entry)
        return repaired

    async def _repair_one(self, intent: Any) -> Report | None:
        desk = self.desk
        intent_id = intent["intent_id"]
        rows = await desk.journal.orders_of_intent(intent_id)
        legs_json = intent["decision"].get("legs") or []
        rebuilt = self.rebuild(intent_id, legs_json, rows)
        if rebuilt is None:
            await desk.journal.set_intent_status(intent_id, "abandoned")
            log.error("intent %s: cannot rebuild its two legs from the journal; marked abandoned", intent_id)
            return {"intent_id": intent_id, "outcome": "abandoned"}
        if isinstance(rebuilt, str):
            log.error("intent %s: %s", intent_id, rebuilt)
            return None
        async with desk.trade_lock:
            label, hedged, attempt = await self._finish(intent, rebuilt, len(legs_json) == 2)
        log.warning("intent %s interrupted by a restart: %s (hedged %s, corrective orders %d)", intent_id,
                    label, hedged, attempt)
        return {"intent_id": intent_id, "outcome": label, "hedged_base": s(hedged)}

    def rebuild(self, intent_id: str, legs_json: list[Any], rows: list[OrderRow]) -> Rebuilt | str | None:
        """Both legs' requests and outcomes (corrective orders included) from the journal rows;
        None when the two legs cannot be found; a reason string when a leg is still unresolved."""
        try:
            cids = [client_order_id(leg["venue"], intent_id, "ab"[i], 0) for i, leg in enumerate(legs_json)]
        except (KeyError, ModuleNotFoundError, IndexError):
            cids = []
        originals = [next((r for r in rows if r.client_order_id == cid), None) for cid in cids]
        found = [r for r in originals if r is not None]
        if len(originals) != 2 or len(found) != 2:
            return None
        if any(r.status not in FINAL_STATUSES for r in found):
            return "a leg is still unresolved after reconciliation; left for the next sync"
        requests = [OrderRequest(r.venue, r.symbol, side(r.side), r.qty, r.price, r.client_order_id, r.reduce_only)
                    for r in found]
        outcomes = [LegOutcome(request_base(self.desk, req), base_qty(self.desk, r.venue, r.symbol, r.filled_qty),
                               rejected=r.status == "rejected") for req, r in zip(requests, found)]
        corrective = [r for r in rows if r.client_order_id not in cids]
        self._add_corrective(requests, outcomes, corrective)
        return Rebuilt(requests, outcomes, len(corrective))

    def _add_corrective(self, requests: list[OrderRequest], outcomes: list[LegOutcome],
                        corrective: list[OrderRow]) -> None:
        """What the intent's corrective orders did, added to their leg's outcome (an unwind subtracts)."""
        for row in corrective:
            leg = next((i for i, req in enumerate(requests) if (req.venue, req.symbol) == (row.venue, row.symbol)),
                       None)
            if leg is None:
                continue
            filled = base_qty(self.desk, row.venue, row.symbol, row.filled_qty)
            outcomes[leg] = outcomes[leg].add(filled if row.side == requests[leg].side else -filled)

    async def _finish(self, intent: Any, rebuilt: Rebuilt, two_legs: bool) -> tuple[str, Decimal, int]:
        """Repair the legs, then end the intent and its trade's change in one journal transaction."""
        intent_id, requests, outcomes = intent["intent_id"], rebuilt.requests, rebuilt.outcomes
        bases = [request_base(self.desk, r) for r in requests]
        outcome, attempt, halted = await self.repair.correct(
            intent_id, intent["strategy"], requests, outcomes, start_attempt=rebuilt.corrective,
            target=target_of(intent["action"], requests, bases))
        hedged = outcome.hedged if isinstance(outcome, Done) else ZERO
        change = None
        decision = None
        # An entry's trade is opened atomically with its intent's end; a journal written
        # before that was so may hold the trade already: never open it twice.
        if two_legs and not (intent["action"] == "open" and intent_id in self.desk.open_trades):
            decision = restored_decision(intent)
            change = self.book.trade_change(decision, intent_id, requests, outcomes)
        label = "halted" if halted else ("recovered" if hedged > 0 else "recovered_flat")
        await self.desk.journal.finish_intent(intent_id, label, change)
        self.book.apply(change, decision)
        return label, hedged, attempt

    # -------------------------------------------------------------- open trades vs the venues
    async def check_trades_against_venues(self) -> list[Report]:
        """Start-up check, after reconciliation and repair: each open trade's legs against the
        venue positions of their venue/symbol (each belongs to one trade at most).

        - equal: nothing to do;
        - the venue holds less, same direction (an exit or repair the journal missed, a
          liquidation): the trade takes the venue's size, journalled; flat legs close it; legs
          left unequal are rebalanced by the legs policy like any trade (unwinding the excess);
        - the venue holds more, or the other way round: nothing explains it, so trading HALTS
          with the reason instead of trading on a wrong picture."""
        report: list[Report] = []
        problems: list[str] = []
        for trade_id, trade in list(self.desk.open_trades.items()):
            if not all(self.desk.reconciled.get(leg["venue"]) for leg in trade["legs"]):
                continue  # the venue could not be read: the next check (sync) decides
            legs, changed = self._legs_at_venues(trade_id, trade, problems)
            if changed:
                report.append(await self._adopt(trade_id, legs))
        if problems:
            await self.states.set_state("HALTED", "start-up check: " + "; ".join(problems), "recovery")
        return report

    def _legs_at_venues(self, trade_id: str, trade: dict[str, Any],
                        problems: list[str]) -> tuple[list[dict[str, Any]], bool]:
        legs, changed = [], False
        for leg in trade["legs"]:
            position = self.desk.portfolio.positions.get((leg["venue"], leg["symbol"]))
            held = position.size if position is not None else ZERO
            adopted, problem = leg_against_venue(leg, held)
            if problem is not None:
                problems.append(f"trade {trade_id}: {problem}")
            if adopted is not None:
                changed = True
                log.warning("trade %s: %s %s holds %s at the venue, the journal said %s; adopted", trade_id,
                            leg["venue"], leg["symbol"], adopted["base_qty"], leg["base_qty"])
            legs.append(adopted if adopted is not None else leg)
        return legs, changed

    async def _adopt(self, trade_id: str, legs: list[dict[str, Any]]) -> Report:
        change = resize_or_close(trade_id, legs)
        await self.desk.journal.apply_trade_change(change)
        self.book.apply(change)
        entry: Report = {"kind": "trade", "trade_id": trade_id, "change": change.kind,
                         "legs": [leg["base_qty"] for leg in legs]}
        if change.kind == "resize":
            entry["rebalanced"] = await self.rebalance(trade_id)
        return entry

    async def rebalance(self, trade_id: str) -> str:
        """Bring a trade whose legs hold different sizes back to equal legs through the legs policy
        (journalled as a 'repair' intent): the larger leg is unwound reduce-only first; what no
        venue can trade stays on the trade as a counted residue."""
        desk = self.desk
        trade = desk.open_trades[trade_id]
        sizes = [Decimal(leg["base_qty"]) for leg in trade["legs"]]
        if sizes[0] == sizes[1]:
            return "balanced"
        requests = []
        for leg in trade["legs"]:
            instrument = desk.instruments.get((leg["venue"], leg["symbol"]))
            price = mark(desk, leg["venue"], leg["symbol"]) or Decimal(leg.get("ref_price") or "0")
            qty = instrument.base_to_venue_qty(Decimal(leg["base_qty"])) if instrument else Decimal(leg["base_qty"])
            requests.append(OrderRequest(leg["venue"], leg["symbol"], side(leg["side"]), qty, price, "", False))
        # The lagging leg counts as refused, so the policy unwinds the excess rather than adding to the other side.
        lag = 0 if sizes[0] < sizes[1] else 1
        outcomes = [LegOutcome(size, size, rejected=(i == lag)) for i, size in enumerate(sizes)]
        intent_id = new_intent_id()
        await desk.journal.record_intent(intent_id, trade["strategy"], "repair", trade["base"],
                                         {"legs": trade["legs"], "reason": "start-up check"}, [], trade_id=trade_id)
        _, attempt, halted = await self.repair.correct(intent_id, trade["strategy"], requests, outcomes)
        legs = [{**leg, "base_qty": dstr(o.filled)} for leg, o in zip(trade["legs"], outcomes)]
        change: TradeChange
        if all(o.filled == 0 for o in outcomes):
            change = TradeChange("close", trade_id)
        else:
            change = TradeChange("resize", trade_id, tuple(legs))
        label = "halted" if halted else "rebalanced"
        await desk.journal.finish_intent(intent_id, label, change)
        self.book.apply(change)
        log.warning("trade %s rebalanced at start-up: %s after %d corrective order(s)", trade_id, label, attempt)
        return label
