"""Portfolio: positions per venue and symbol, balances, PnL (realised, unrealised, fees, funding).

Pure and exact: every amount is a Decimal; sizes are signed base-asset quantities
(+ long, - short). Realised PnL is booked when a fill reduces or flips a position, at the
position's average entry. "Today" is the current UTC day.

Memory is bounded for a service that runs for weeks: the fill and funding histories kept here
are the last 24 h AND at most MAX_RECENT_FILLS / MAX_RECENT_FUNDING entries (a fast market makes
tens of thousands of fills a day). Today's PnL does not depend on that window: realised PnL, fees
and funding of the current UTC day are running sums, updated by every fill and payment booked.
`complete_since(ts)` says whether the in-memory history still holds every fill since `ts`; when
it does not, readers take the journal (which keeps every fill) instead.

Quote currencies: each venue's own figures (positions, fills, balances, `unrealized`) stay in its
settlement currency; where amounts of several venues are summed (`pnl_today`, `unrealized_total`,
`total_equity`, `capital_utilization_percent`), those of a USDC venue (Hyperliquid) are counted in
USDT at `usdc_usdt` (risk.usdc_usdt_rate, see perpbot.core.quote_rate), never 1:1 unless it is 1.
`pnl_today` says the rate it used.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from perpbot.core.margin import LegMargin
from perpbot.core.numbers import plain_or_none
from perpbot.core.orders import VenueBalance

ZERO = Decimal(0)
COST_GRID = Decimal("1e-12")
DAY_S = 86400.0
# In-memory history bounds (besides 24 h): ~2 h of the simulator's fast market, days of real trading.
# At ~0.5 KB a FillRecord, 5,000 fills are ~2.5 MB; older fills stay in the journal.
MAX_RECENT_FILLS = 5_000
MAX_RECENT_FUNDING = 5_000
# Canonical decimal text for JSON ("30000", "0.02", None stays None): perpbot.core.numbers' formatter,
# under the name the portfolio's readers import from here.
dstr = plain_or_none


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
    def __init__(self, clock=time.time, usdc_usdt: Decimal = Decimal(1),
                 usdc_venues: frozenset[str] = frozenset()) -> None:
        self._clock = clock
        # USDT per USDC, and the venues whose amounts are USDC: sums across venues count those at the rate.
        self.usdc_usdt = usdc_usdt
        self.usdc_venues = usdc_venues
        self.positions: dict[tuple[str, str], Position] = {}
        self.balances: dict[str, VenueBalance] = {}
        self.marks: dict[tuple[str, str], Decimal] = {}
        self.leverage: dict[tuple[str, str], Decimal] = {}
        # Each leg's margin state as its venue last stated it (push or REST): liquidation price, ADL rank.
        self.margins: dict[tuple[str, str], LegMargin] = {}
        # Last 24 h and at most MAX_RECENT_* entries, oldest first (appends are in ts order but for
        # restarts, which restore the journal's rows sorted by ts before anything new is booked).
        self.fills: deque[FillRecord] = deque(maxlen=MAX_RECENT_FILLS)
        self.funding: deque[tuple[float, str, str, Decimal]] = deque(maxlen=MAX_RECENT_FUNDING)
        self.funding_totals: dict[tuple[str, str], Decimal] = {}  # lifetime, per venue and symbol
        # Newest ts among fills the count bound pushed out (-inf: none): memory holds every fill after it.
        self._evicted_fill_ts = float("-inf")
        # Running sums per UTC day start: [realised, fees, funding]. Today's PnL is the sum of the
        # buckets from today on (a fill or payment stamped in the future counts, as it always did);
        # buckets of past days are dropped when read, so there are only ever a few.
        self._days: dict[float, list[Decimal]] = {}

    def set_history_bound(self, fills: int, funding: int) -> None:
        """Changes the in-memory count bounds (the soak rig makes them small so they are reached
        within minutes); the oldest entries beyond the new bound are dropped as usual."""
        kept = deque(self.fills, maxlen=fills)
        if len(kept) < len(self.fills):
            self._evicted_fill_ts = max(self._evicted_fill_ts, self.fills[len(self.fills) - len(kept) - 1].ts)
        self.fills = kept
        self.funding = deque(self.funding, maxlen=funding)

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
        self._remember_fill(record)
        self._prune()
        return record

    def restore_fill(self, record: FillRecord) -> None:
        """A journalled fill back into the 24 h history, without touching positions."""
        self._remember_fill(record)

    def _remember_fill(self, record: FillRecord) -> None:
        if len(self.fills) == self.fills.maxlen:
            self._evicted_fill_ts = max(self._evicted_fill_ts, self.fills[0].ts)
        self.fills.append(record)
        self._add_today(record.venue, record.ts, record.realized_pnl, record.fee, ZERO)

    def to_usdt(self, venue: str, amount: Decimal) -> Decimal:
        """An amount in `venue`'s settlement currency, in USDT (a USDC venue's at usdc_usdt)."""
        return amount * self.usdc_usdt if venue in self.usdc_venues else amount

    def _add_today(self, venue: str, ts: float, realized: Decimal, fee: Decimal, funding: Decimal) -> None:
        """Adds to the sums of ts's UTC day an amount booked at `ts` by `venue`, in USDT (ignored when that
        day is over)."""
        day = self.day_start(ts)
        if day < self.day_start():
            return
        if venue in self.usdc_venues:
            rate = self.usdc_usdt
            realized, fee, funding = realized * rate, fee * rate, funding * rate
        sums = self._days.setdefault(day, [ZERO, ZERO, ZERO])
        sums[0] += realized
        sums[1] += fee
        sums[2] += funding

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
            self._add_today(venue, ts, ZERO, ZERO, amount)

    def funding_total(self, venue: str | None = None, symbol: str | None = None) -> Decimal:
        """Lifetime funding (+ received, - paid), optionally for one venue and/or symbol."""
        return sum((a for (v, s), a in self.funding_totals.items()
                    if venue in (None, v) and symbol in (None, s)), ZERO)

    def set_balance(self, balance: VenueBalance) -> None:
        self.balances[balance.venue] = balance

    def set_mark(self, venue: str, symbol: str, price: Decimal) -> None:
        self.marks[(venue, symbol)] = price

    def set_margin(self, margin: LegMargin) -> None:
        """A leg's margin figures as the venue stated them; a flat leg's are dropped. An older statement
        (by the venue's time) than the one held is ignored, so a slow REST answer cannot undo a push."""
        key = (margin.venue, margin.symbol)
        if not margin.size:
            self.margins.pop(key, None)
            return
        held = self.margins.get(key)
        if held is not None and margin.ts_ms and held.ts_ms > margin.ts_ms:
            return
        self.margins[key] = margin

    # -- reads ----------------------------------------------------------------------------
    def open_positions(self) -> list[Position]:
        return [p for p in self.positions.values() if p.size != 0]

    def unrealized(self, venue: str, symbol: str) -> Decimal:
        """One leg's unrealised PnL in its venue's own currency."""
        position = self.positions.get((venue, symbol))
        mark = self.marks.get((venue, symbol))
        if position is None or position.size == 0 or mark is None:
            return ZERO
        return (mark - position.entry_price) * position.size

    def unrealized_total(self) -> Decimal:
        """Every leg's unrealised PnL, in USDT."""
        return sum((self.to_usdt(p.venue, self.unrealized(p.venue, p.symbol)) for p in self.open_positions()), ZERO)

    def day_start(self, now: float | None = None) -> float:
        now = self._clock() if now is None else now
        return now - (now % DAY_S)

    def pnl_today(self) -> dict[str, Decimal]:
        """Today's PnL of every venue in USDT, with the USDC/USDT rate a USDC venue's amounts were counted at."""
        start = self.day_start()
        for day in [d for d in self._days if d < start]:
            del self._days[day]
        realized = sum((sums[0] for sums in self._days.values()), ZERO)
        fees = sum((sums[1] for sums in self._days.values()), ZERO)
        funding = sum((sums[2] for sums in self._days.values()), ZERO)
        unrealized = self.unrealized_total()
        return {
            "realized": realized, "fees": fees, "funding": funding, "unrealized": unrealized,
            "net": realized - fees + funding + unrealized, "usdc_usdt": self.usdc_usdt,
        }

    def trades_since(self, since_ts: float) -> list[FillRecord]:
        """Fills booked at or after `since_ts` that memory still holds (all of them when
        complete_since(since_ts); otherwise ask the journal)."""
        return [f for f in self.fills if f.ts >= since_ts]

    def complete_since(self, since_ts: float) -> bool:
        """True when no fill at or after `since_ts` was dropped by the count bound."""
        return self._evicted_fill_ts < since_ts

    def total_equity(self) -> Decimal:
        """Every venue's equity, in USDT."""
        return sum((self.to_usdt(b.venue, b.equity) for b in self.balances.values()), ZERO)

    def capital_utilization_percent(self) -> Decimal:
        """Used margin over equity across venues, both in USDT."""
        equity = self.total_equity()
        if equity <= 0:
            return ZERO
        used = sum((self.to_usdt(b.venue, b.used_margin) for b in self.balances.values()), ZERO)
        return used / equity * 100

    def _prune(self) -> None:
        # Keep the longer of "last 24 h" and "since the UTC day began" (always 24 h here).
        horizon = self._clock() - DAY_S
        while self.fills and self.fills[0].ts < horizon:
            self.fills.popleft()
        while self.funding and self.funding[0][0] < horizon:
            self.funding.popleft()
