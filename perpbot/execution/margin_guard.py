"""The margin watch: a trade with a leg closer to liquidation than risk.liquidation_reduce_pct is reduced,
both legs together, never one alone; a trade one of whose legs the venue closed itself (a liquidation,
an ADL) has its other leg closed at once.

Every risk.margin_check_interval_s it reads each open trade's legs against the liquidation price the
venues stated (perpbot.risk.margin.legs_below, from the live mark) and hands the engine one close
decision per trade in danger: both legs at risk.liquidation_reduce_fraction of the trade's size (on the
legs' common lot grid; the whole trade when that rounds to nothing or the leg is below the critical
distance). The statements must match the positions held: after a reduction the venue's new figures are
awaited (pushed, or read by the reconciliation it asks for) before the trade is judged again.

A leg the venue closed shows as a position (reconciled from the venue) smaller than the trade's leg while
no order of ours is in flight there: every leg of that trade still held is flattened reduce-only (the
operator commands' flatten) and the trade, flat on both venues, is closed. A leg whose position is in doubt
(perpbot.execution.doubts: a refused reduce-only order, a forced close not yet stated) waits for the venue's
statement, which each pass books when it was pushed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from perpbot.core.decisions import Decision, Leg
from perpbot.core.numbers import scaled_to_decimal
from perpbot.core.orders import Side, VenuePosition
from perpbot.execution.client_ids import new_intent_id
from perpbot.execution.commands import OperatorCommands, flat_trades
from perpbot.execution.desk import Desk
from perpbot.execution.doubts import PUSH_WAIT_S, ask_for_stale_doubts
from perpbot.execution.periodic import every
from perpbot.execution.states import TradingStates
from perpbot.risk.gate import RiskGate
from perpbot.risk.margin import legs_below

log = logging.getLogger("perpbot.execution.margin")
ZERO = Decimal(0)
Key = tuple[str, str]
STATEMENT_ASK_S = 5.0  # a venue's figures are asked for again (a reconciliation) at most this often
NAKED_GRACE_S = 5.0  # a leg short of its trade without a pushed liquidation/ADL is acted on after this long


class MarginGuard:
    def __init__(self, desk: Desk, states: TradingStates,
                 on_decisions: Callable[[list[Decision]], Awaitable[Any]], commands: OperatorCommands) -> None:
        self.desk = desk
        self.states = states
        self.on_decisions = on_decisions
        self.commands = commands
        self.naked_closes = 0  # legs flattened after the venue closed their partner
        self.reductions = 0  # close decisions handed to the engine
        self._asked_at = float("-inf")
        self._doubts_asked_at = float("-inf")
        self._suspects: dict[str, float] = {}  # trade id -> when a leg was first seen short of the trade

    def due(self) -> list[Decision]:
        """One close decision per open trade with a leg (as currently held) below the reduce distance."""
        desk = self.desk
        risk = desk.settings.risk
        ctx = self.states.risk_context()
        below = dict(legs_below(ctx, risk.liquidation_reduce_pct))
        if not below:
            return []
        decisions = []
        for trade_id, trade in desk.open_trades.items():
            legs = trade.get("legs") or []
            if len(legs) != 2:
                continue
            keys = [(leg["venue"], leg["symbol"]) for leg in legs]
            near = [(key, below[key]) for key in keys if key in below and self._current(key)]
            if not near:
                continue
            closest = min(distance for _, distance in near)
            whole = closest < risk.liquidation_critical_pct
            decision = self._reduction(trade_id, trade, keys, whole, closest)
            if decision is not None:
                decisions.append(decision)
        return decisions

    def _current(self, key: Key) -> bool:
        """The venue's statement is about the position held now (not one from before a fill)."""
        statement = self.desk.portfolio.margins.get(key)
        position = self.desk.portfolio.positions.get(key)
        return statement is not None and position is not None and statement.size == position.size

    def _reduction(self, trade_id: str, trade: dict[str, Any], keys: list[Key], whole: bool,
                   distance: Decimal) -> Decision | None:
        desk = self.desk
        legs = trade["legs"]
        sizes = [Decimal(leg["base_qty"]) for leg in legs]
        instruments = [desk.instruments.get(key) for key in keys]
        if None in instruments or min(sizes) <= 0:
            return None
        qty = min(sizes)
        if not whole:
            fraction = desk.settings.risk.liquidation_reduce_fraction
            part = RiskGate.common_qty(instruments[0], instruments[1], qty * fraction)  # type: ignore[arg-type]
            qty = part if part > 0 else qty
        closing = []
        for leg, key in zip(legs, keys):
            side: Side = "sell" if leg["side"] == "buy" else "buy"
            closing.append(Leg(key[0], key[1], side, qty if qty < min(sizes) else Decimal(leg["base_qty"]),
                               self._price(key, side)))
        what = "close" if qty >= min(sizes) else f"reduce by {qty}"
        return Decision(
            strategy=str(trade.get("strategy") or "margin"), action="close", base=str(trade.get("base") or ""),
            legs=(closing[0], closing[1]), edge_bps=ZERO, edge_usdt=ZERO, trade_id=trade_id,
            reason=f"margin: a leg {distance}% from liquidation (< {desk.settings.risk.liquidation_reduce_pct}%): "
                   f"{what}, both legs",
        )

    def _price(self, key: Key, side: str) -> Decimal:
        """The touch the closing order takes (best ask to buy back, best bid to sell), else the mark."""
        book = self.desk.store.get(*key)
        if book is not None:
            touch = book.best_ask() if side == "buy" else book.best_bid()
            if touch is not None:
                return scaled_to_decimal(touch)
        return self.desk.portfolio.marks.get(key) or self.desk.portfolio.margins[key].mark or ZERO

    def _ask_statements(self) -> None:
        """A held leg without a current statement (a venue that pushes none, such as Binance, or a fill since)
        brings the reconciliation forward, which reads every venue's positions over REST; at most every
        STATEMENT_ASK_S."""
        desk = self.desk
        confirmations = desk.confirmations
        if confirmations is None:
            return
        stale = [key for key, position in desk.portfolio.positions.items()
                 if position.size and not self._current(key) and self._plausible(key[0])]
        now = desk.clock()
        if stale and now - self._asked_at >= STATEMENT_ASK_S:
            self._asked_at = now
            confirmations.reconcile_soon.set()

    def broken(self) -> list[str]:
        """Open trades with a leg the venue holds less of than the trade, while no order of ours is in flight
        on their venues and symbols: at once when the venue pushed a liquidation or ADL there
        (`desk.forced_closes`), else once the difference has lasted NAKED_GRACE_S (a venue without a stream,
        or a close it did not announce), so a difference a reconciliation is still settling is left to it."""
        desk = self.desk
        busy = {(o.get("venue"), o.get("symbol")) for o in desk.in_flight.values()}
        now = desk.clock()
        found = []
        seen: set[str] = set()
        for trade_id, trade in desk.open_trades.items():
            legs = trade.get("legs") or []
            keys = [(leg["venue"], leg["symbol"]) for leg in legs]
            if len(legs) != 2 or any(key in busy for key in keys):
                continue
            held = [desk.portfolio.positions.get(key) for key in keys]
            sizes = [abs(p.size) if p is not None else ZERO for p in held]
            wanted = [Decimal(leg["base_qty"]) for leg in legs]
            if not (any(size < want for size, want in zip(sizes, wanted)) and any(sizes)):
                continue
            seen.add(trade_id)
            since = self._suspects.setdefault(trade_id, now)
            announced = any(key in desk.forced_closes or (key[0], None) in desk.forced_closes for key in keys)
            if announced or now - since >= NAKED_GRACE_S:
                found.append(trade_id)
        self._suspects = {t: s for t, s in self._suspects.items() if t in seen}
        return found

    async def close_broken(self) -> list[dict[str, Any]]:
        """Flatten what is left of every broken trade (the naked partner of a leg the venue closed)."""
        desk = self.desk
        results: list[dict[str, Any]] = []
        if not self.broken():
            return results
        async with desk.trade_lock:
            for trade_id in self.broken():  # again under the lock: a trade may have moved meanwhile
                trade = desk.open_trades[trade_id]
                intent_id = new_intent_id()
                for number, leg in enumerate(trade["legs"]):
                    key = (leg["venue"], leg["symbol"])
                    position = desk.portfolio.positions.get(key)
                    client = desk.clients.get(key[0])
                    if position is None or not position.size or client is None or key in desk.doubted:
                        continue  # (in doubt: flattened once the venue has said what it holds)
                    log.warning("margin watch: trade %s lost a leg to its venue; closing %s %s %s", trade_id,
                                key[0], key[1], position.size)
                    held = VenuePosition(key[0], key[1], position.size, position.entry_price,
                                         desk.portfolio.marks.get(key))
                    results.append(await self.commands.flatten(client, held, intent_id, number))
                    self.naked_closes += 1
            await self.commands.reconcile()
            await self.commands.close_flat_trades("the margin watch: a leg closed by its venue, the other flattened")
            desk.forced_closes.clear()
        return results

    async def close_gone(self) -> None:
        """Close the trades the venues hold nothing of any more (both legs closed by the venues, or an exit
        whose refused leg the venue turned out to have closed itself): else exits would be sent for them
        forever."""
        desk = self.desk
        if not flat_trades(desk):
            return
        async with desk.trade_lock:
            await self.commands.close_flat_trades("the margin watch: the venues hold none of its legs")

    def _plausible(self, venue: str) -> bool:
        """Could a leg on `venue` come near the entry minimum at all? Its equity over its gross notional is
        under twice risk.liquidation_entry_min_pct (a lightly used account is not read over REST for
        figures that cannot matter: the trading path stays free of reads)."""
        desk = self.desk
        balance = desk.portfolio.balances.get(venue)
        gross = ZERO
        for (held_venue, symbol), position in desk.portfolio.positions.items():
            if held_venue != venue or not position.size:
                continue
            mark = desk.portfolio.marks.get((venue, symbol)) or position.entry_price
            if not mark:
                return True  # no price to judge by: ask
            gross += abs(position.size) * mark
        if balance is None or gross <= 0:
            return gross > 0
        return balance.equity * 100 / gross < 2 * desk.settings.risk.liquidation_entry_min_pct

    async def check(self) -> list[dict[str, Any]]:
        """Close what venues left naked; hand the trades in danger to the engine (both legs each); ask the
        venues' figures again after."""
        self._ask_statements()
        if self.desk.confirmations is not None:
            await self.desk.confirmations.settle_doubts()  # positions pushed since an order ended there
            if self.desk.clock() - self._doubts_asked_at >= PUSH_WAIT_S and ask_for_stale_doubts(self.desk):
                self._doubts_asked_at = self.desk.clock()
        await self.close_broken()
        await self.close_gone()
        decisions = self.due()
        if not decisions:
            return []
        for decision in decisions:
            log.warning("margin watch: trade %s: %s", decision.trade_id, decision.reason)
        self.reductions += len(decisions)
        reports = list(await self.on_decisions(decisions) or [])
        confirmations = self.desk.confirmations
        if confirmations is not None:
            confirmations.reconcile_soon.set()  # REST-only figures (Binance) are read again at once
        return reports

    async def run(self) -> None:
        """Until the desk stops: a check every risk.margin_check_interval_s (none while PAUSED)."""
        await every(self.desk, self.desk.settings.risk.margin_check_interval_s, self.check, "margin watch")


__all__ = ["MarginGuard"]
