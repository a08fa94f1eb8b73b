"""Portfolio: positions per venue and symbol, balances, PnL (realised, unrealised, fees, funding).

Pure and exact: every amount is a Decimal; sizes are signed base-asset quantities
(+ long, - short). Realised PnL is booked when a fill reduces or flips a position, at the
position's average entry. "Today" is the current UTC day.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from perpbot.core.orders import VenueBalance

ZERO = Decimal(0)
COST_GRID = Decimal("1e-12")
DAY_S = 86400.0


def dstr(value: Decimal | None) -> str | None:
    """Canonical decimal text for JSON: no exponent, no trailing zeros ("30000", "0.02")."""
    if value is None:
        return None
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


@dataclass(slots=True)
class Position:
    """`cost` is the entry notional of the open size (sum of price x qty, unsigned). Keeping it,
    rather than only the average price, makes realised PnL exact once a position is flat:
    the cost taken out by partial reductions always adds up to the cost put in."""

    venue: str
    symbol: str
    size: Decimal = ZERO  # signed base quantity
    entry_price: Decimal = ZERO
    realized_pnl: Decimal = ZERO  # lifetime, on this venue/symbol
    cost: Decimal = ZERO

    def reset(self, size: Decimal, entry_price: Decimal) -> None:
        self.size = size
        self.entry_price = entry_price if size else ZERO
        self.cost = abs(size) * self.entry_price

    def apply(self, signed_qty: Decimal, price: Decimal) -> Decimal:
        """Apply a fill (signed base qty) and return the PnL it realises."""
        if signed_qty == 0:
            return ZERO
        if self.size == 0 or (self.size > 0) == (signed_qty > 0):
            self.size += signed_qty
            self.cost += price * abs(signed_qty)
            self.entry_price = self.cost / abs(self.size)
            return ZERO
        closing = min(abs(signed_qty), abs(self.size))
        direction = 1 if self.size > 0 else -1
        # A partial share of the cost is snapped to 1e-12 so every later sum stays exact.
        cost_out = self.cost if closing == abs(self.size) else (self.cost * closing / abs(self.size)).quantize(COST_GRID)
        realized = (price * closing - cost_out) * direction
        self.size += signed_qty
        self.cost -= cost_out
        if self.size == 0:
            self.entry_price = ZERO
            self.cost = ZERO
        elif (self.size > 0) != (direction > 0):
            self.entry_price = price  # flipped: the remainder opened at this price
            self.cost = price * abs(self.size)
        self.realized_pnl += realized
        return realized


@dataclass(slots=True)
class FillRecord:
    venue: str
    symbol: str
    side: str
    base_qty: Decimal
    price: Decimal
    fee: Decimal
    realized_pnl: Decimal
    ts: float
    strategy: str | None = None
    client_order_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "venue": self.venue, "symbol": self.symbol, "side": self.side, "base_qty": dstr(self.base_qty),
            "price": dstr(self.price), "fee": dstr(self.fee), "realized_pnl": dstr(self.realized_pnl),
            "ts": self.ts, "strategy": self.strategy, "client_order_id": self.client_order_id,
        }


class Portfolio:
    def __init__(self, clock=time.time) -> None:
        self._clock = clock
        self.positions: dict[tuple[str, str], Position] = {}
        self.balances: dict[str, VenueBalance] = {}
        self.marks: dict[tuple[str, str], Decimal] = {}
        self.leverage: dict[tuple[str, str], Decimal] = {}
        self.fills: deque[FillRecord] = deque()  # last 24 h (and today), oldest first
        self.funding: deque[tuple[float, str, str, Decimal]] = deque()  # (ts, venue, symbol, amount)
        self.funding_totals: dict[tuple[str, str], Decimal] = {}  # lifetime, per venue and symbol

    # -- updates --------------------------------------------------------------------------
    def apply_fill(
        self, venue: str, symbol: str, side: str, base_qty: Decimal, price: Decimal, fee: Decimal,
        ts: float | None = None, strategy: str | None = None, client_order_id: str | None = None,
    ) -> FillRecord:
        if base_qty <= 0:
            raise ValueError(f"fill quantity must be positive, got {base_qty}")
        if side not in ("buy", "sell"):
            raise ValueError(f"bad side {side!r}")
        position = self.positions.setdefault((venue, symbol), Position(venue, symbol))
        realized = position.apply(base_qty if side == "buy" else -base_qty, price)
        record = FillRecord(venue, symbol, side, base_qty, price, fee, realized,
                            self._clock() if ts is None else ts, strategy, client_order_id)
        self.fills.append(record)
        self._prune()
        return record

    def restore_fill(self, record: FillRecord) -> None:
        """A journalled fill back into the 24 h history, without touching positions."""
        self.fills.append(record)

    def set_position(self, venue: str, symbol: str, size: Decimal, entry_price: Decimal,
                     realized_pnl: Decimal | None = None) -> None:
        position = self.positions.setdefault((venue, symbol), Position(venue, symbol))
        position.reset(size, entry_price)
        if realized_pnl is not None:
            position.realized_pnl = realized_pnl

    def apply_funding(self, venue: str, symbol: str, amount: Decimal, ts: float | None = None) -> None:
        """Funding received (+) or paid (-) in quote currency."""
        self.restore_funding(venue, symbol, amount, self._clock() if ts is None else ts)
        self._prune()

    def restore_funding(self, venue: str, symbol: str, amount: Decimal, ts: float, recent: bool = True) -> None:
        """A (journalled) funding payment into the lifetime totals and, when recent, the 24 h history."""
        key = (venue, symbol)
        self.funding_totals[key] = self.funding_totals.get(key, ZERO) + amount
        if recent:
            self.funding.append((ts, venue, symbol, amount))

    def funding_total(self, venue: str | None = None, symbol: str | None = None) -> Decimal:
        """Lifetime funding (+ received, - paid), optionally for one venue and/or symbol."""
        return sum((a for (v, s), a in self.funding_totals.items()
                    if venue in (None, v) and symbol in (None, s)), ZERO)

    def set_balance(self, balance: VenueBalance) -> None:
        self.balances[balance.venue] = balance

    def set_mark(self, venue: str, symbol: str, price: Decimal) -> None:
        self.marks[(venue, symbol)] = price

    # -- reads ----------------------------------------------------------------------------
    def open_positions(self) -> list[Position]:
        return [p for p in self.positions.values() if p.size != 0]

    def unrealized(self, venue: str, symbol: str) -> Decimal:
        position = self.positions.get((venue, symbol))
        mark = self.marks.get((venue, symbol))
        if position is None or position.size == 0 or mark is None:
            return ZERO
        return (mark - position.entry_price) * position.size

    def unrealized_total(self) -> Decimal:
        return sum((self.unrealized(p.venue, p.symbol) for p in self.open_positions()), ZERO)

    def day_start(self, now: float | None = None) -> float:
        now = self._clock() if now is None else now
        return now - (now % DAY_S)

    def pnl_today(self) -> dict[str, Decimal]:
        start = self.day_start()
        realized = sum((f.realized_pnl for f in self.fills if f.ts >= start), ZERO)
        fees = sum((f.fee for f in self.fills if f.ts >= start), ZERO)
        funding = sum((a for ts, _, _, a in self.funding if ts >= start), ZERO)
        unrealized = self.unrealized_total()
        return {
            "realized": realized, "fees": fees, "funding": funding, "unrealized": unrealized,
            "net": realized - fees + funding + unrealized,
        }

    def trades_since(self, since_ts: float) -> list[FillRecord]:
        return [f for f in self.fills if f.ts >= since_ts]

    def total_equity(self) -> Decimal:
        return sum((b.equity for b in self.balances.values()), ZERO)

    def capital_utilization_percent(self) -> Decimal:
        equity = self.total_equity()
        if equity <= 0:
            return ZERO
        used = sum((b.used_margin for b in self.balances.values()), ZERO)
        return used / equity * 100

    def _prune(self) -> None:
        # Keep the longer of "last 24 h" and "since the UTC day began" (always 24 h here).
        horizon = self._clock() - DAY_S
        while self.fills and self.fills[0].ts < horizon:
            self.fills.popleft()
        while self.funding and self.funding[0][0] < horizon:
            self.funding.popleft()
