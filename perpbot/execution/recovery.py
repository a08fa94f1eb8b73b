"""Start-up recovery: load the journal, reconcile with every venue (the venues of interrupted trades
first, the others concurrently with their writes after the repair), repair interrupted intents,
check open trades against the venues, choose the trading state, then sync funding history beside
trading."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from perpbot.control.views import journal_fill
from perpbot.execution.desk import STARTING_REASON, Desk, publish
from perpbot.execution.interrupted import StartupRepair
from perpbot.execution.reconciler import Reconcile, Reconciler
from perpbot.execution.states import TradingStates

log = logging.getLogger("perpbot.execution.engine")

DAY_S = 86400


class Recovery:
    def __init__(self, desk: Desk, reconciler: Reconciler, repair: StartupRepair, states: TradingStates,
                 reconcile: Reconcile) -> None:
        self.desk = desk
        self.reconciler = reconciler
        self.repair = repair
        self.states = states
        self.reconcile = reconcile  # the engine's (observable) reconcile
        self.startup_funding: asyncio.Task[None] | None = None

    async def start(self) -> dict[str, Any]:
        """Load the journal, reconcile with every venue, and only then trade."""
        desk = self.desk
        await self.load_journal()
        last = await desk.journal.state_changes(1)
        report = await self._reconcile_and_repair()
        async with desk.trade_lock:
            report["trades_checked"] = await self.repair.check_trades_against_venues()
        await self._choose_state(last[0] if last else None)
        publish(desk)
        desk.funding_synced_at = desk.clock()
        self.startup_funding = asyncio.create_task(self._funding_history(), name="startup-funding-history")
        return report

    async def load_journal(self) -> None:
        """Positions, the last day's fills, funding payments (and each venue's funding cursor), open trades."""
        desk = self.desk
        journal, portfolio = desk.journal, desk.portfolio
        for row in await journal.positions():
            portfolio.set_position(row["venue"], row["symbol"], row["size"], row["entry_price"], row["realized_pnl"])
        for fill in await journal.fills_since(desk.clock() - DAY_S):
            portfolio.restore_fill(journal_fill(fill))
        day_ago = desk.clock() - DAY_S
        for payment in await journal.funding_since(0):
            portfolio.restore_funding(payment["venue"], payment["symbol"], payment["amount"], payment["ts"],
                                      recent=payment["ts"] >= day_ago)
            venue_ms = int(payment["ts"] * 1000)
            desk.funding_cursor_ms[payment["venue"]] = max(desk.funding_cursor_ms.get(payment["venue"], 0), venue_ms)
        for trade in await journal.open_trades():
            desk.open_trades[trade["trade_id"]] = dict(trade)

    async def _urgent_venues(self) -> set[str]:
        """Venues of intents a crash cut short: reconciled (and repaired) first."""
        intents = await self.desk.journal.intents_with_status("sending")
        return {str(leg.get("venue")) for intent in intents
                for leg in (intent["decision"].get("legs") or []) if isinstance(leg, dict)} & set(self.desk.clients)

    async def _reconcile_and_repair(self) -> dict[str, Any]:
        """A leg a crash left naked is repaired first: the venues of interrupted trades are reconciled
        first (all at once), then repaired while the other venues reconcile; funding history (heavy
        reads, ~1 s a venue) is synced only after the trading state is set, beside trading.
        Under the trade lock, as periodic(): a background instrument refresh waits for it."""
        desk = self.desk
        urgent = await self._urgent_venues()
        others = [v for v in desk.clients if v not in urgent]
        repaired = asyncio.Event()  # the other venues' reads run beside the repair, their writes after it
        later: asyncio.Task[dict[str, Any]] | None = (asyncio.create_task(self.reconcile(venues_only=others, writes_after=repaired),
                                     name="start-up-reconcile") if urgent and others else None)
        try:
            async with desk.trade_lock:
                report = await self.reconcile(venues_only=urgent if later is not None else None)
            for change in report["changed"]:
                log.warning("start-up reconciliation changed %s", change)
            report["repaired"] = await self.repair.repair_interrupted()
            repaired.set()
            if later is not None:
                rest = await later
                for change in rest["changed"]:
                    log.warning("start-up reconciliation changed %s", change)
                report["changed"] += rest["changed"]
                report["errors"].update(rest["errors"])
                report["venues"] = dict(desk.reconciled)
        finally:
            if later is not None and not later.done():
                later.cancel()
        return report

    async def _choose_state(self, last: Any) -> None:
        """ACTIVE once every venue is reconciled, unless the last run ended HALTED or paused by the
        operator (restored); PAUSED while a venue is not reconciled; HALTED stays HALTED."""
        desk = self.desk
        enabled = list(desk.clients)
        set_state = self.states.set_state
        if not enabled:
            await set_state("PAUSED", f"{STARTING_REASON} (no tradeable venue)", "recovery")
        elif desk.state == "HALTED":
            pass  # the start-up check found what nothing explains: the reason is in the audit trail
        elif all(desk.reconciled.get(v) for v in enabled):
            if last and last["to"] == "HALTED":
                await set_state("HALTED", f"restored after restart: {last['reason']}", "recovery")
            elif last and last["to"] == "PAUSED" and last["actor"] == "operator":
                await set_state("PAUSED", f"restored after restart: {last['reason']}", "recovery")
            else:
                await set_state("ACTIVE", "reconciled with every venue", "recovery")
        else:
            failed = [v for v in enabled if not desk.reconciled.get(v)]
            await set_state("PAUSED", f"{STARTING_REASON} (failed: {', '.join(failed)})", "recovery")

    async def _funding_history(self) -> None:
        venues = list(self.desk.clients.items())
        results = await asyncio.gather(
            *(self.reconciler.sync_funding(v, c, self.desk.trade_lock) for v, c in venues), return_exceptions=True)
        for (venue, _), result in zip(venues, results):
            if isinstance(result, BaseException):
                log.error("start-up funding history of %s failed: %s", venue,
                          getattr(result, "message", None) or repr(result))
