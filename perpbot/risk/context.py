"""RiskContext: the snapshot of account and market facts the risk rules read (built by the engine)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from perpbot.core.decisions import Refusal

from perpbot.book.store import BookStore
from perpbot.core.instruments import Instrument
from perpbot.core.margin import LegMargin
from perpbot.core.quote_rate import QuoteRate
from perpbot.risk.states import TradingState

Key = tuple[str, str]


class OrderBudget(Protocol):
    """What the risk gate asks of the venues' request budget (perpbot.execution.rate_budget.RateBudget):
    may `count` orders leave on `venue` now, keeping `reserve` more possible? Asking charges nothing."""

    def try_order(self, venue: str, count: int = 1, reserve: int = 0, now: float | None = None) -> Refusal | None: ...


@dataclass
class RiskContext:
    """Everything the gate needs, in exact units.

    positions: signed base quantity per (venue, symbol) (+ long, - short).
    mark_prices: mark price per (venue, symbol); a missing mark falls back to the order's price.
    recent_order_times: unix times of orders approved recently; the gate appends the orders it
      approves (so a burst of approvals cannot outrun the per-minute limit) and trims entries
      older than a minute. The engine must not append them a second time.
    unhedged_usdt_seconds: unhedged notional x seconds accumulated today.
    leverage: the leverage set per venue (margin = notional / leverage; missing = 1).
    """

    state: TradingState
    now: float
    equity_usdt: dict[str, Decimal]
    used_margin_usdt: dict[str, Decimal]
    positions: dict[Key, Decimal]
    mark_prices: dict[Key, Decimal]
    open_trades: int
    daily_pnl_usdt: Decimal
    recent_order_times: deque[float]
    unhedged_usdt_seconds: Decimal
    venue_connected: dict[str, bool]
    store: BookStore
    instruments: dict[Key, Instrument]
    leverage: dict[str, Decimal] = field(default_factory=dict)
    # Venues whose private stream (orders, fills, positions pushed) is configured but not live.
    private_streams_down: frozenset[str] = frozenset()
    # Each leg's margin state as its venue stated it (liquidation price, maintenance margin): perpbot.risk.margin.
    margins: dict[Key, LegMargin] = field(default_factory=dict)
    # USDT per USDC with its age (perpbot.core.quote_rate); None: no rate, USDC/USDT pairs refused.
    quote_rate: QuoteRate | None = None
    # Venues the account preflight keeps out of trading (venue -> reason): no entry there.
    venues_blocked: dict[str, str] = field(default_factory=dict)
    # Venues that refused an entry for margin the gate's view allowed: no entry there until their balance is
    # read again (perpbot.execution.doubts.doubt_margin).
    margin_doubted: frozenset[str] = frozenset()
