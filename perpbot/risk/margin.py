"""Margin-safety risk rules (pure): each leg's distance to the liquidation price its venue states.

A leg's distance is measured from the live mark (the risk context's mark, else the mark the venue gave
with its figures) to the venue's liquidation price (perpbot.core.margin.liquidation_distance_pct).

* `rule_marks_known`: an entry on a venue where a held position has no mark is refused; such a
  position never counts as zero notional in the leverage and utilisation rules.
* `rule_liquidation_entry`: no entry that would leave a leg closer to liquidation than
  risk.liquidation_entry_min_pct. After the entry the venue's cross account must absorb a move of that
  size against every position it holds: (equity - maintenance margin) / gross notional, with the
  maintenance rate the venue stated for the leg (else risk.maintenance_margin_rate). A leg the venue
  already states closer than the minimum takes no more.
* `rule_liquidation_critical`: no entry at all while any leg is below risk.liquidation_critical_pct.
* `legs_below`: the legs under a threshold (the margin watch closes their trades, both legs together).
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal

from perpbot.core.decisions import Refusal
from perpbot.core.margin import DISTANCE_QUANTUM, LegMargin, liquidation_distance_pct
from perpbot.risk.context import Key, RiskContext

_ZERO = Decimal(0)
_HUNDRED = Decimal(100)


def leg_distance(margin: LegMargin, mark: Decimal | None) -> Decimal | None:
    """The leg's distance in % from `mark` (else the venue's own mark) to the venue's liquidation price."""
    price = mark if mark is not None else margin.mark
    if price is None:
        return None
    return liquidation_distance_pct(margin.size, price, margin.liquidation_price)


def legs_below(ctx: RiskContext, threshold_pct: Decimal) -> list[tuple[Key, Decimal]]:
    """(venue, symbol) and distance of every held leg closer to liquidation than `threshold_pct`, closest first."""
    found = []
    for key, margin in ctx.margins.items():
        if not ctx.positions.get(key):
            continue  # the venue's statement outlived the position (closed since): nothing to protect
        distance = leg_distance(margin, ctx.mark_prices.get(key))
        if distance is not None and distance < threshold_pct:
            found.append((key, distance))
    return sorted(found, key=lambda item: item[1])


def rule_marks_known(deltas: dict[Key, Decimal], ctx: RiskContext) -> Refusal | None:
    """Every position held on a venue the orders trade has a mark (a traded symbol may use the order's price)."""
    venues = {key[0] for key in deltas}
    for key, size in ctx.positions.items():
        if size and key[0] in venues and key not in deltas and key not in ctx.mark_prices:
            return Refusal("no_mark", f"{key[0]} {key[1]}: a held position without a mark price")
    return None


def rule_preflight(deltas: dict[Key, Decimal], ctx: RiskContext) -> Refusal | None:
    """No entry on a venue whose account preflight found what it could not fix (or has not run yet)."""
    for venue in sorted({key[0] for key in deltas}):
        reason = ctx.venues_blocked.get(venue)
        if reason is not None:
            return Refusal("preflight", f"{venue}: {reason}")
    return None


def rule_margin_refused(deltas: dict[Key, Decimal], ctx: RiskContext) -> Refusal | None:
    """No entry on a venue that refused one for margin the gate's view of its balance allowed, until that
    balance has been read again (the view was stale: the gate would let the venue refuse the next too)."""
    for venue in sorted({key[0] for key in deltas} & ctx.margin_doubted):
        return Refusal("margin_refused", f"{venue} refused an entry for margin: waiting for its balance to be read "
                                         f"again")
    return None


def rule_liquidation_critical(ctx: RiskContext, critical_pct: Decimal) -> Refusal | None:
    below = legs_below(ctx, critical_pct)
    if below:
        (venue, symbol), distance = below[0]
        return Refusal("liquidation_critical",
                       f"{venue} {symbol} is {distance}% from liquidation < {critical_pct}%: entries halted")
    return None


def _maintenance_rate(ctx: RiskContext, key: Key, default: Decimal) -> Decimal:
    margin = ctx.margins.get(key)
    mark = ctx.mark_prices.get(key) or (margin.mark if margin is not None else None)
    if margin is None or margin.maintenance_margin is None or not margin.size or not mark:
        return default
    return max(default, margin.maintenance_margin / (abs(margin.size) * mark))


def rule_liquidation_entry(
    deltas: dict[Key, Decimal], grosses: list[tuple[str, Decimal, Decimal]], ctx: RiskContext, min_pct: Decimal,
    default_maintenance_rate: Decimal,
) -> Refusal | None:
    """No leg the orders grow ends closer to liquidation than `min_pct` (see the module docstring)."""
    after_by_venue = {venue: after for venue, _, after in grosses}
    for key, delta in deltas.items():
        before = ctx.positions.get(key, _ZERO)
        if abs(before + delta) <= abs(before):
            continue  # shrinking a leg only moves it away from liquidation
        margin = ctx.margins.get(key)
        if margin is not None and margin.size:
            stated = leg_distance(margin, ctx.mark_prices.get(key))
            if stated is not None and stated < min_pct:
                return Refusal("liquidation_distance",
                               f"{key[0]} {key[1]} is already {stated}% from liquidation < {min_pct}%")
        gross = after_by_venue.get(key[0], _ZERO)
        if gross <= 0:
            continue
        equity = ctx.equity_usdt.get(key[0], _ZERO)
        rate = _maintenance_rate(ctx, key, default_maintenance_rate)
        room = ((equity - gross * rate) * _HUNDRED / gross).quantize(DISTANCE_QUANTUM, rounding=ROUND_FLOOR)
        if room < min_pct:
            return Refusal("liquidation_distance",
                           f"{key[0]} {key[1]} would be about {room}% from liquidation after the entry < {min_pct}%")
    return None


__all__ = ["leg_distance", "legs_below", "rule_liquidation_critical", "rule_liquidation_entry", "rule_marks_known"]
