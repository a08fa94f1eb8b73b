"""The open trades' shapes: what an intent did to its trade (open, resize, close), the in-memory
mirror of each journalled change, and the residues (a leg held beyond its trade's other leg, no
venue could trade) counted as unhedged exposure."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from perpbot.core.decisions import Decision
from perpbot.core.orders import OrderRequest
from perpbot.execution.desk import ZERO, Desk, Key, mark
from perpbot.execution.legs import LegOutcome
from perpbot.journal.sqlite import TradeChange
from perpbot.portfolio.book import dstr

log = logging.getLogger("perpbot.execution.engine")


def residues_of(open_trades: dict[str, dict[str, Any]]) -> dict[Key, Decimal]:
    """Base quantity held on a leg beyond its trade's other leg, per venue/symbol of the larger leg.
    Each venue/symbol belongs to one trade at most."""
    out: dict[Key, Decimal] = {}
    for trade in open_trades.values():
        legs = trade["legs"]
        if len(legs) != 2:
            continue
        sizes = [Decimal(leg["base_qty"]) for leg in legs]
        if sizes[0] == sizes[1]:
            continue
        larger = legs[0] if sizes[0] > sizes[1] else legs[1]
        out[(larger["venue"], larger["symbol"])] = abs(sizes[0] - sizes[1])
    return out


def shrunk_legs(trade: dict[str, Any], closed: dict[Key, Decimal]) -> list[dict[str, Any]]:
    """The trade's legs, each smaller by what `closed` closed on its venue/symbol (never below 0)."""
    legs = []
    for leg in trade["legs"]:
        remaining = Decimal(leg["base_qty"]) - closed.get((leg["venue"], leg["symbol"]), ZERO)
        if remaining < 0:
            log.error("trade %s: %s %s closed %s beyond its size %s", trade["trade_id"], leg["venue"],
                      leg["symbol"], -remaining, leg["base_qty"])
            remaining = ZERO
        legs.append({**leg, "base_qty": dstr(remaining)})
    return legs


def resize_or_close(trade_id: str, legs: list[dict[str, Any]]) -> TradeChange:
    """A close when every leg is flat, else a resize to `legs`."""
    if all(Decimal(leg["base_qty"]) == 0 for leg in legs):
        return TradeChange("close", trade_id)
    return TradeChange("resize", trade_id, tuple(legs))


class TradeBook:
    def __init__(self, desk: Desk) -> None:
        self.desk = desk

    def residues(self) -> dict[Key, Decimal]:
        return residues_of(self.desk.open_trades)

    def residue_usdt(self) -> Decimal:
        total = ZERO
        for (venue, symbol), qty in self.residues().items():
            price = mark(self.desk, venue, symbol)
            if price is None:
                leg = next((leg for t in self.desk.open_trades.values() for leg in t["legs"]
                            if (leg["venue"], leg["symbol"]) == (venue, symbol)), None)
                price = Decimal(leg.get("ref_price") or "0") if leg else ZERO
            total += qty * price
        return total

    def accrue_residue(self) -> None:
        """Residues count against the unhedged budget for as long as they are held: the notional held since
        the last call (it changes only where this is called: a trade's change, a periodic pass) times the
        time since, so a residue that appears now is not charged for the time before it."""
        desk = self.desk
        now = desk.clock()
        since, desk.residue_accrued_at = desk.residue_accrued_at, now
        held, notional = desk.residue_notional, self.residue_usdt()
        desk.residue_notional = notional
        if since is not None and held > 0:
            desk.unhedged_usdt_seconds += held * Decimal(str(round(now - since, 3)))
        desk.metrics.unhedged_notional.set(float(notional))
        desk.metrics.unhedged_usdt_seconds.set(float(desk.unhedged_usdt_seconds))

    def trade_change(self, decision: Decision, intent_id: str, requests: list[OrderRequest],
                     outcomes: list[LegOutcome]) -> TradeChange | None:
        """What the intent did to its trade, from what each leg finally did: an entry opens a trade
        holding each leg's own fill; an exit shrinks each leg by what it closed (a partial exit
        is a resize, journalled like the rest), or closes the trade when both legs are flat."""
        filled = [o.filled for o in outcomes]
        if all(f == 0 for f in filled):
            return None
        if decision.action == "open":
            refs = {(leg.venue, leg.symbol): leg.ref_price for leg in decision.legs}
            # Entry prices and edge travel with the legs so exits (and restarts) can judge convergence.
            legs = tuple({"venue": r.venue, "symbol": r.symbol, "side": r.side, "base_qty": dstr(f),
                          "ref_price": str(refs.get((r.venue, r.symbol), "0")),
                          "entry_edge_bps": str(decision.edge_bps)}
                         for r, f in zip(requests, filled))
            return TradeChange("open", intent_id, legs, intent_id=intent_id, strategy=decision.strategy,
                               base=decision.base)
        trade = self.desk.open_trades.get(decision.trade_id) if decision.trade_id else None
        if trade is None:
            return None
        closed = {(r.venue, r.symbol): f for r, f in zip(requests, filled)}
        return resize_or_close(trade["trade_id"], shrunk_legs(trade, closed))

    def apply(self, change: TradeChange | None, decision: Decision | None = None) -> None:
        """The in-memory mirror of a journalled change (written back, so readers see a new version)."""
        if change is None:
            return
        trades = self.desk.open_trades
        if change.kind == "open":
            edge = str(decision.edge_bps) if decision is not None else change.legs[0].get("entry_edge_bps", "0")
            trades[change.trade_id] = {"trade_id": change.trade_id, "strategy": change.strategy,
                                       "base": change.base, "legs": [dict(leg) for leg in change.legs],
                                       "opened_ts": self.desk.clock(), "entry_edge_bps": edge}
        elif change.kind == "close":
            trades.pop(change.trade_id, None)
        elif change.trade_id in trades:
            trade = dict(trades[change.trade_id])
            trade["legs"] = [dict(leg) for leg in change.legs]
            trades[change.trade_id] = trade
        self.accrue_residue()  # the residue held until now is charged, the new one from now on
        residue = self.residues()
        if residue:
            log.warning("unhedged residue held: %s", {f"{v} {s}": dstr(q) for (v, s), q in residue.items()})
