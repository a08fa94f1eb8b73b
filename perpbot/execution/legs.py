"""Pure two-leg policy: from what each leg has done, decide the next step until the legs match.

Quantities are base-asset Decimals, counted in each leg's own direction (a leg that was
meant to buy 0.1 BTC and bought 0.04 has `filled` 0.04). Nothing here does I/O; the engine
carries out the returned action and asks again with the updated outcomes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class LegOutcome:
    requested: Decimal
    filled: Decimal = Decimal(0)
    rejected: bool = False  # the venue refused definitively (margin, params): retrying it is futile
    unknown: bool = False  # the outcome could not be established yet

    def add(self, qty: Decimal, *, rejected: bool = False, unknown: bool = False) -> "LegOutcome":
        return replace(self, filled=self.filled + qty, rejected=rejected, unknown=unknown)


@dataclass(frozen=True, slots=True)
class Done:
    hedged: Decimal  # base quantity held on both legs
    residual: Decimal  # leg0 - leg1 left within the dust tolerance
    # An exit stopped with the legs unequal because a leg's position is in doubt (its reduce-only order
    # refused): the venue's statement decides what is left (perpbot.execution.doubts), not a repair.
    awaiting: bool = False


@dataclass(frozen=True, slots=True)
class Hedge:
    """Buy/sell more on leg `leg`, in that leg's direction, to match the other leg."""

    leg: int
    qty: Decimal


@dataclass(frozen=True, slots=True)
class Unwind:
    """Reduce-only order against leg `leg` for the quantity the other leg lacks."""

    leg: int
    qty: Decimal


@dataclass(frozen=True, slots=True)
class Resolve:
    """Query the venue for the legs whose outcome is unknown before deciding anything."""

    legs: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Halt:
    reason: str


Action = Done | Hedge | Unwind | Resolve | Halt


def decide(
    leg0: LegOutcome, leg1: LegOutcome, attempt: int, max_retries: int, dust: Decimal = Decimal(0),
    target: Decimal = Decimal(0),
) -> Action:
    """The next step for a two-leg trade after `attempt` corrective orders.

    Rules, in order:
    1. an unknown leg is resolved by query first (never re-sent); unresolved past the cap -> HALT;
    2. legs equal within `dust` -> done;
    3. past `max_retries` corrective attempts -> HALT (a naked leg is never left silently);
    4. the lagging leg was rejected definitively, or hedging already had its chances
       (all attempts but the last) -> unwind the excess of the leading leg;
    5. otherwise hedge the difference on the lagging leg's venue.

    `target` is the difference leg0 - leg1 the legs should end with: 0 for an entry; for an exit
    of a trade whose legs hold different sizes (a sub-lot residue), the difference of the two
    sizes, so both legs end flat instead of the policy chasing the residue.
    """
    legs = (leg0, leg1)
    unknown = tuple(i for i, leg in enumerate(legs) if leg.unknown)
    if unknown:
        if attempt >= max_retries:
            return Halt(f"outcome of leg(s) {list(unknown)} still unknown after {attempt} attempts")
        return Resolve(unknown)
    diff = leg0.filled - leg1.filled - target
    if abs(diff) <= dust:
        return Done(hedged=min(leg0.filled, leg1.filled), residual=diff)
    if attempt >= max_retries:
        return Halt(
            f"legs unequal after {attempt} corrective attempts: leg0 {leg0.filled} vs leg1 {leg1.filled}"
        )
    lead, lag = (0, 1) if diff > 0 else (1, 0)
    hedge_attempts = max(1, max_retries - 1)
    if legs[lag].rejected or attempt >= hedge_attempts:
        return Unwind(lead, abs(diff))
    return Hedge(lag, abs(diff))


def on_other_leg(action: Hedge | Unwind) -> Hedge | Unwind:
    """The same correction made on the other venue: hedging the lagging leg and unwinding the
    leading one both close the gap. Used when the chosen venue cannot trade the quantity (below
    its lot or minimum) but the other venue's finer lot can: a residue is never left naked
    while one venue could still take it off."""
    if isinstance(action, Hedge):
        return Unwind(1 - action.leg, action.qty)
    return Hedge(1 - action.leg, action.qty)
