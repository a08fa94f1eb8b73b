"""Margin safety vocabulary shared by the venues' parsers, the simulator and the risk rules (pure, Decimal).

A leg's margin figures as a venue states them: liquidation price, maintenance margin, the venue's
margin ratio and its ADL rank, plus the one figure perpbot derives itself, the distance from the
mark to the liquidation price in percent. Every number is exact: the distance is quantised to
`DISTANCE_QUANTUM` (rounded toward liquidation, so it never looks safer than it is), the same on
both sides of a wire, so the simulator's own figure and the bot's are equal to the digit.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

# Percent to 4 decimals (0.0001 % = 1 micro-unit of distance): ample for every threshold.
DISTANCE_QUANTUM = Decimal("0.0001")
HUNDRED = Decimal(100)


def liquidation_distance_pct(size: Decimal, mark: Decimal, liquidation_price: Decimal | None) -> Decimal | None:
    """How far the mark may move against the leg before it is liquidated, in percent of the mark.

    A long is liquidated when the mark falls to the liquidation price, a short when it rises to it;
    0 when the mark is already past it. None without a position, a mark or a liquidation price (a
    leg that cannot be liquidated, such as a long with more collateral than its notional)."""
    if not size or liquidation_price is None or liquidation_price <= 0 or mark <= 0:
        return None
    gap = (mark - liquidation_price) if size > 0 else (liquidation_price - mark)
    if gap <= 0:
        return Decimal(0).quantize(DISTANCE_QUANTUM)
    return (gap * HUNDRED / mark).quantize(DISTANCE_QUANTUM, rounding=ROUND_FLOOR)


@dataclass(frozen=True, slots=True)
class LegMargin:
    """One leg's margin state at one venue, as the venue reported it (push or REST) at `ts_ms`.

    `margin_ratio` is the venue's own account figure in its own convention (OKX mgnRatio: equity
    over maintenance, higher is safer; Binance and Bybit: maintenance over equity, lower is safer)
    and is shown, never compared across venues; the risk rules use `distance_pct`.
    `adl_rank` is the venue's auto-deleveraging queue position (OKX 0-5, Bybit 0-5, Binance
    adlQuantile 0-4; higher goes first), None where the venue gives none (Hyperliquid).
    """

    venue: str
    symbol: str
    size: Decimal  # signed base units
    mark: Decimal | None
    liquidation_price: Decimal | None
    maintenance_margin: Decimal | None
    margin_ratio: Decimal | None
    adl_rank: int | None
    margin_mode: str | None  # cross / isolated, as the venue says
    leverage: Decimal | None
    ts_ms: int
    source: str = "stream"  # stream / rest

    @property
    def distance_pct(self) -> Decimal | None:
        if self.mark is None:
            return None
        return liquidation_distance_pct(self.size, self.mark, self.liquidation_price)


__all__ = ["DISTANCE_QUANTUM", "LegMargin", "liquidation_distance_pct"]
