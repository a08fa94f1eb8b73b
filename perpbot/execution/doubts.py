"""Positions in doubt: when the local position of a venue/symbol may not be the venue's, no order goes there
until the venue has said what it holds.

A doubt starts when the venue refuses a reduce-only order of ours for the position it holds (it holds less
than the bot thinks: retried blind, the exit is refused again and again, and a leg repair would re-open the
other leg of a trade the venue already closed), or when the venue pushes a liquidation or ADL of it. It ends when a statement the
venue made after that moment is booked:
- the reconciliation's REST read of the venue begun after it (perpbot.execution.reconciler), or
- the position the private stream pushed after it, taken when no order of ours is in flight there and no
  fill of ours was booked there since the push arrived (Confirmations.settle_doubts).
A venue's free margin is in doubt in the same way when it refuses an entry for margin that the bot's view of
its balance allowed (doubt_margin): no entry goes there until the reconciliation has read its balance again.
Pure bookkeeping over the Desk, apart from the journal write of a position a push corrected.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterable
from decimal import Decimal

from perpbot.core.decisions import Leg
from perpbot.execution.desk import ZERO, Desk, Key
from perpbot.execution.reconcile import PositionChange

log = logging.getLogger("perpbot.execution.engine")
PUSH_WAIT_S = 1.0  # a doubt the venue's push has not settled by then is asked of its REST reads

# How each venue says "this reduce-only order would not reduce your position" (../shared/fixtures/venue_errors.json
# and the venues' docs): the position is not what the bot thinks. Other refusals of a reduce-only order (margin,
# an IOC with nothing to match, a price band) leave the position as it was: the leg repair goes on as usual.
REDUCE_ONLY_REFUSALS: dict[str, tuple[str, ...]] = {
    "okx": ("51169", "51170", "51205"),  # no position / same direction / larger than the position
    "binance": ("-2022",),  # ReduceOnly Order is rejected.
    "bybit": ("110017",),  # Reduce-only rule not satisfied (also: current position is zero)
    "hyperliquid": ("Reduce only order would increase position",),
}


def is_reduce_only_refusal(venue: str, reason: str | None) -> bool:
    """The venue refused a reduce-only order because of the position it holds (any refusal, on a venue whose
    codes are not listed)."""
    markers = REDUCE_ONLY_REFUSALS.get(venue)
    if markers is None:
        return True
    return reason is not None and any(marker in reason for marker in markers)


def doubt(desk: Desk, venue: str, symbol: str, why: str, since: float | None = None) -> None:
    """Put a venue/symbol in doubt (`since`: when the cause was received, epoch s; now by default). An
    earlier doubt keeps its time: any statement made after the first cause settles both. A venue whose
    private stream is live states the position itself, within milliseconds as a rule: the reconciliation (REST
    reads, whose rate budget a burst of forced closes would spend) is asked only for a doubt that outlives
    PUSH_WAIT_S (ask_for_stale_doubts); without a live stream, at once."""
    key = (venue, symbol)
    when = time.time() if since is None else since
    if key in desk.doubted:
        desk.doubted[key] = min(desk.doubted[key], when)
    else:
        desk.doubted[key] = when
        log.warning("position %s %s in doubt (%s): no order there until the venue states what it holds",
                    venue, symbol, why)
    confirmations = desk.confirmations
    if confirmations is not None and not confirmations.is_live(venue):
        confirmations.reconcile_soon.set()


def ask_for_stale_doubts(desk: Desk, now: float | None = None) -> bool:
    """Bring the reconciliation forward for doubts no push has settled within PUSH_WAIT_S; True if asked."""
    now = time.time() if now is None else now
    confirmations = desk.confirmations
    if confirmations is None or not any(now - since >= PUSH_WAIT_S for since in desk.doubted.values()):
        return False
    confirmations.reconcile_soon.set()
    return True


def doubt_margin(desk: Desk, venue: str, why: str) -> None:
    """The venue refused an entry for margin the bot's view of it allowed: its balance as the bot knows it is
    stale (an equity read before a mark moved, collateral moved by hand). No entry goes there until the
    reconciliation has read its balance again (the risk gate's rule `margin_refused`)."""
    if venue not in desk.margin_doubted:
        log.warning("%s refused an entry for margin (%s): no entry there until its balance is read again", venue, why)
    desk.margin_doubted.setdefault(venue, time.time())
    if desk.confirmations is not None:
        desk.confirmations.reconcile_soon.set()


def doubted_leg(desk: Desk, legs: Iterable[Leg]) -> str | None:
    """'venue symbol' of the first leg whose position is in doubt, else None."""
    for leg in legs:
        if (leg.venue, leg.symbol) in desk.doubted:
            return f"{leg.venue} {leg.symbol}"
    return None


def settle_by_read(desk: Desk, venue: str, read_at: float, busy: Collection[Key]) -> None:
    """A reconciliation booked the venue's positions as read from `read_at` on: the doubts it answers end
    (a key it left alone, busy, keeps its doubt)."""
    desk.balance_read_at[venue] = max(read_at, desk.balance_read_at.get(venue, read_at))
    for key, since in list(desk.doubted.items()):
        if key[0] == venue and key not in busy and since <= read_at:
            del desk.doubted[key]
            log.info("position %s %s settled by the reconciliation", *key)
    if desk.margin_doubted.get(venue, read_at) < read_at:
        del desk.margin_doubted[venue]
        log.info("%s balance read again: entries there go through the gate as before", venue)


async def adopt_statement(desk: Desk, key: Key, size: Decimal, entry: Decimal | None, source: str) -> None:
    """The venue's stated position becomes the local one and the doubt on it ends. A correction is
    journalled, logged and kept in desk.pushed_corrections (as a reconciliation's position change)."""
    position = desk.portfolio.positions.get(key)
    held = position.size if position is not None else ZERO
    if held != size:
        kept_entry = position.entry_price if position is not None else ZERO
        new_entry = ZERO if not size else (entry if entry else kept_entry)
        desk.portfolio.set_position(key[0], key[1], size, new_entry)
        booked = desk.portfolio.positions[key]
        await desk.journal.save_position(key[0], key[1], booked.size, booked.entry_price, booked.realized_pnl)
        change = {**PositionChange(key[0], key[1], held, size, new_entry).as_dict(), "source": source}
        desk.pushed_corrections.append(change)
        log.warning("position %s %s: local %s -> %s as the venue %s", key[0], key[1], held, size, source)
    desk.doubted.pop(key, None)
