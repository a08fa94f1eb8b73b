"""One order's settlement in one journal transaction (a Journal base class): the new fill (once, by
its fill id), the position it leaves, and the order's cumulative state, committed together.

One commit instead of three is one fsync instead of three on the path from a venue's fill to the
fill booked (synchronous=FULL), and a crash can no longer leave a fill journalled without the order
row that explains it (or the reverse)."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from perpbot.core.shielding import uncancellable
from perpbot.core.states import OrderStatus
from perpbot.journal.eager import EagerConnection
from perpbot.journal.schema import JournalError
from perpbot.journal.schema import text as _text


@dataclass(frozen=True, slots=True)
class FillEntry:
    """A fill to journal once, and the position it leaves (written only when the fill is new)."""

    fill_id: str
    symbol: str
    side: str
    base_qty: Decimal
    price: Decimal
    fee: Decimal
    realized_pnl: Decimal
    strategy: str | None
    ts: float
    position_size: Decimal
    position_entry: Decimal
    position_realized: Decimal


@dataclass(frozen=True, slots=True)
class OrderState:
    status: str
    venue_order_id: str | None
    filled_qty: Decimal
    avg_price: Decimal | None
    fee: Decimal
    reason: str | None


class Settlement:
    """`settle_order` on the Journal's open connection, under its transaction lock."""

    _clock: Callable[[], float]
    tx_lock: asyncio.Lock

    @property
    @abc.abstractmethod
    def db(self) -> EagerConnection:
        """The open connection: Journal.db (this class is only ever a base of Journal)."""

    async def settle_order(self, venue: str, client_order_id: str, fill: FillEntry | None, order: OrderState) -> bool:
        """Journal the fill (when given and new), its position, and the order's state in one
        transaction; True when the fill was new (the caller then applies it to the portfolio)."""
        try:
            status = OrderStatus(order.status).value
        except ValueError:
            raise JournalError(f"unknown order status {order.status!r}") from None
        async with self.tx_lock:
            return await uncancellable(self._settle(venue, client_order_id, fill, order, status))

    async def _settle(self, venue: str, client_order_id: str, fill: FillEntry | None, order: OrderState,
                      status: str) -> bool:
        db = self.db
        now = self._clock()
        await db.execute("BEGIN IMMEDIATE")
        try:
            new = False
            if fill is not None:
                cursor = await db.execute(
                    "INSERT OR IGNORE INTO fills VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (venue, fill.fill_id, client_order_id, fill.symbol, fill.side, _text(fill.base_qty),
                     _text(fill.price), _text(fill.fee), _text(fill.realized_pnl), fill.strategy, fill.ts))
                new = cursor.rowcount == 1
                if new:
                    await db.execute(
                        "INSERT INTO positions VALUES (?,?,?,?,?,?) ON CONFLICT(venue, symbol) DO UPDATE SET"
                        " size=excluded.size, entry_price=excluded.entry_price,"
                        " realized_pnl=excluded.realized_pnl, updated_ts=excluded.updated_ts",
                        (venue, fill.symbol, _text(fill.position_size), _text(fill.position_entry),
                         _text(fill.position_realized), now))
            sets = ["status=?", "updated_ts=?", "filled_qty=?", "fee=?"]
            params: list[object] = [status, now, _text(order.filled_qty), _text(order.fee)]
            for column, value in (("venue_order_id", order.venue_order_id), ("avg_price", order.avg_price),
                                  ("reason", order.reason)):
                if value is not None:
                    sets.append(f"{column}=?")
                    params.append(_text(value) if isinstance(value, Decimal) else value)
            cursor = await db.execute(f"UPDATE orders SET {', '.join(sets)} WHERE venue=? AND client_order_id=?",
                                      (*params, venue, client_order_id))
            if cursor.rowcount != 1:
                raise JournalError(f"no journalled order {venue}/{client_order_id}")
            await db.execute("COMMIT")
            return new
        except BaseException:
            if db.in_transaction:
                await db.execute("ROLLBACK")
            raise
