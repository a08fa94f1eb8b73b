"""The journal's record of the venues' own trade ids (a Journal base class).

Every execution a venue reports, by private stream or REST, is written once by (venue, symbol,
trade id) before it is booked: `note_venue_trade` answers whether it is new, so a fill pushed
twice, pushed and read over REST, or replayed after a restart (Hyperliquid's userFills snapshot)
is never booked twice. `order_trade_totals` sums an order's rows: its streamed filled quantity,
notional and fee, which is what the order lifecycle books from.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from decimal import Decimal

from perpbot.core.private_events import VenueFill
from perpbot.journal.eager import EagerConnection
from perpbot.journal.schema import amount
from perpbot.journal.schema import text as _text

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class TradeTotals:
    """An order's executions as the venue reported them, summed: quantity (venue units), notional
    (quantity x price) and fee (positive a cost), and how many executions."""

    qty: Decimal = ZERO
    notional: Decimal = ZERO
    fee: Decimal = ZERO
    count: int = 0

    @property
    def avg_price(self) -> Decimal | None:
        return self.notional / self.qty if self.qty else None


class VenueTrades:
    """Reads and writes of the `venue_trades` table on the Journal's open connection."""

    @property
    @abc.abstractmethod
    def db(self) -> EagerConnection:
        """The open connection: Journal.db (this class is only ever a base of Journal)."""

    async def note_venue_trade(self, fill: VenueFill) -> bool:
        """Record one execution; True when the venue's trade id is new, False when already seen."""
        cursor = await self.db.execute(
            "INSERT OR IGNORE INTO venue_trades VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (fill.venue, fill.symbol, fill.trade_id, fill.client_order_id, fill.venue_order_id, fill.side,
             _text(fill.qty), _text(fill.price), _text(fill.fee), fill.fee_currency, fill.ts_ms, fill.recv_ts),
        )
        return cursor.rowcount == 1

    async def order_trade_totals(self, venue: str, client_order_id: str) -> TradeTotals:
        """The sum of the executions recorded for one order (exact: summed as Decimals here)."""
        qty = notional = fee = ZERO
        count = 0
        async with self.db.execute(
            "SELECT qty, price, fee FROM venue_trades WHERE venue = ? AND client_order_id = ?",
            (venue, client_order_id),
        ) as cur:
            async for q, p, f in cur:
                q_dec = amount(q)
                qty += q_dec
                notional += q_dec * amount(p)
                fee += amount(f)
                count += 1
        return TradeTotals(qty, notional, fee, count)

    async def venue_trade_count(self, venue: str | None = None) -> int:
        sql, params = "SELECT COUNT(*) FROM venue_trades", tuple[str, ...]()
        if venue is not None:
            sql, params = sql + " WHERE venue = ?", (venue,)
        async with self.db.execute(sql, params) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0
