"""What strategies decide (data, never venue calls) and what the risk gate answers."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from perpbot.core.orders import Side


@dataclass(frozen=True, slots=True)
class Leg:
    """One side of a hedged trade. `ref_price` is the depth-weighted worst price the size
    would reach on the book the strategy saw (the limit price is derived from it)."""

    venue: str
    symbol: str  # native
    side: Side
    base_qty: Decimal
    ref_price: Decimal


@dataclass(frozen=True, slots=True)
class Decision:
    """Open or close a two-leg trade. `trade_id` names the trade a close refers to."""

    strategy: str
    action: Literal["open", "close"]
    base: str  # underlying asset, e.g. "BTC"
    legs: tuple[Leg, Leg]
    edge_bps: Decimal
    edge_usdt: Decimal
    reason: str
    trade_id: str | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """The risk gate's no: which rule, and why (logged and counted by rule)."""

    rule: str
    detail: str
