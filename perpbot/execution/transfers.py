"""Internal transfers, when the user switches them on (risk.internal_transfers): a venue whose trading wallet is
short of its collateral target takes the shortfall from its own funding or spot wallet.

What is moved and when is pure (perpbot.portfolio.collateral.top_ups); each venue's request is data
(perpbot/venues/<venue>/transfers.py). This module is the I/O around them, with the rules that keep money safe:

* Nothing while the operator has the bot PAUSED or it is stopping.
* Only into a venue's trading wallet, from the same venue: never across venues, never out, never a withdrawal.
* At most risk.internal_transfer_max_usdt a time, at most once per risk.internal_transfer_interval_s per venue
  (counted from the last transfer in the audit trail, so a restart does not send again at once).
* Written to the audit trail (`BOT internal_transfer/<venue>`) before the request leaves, and again with its
  outcome. Sent once, never retried: a refusal (no funds there, say) waits out the interval; a transfer whose
  answer was lost is not sent again until the venue's balance has been read after it (the reconciliation's
  read shows whether it arrived, and the next decision is taken on that).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from perpbot.core import errors
from perpbot.core.transfers import TransferLink, cents
from perpbot.execution.desk import Desk, collateral
from perpbot.execution.periodic import every
from perpbot.portfolio.collateral import TopUp, top_ups

log = logging.getLogger(__name__)

CHECK_EVERY_S = 5.0  # how often the plan is looked at (each venue's own interval still applies)
DONE, REFUSED, UNKNOWN = "done", "refused", "unknown"

Audit = Callable[[str, dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class TransferRecord:
    venue: str
    transfer_id: str
    amount: Decimal  # in the venue's currency
    currency: str
    amount_usdt: Decimal
    outcome: str  # done, refused, unknown
    detail: str
    ts: float


class InternalTransfers:
    """Looks at the collateral plan every CHECK_EVERY_S and sends the top-ups it allows (see the module doc)."""

    def __init__(self, desk: Desk, clients: dict[str, Any], links: dict[str, TransferLink],
                 audit: Audit | None = None, clock: Callable[[], float] = time.time) -> None:
        self.desk = desk
        self.clients = clients  # the REST (ccxt) clients by venue: CcxtClient.transfer
        self.links = links
        self.audit = audit
        self.clock = clock
        self.last_at: dict[str, float] = {}  # venue -> when its last transfer was sent
        self.unknown_at: dict[str, float] = {}  # venue -> a transfer whose answer was lost, sent then
        self.history: list[TransferRecord] = []

    def restore(self, last_at: dict[str, float]) -> None:
        """The last transfer per venue as the audit trail has it (a restart keeps each venue's interval)."""
        for venue, ts in last_at.items():
            self.last_at[venue] = max(ts, self.last_at.get(venue, ts))

    # -- deciding ---------------------------------------------------------------------------------
    def ready(self, venue: str, now: float) -> str | None:
        """Why `venue` takes no transfer now, or None when it may."""
        desk = self.desk
        if venue not in self.links or venue not in self.clients:
            return "no internal transfer for this venue"
        if venue in desk.venues_blocked:
            return f"venue blocked: {desk.venues_blocked[venue]}"
        lost = self.unknown_at.get(venue)
        if lost is not None:
            if desk.balance_read_at.get(venue, 0.0) <= lost:
                return "the last transfer's outcome is unknown until the balance is read again"
            del self.unknown_at[venue]
        last = self.last_at.get(venue)
        interval = desk.settings.risk.internal_transfer_interval_s
        if last is not None and now - last < interval:
            return f"last transfer {now - last:.0f}s ago (< {interval:g}s)"
        if venue not in desk.portfolio.balances:
            return "balance not read yet"
        return None

    def due(self) -> list[TopUp]:
        desk = self.desk
        risk = desk.settings.risk
        if not risk.internal_transfers or desk.stopping or desk.state == "PAUSED":
            return []  # PAUSED: the operator's stop, nothing done on the bot's own (as the margin watch)
        now = self.clock()
        venues = [venue for venue in self.links if self.ready(venue, now) is None]
        if not venues:
            return []
        return top_ups(collateral(desk), venues, risk.collateral_min_transfer_usdt, risk.internal_transfer_max_usdt)

    # -- sending ----------------------------------------------------------------------------------
    async def check(self) -> list[TransferRecord]:
        return [await self.send(top_up) for top_up in self.due()]

    async def send(self, top_up: TopUp) -> TransferRecord:
        desk = self.desk
        venue = top_up.venue
        link = self.links[venue]
        portfolio = desk.portfolio
        # In the venue's currency: USDC at the USDC/USDT rate, down to the cent (never more than decided).
        rate = portfolio.usdc_usdt if venue in portfolio.usdc_venues else Decimal(1)
        amount = cents(top_up.amount_usdt / rate)
        transfer_id = uuid.uuid4().hex
        now = self.clock()
        self.last_at[venue] = now
        details = {"venue": venue, "amount": f"{amount} {link.currency}", "from": link.source,
                   "to": "trading wallet", "id": transfer_id}
        call = link.to_trading(amount, transfer_id)
        await self._audit({**details, "outcome": "sending"})  # written before the request leaves
        try:
            answer = await self.clients[venue].transfer(call)
            venue_id = link.venue_id(answer)
        except errors.UnknownOutcome as exc:
            self.unknown_at[venue] = now
            outcome, detail = UNKNOWN, f"answer lost ({exc.message}): not sent again until the balance is read"
        except (errors.VenueErrorBase, ValueError) as exc:
            outcome, detail = REFUSED, exc.message if isinstance(exc, errors.VenueErrorBase) else str(exc)
        else:
            outcome, detail = DONE, f"venue id {venue_id}"
            desk.metrics.internal_transfer_usdt.labels(venue).inc(float(top_up.amount_usdt))
            # The trading wallet's balance is read at once (the reconciliation), not left to the next pass.
            if desk.confirmations is not None:
                desk.confirmations.reconcile_soon.set()
        desk.metrics.internal_transfers.labels(venue, outcome).inc()
        record = TransferRecord(venue, transfer_id, amount, link.currency, top_up.amount_usdt, outcome, detail,
                                now)
        self.history.append(record)
        level = logging.WARNING if outcome == DONE else logging.ERROR
        log.log(level, "internal transfer %s: %s %s from the %s into the trading wallet: %s (%s)", venue, amount,
                link.currency, link.source, outcome, detail)
        await self._audit({**details, "outcome": f"{outcome}: {detail}"})
        return record

    async def _audit(self, details: dict[str, Any]) -> None:
        if self.audit is not None:
            await self.audit("internal_transfer", details)

    async def run(self) -> None:
        """Until the desk stops: a look every CHECK_EVERY_S (nothing at all while risk.internal_transfers is off)."""
        await every(self.desk, CHECK_EVERY_S, self.check, "internal transfer")


__all__ = ["DONE", "REFUSED", "UNKNOWN", "InternalTransfers", "TransferRecord"]
