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
class LegExpectation:
    """What the strategy expected of one leg when it decided (perpbot.scanner.expectations): the best
    price on the book (`top_price`), the depth-weighted average price of the leg's size (`depth_price`),
    the taker fee rate it priced in, the funding rate per interval then in force and that interval, and
    the funding expected over the intended holding time (+ received, - paid; USDT)."""

    top_price: Decimal
    depth_price: Decimal
    fee_rate: Decimal
    funding_rate: Decimal
    funding_interval_s: Decimal
    expected_funding_usdt: Decimal


@dataclass(frozen=True, slots=True)
class Expectation:
    """The decision's expectations, one per leg (in leg order), and the holding time they assume."""

    legs: tuple[LegExpectation, LegExpectation]
    hold_s: Decimal


@dataclass(frozen=True, slots=True)
class Decision:
    """Open or close a two-leg trade. `trade_id` names the trade a close refers to; `expectation` is
    what the strategy expected of each leg (set by the scanner; None for decisions made elsewhere)."""

    strategy: str
    action: Literal["open", "close"]
    base: str  # underlying asset, e.g. "BTC"
    legs: tuple[Leg, Leg]
    edge_bps: Decimal
    edge_usdt: Decimal
    reason: str
    trade_id: str | None = None
    expectation: Expectation | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """The risk gate's no: which rule, and why (logged and counted by rule)."""

    rule: str
    detail: str
