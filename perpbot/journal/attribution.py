"""Attribution's journal reads and writes: a trade's intents (with the decisions' expectations), the
venue fills of its orders, the funding paid on its legs while it was held, and the computed attribution
(table trade_attributions, migration 5) kept per trade for the daily summary and the metrics.

Reads only what the journal already holds (intents, orders, fills, funding_payments, trades): an
attribution can always be recomputed from them. Amounts come back as exact Decimals.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from perpbot.journal.schema import amount
from perpbot.journal.sqlite import Journal

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TradeRecord:
    """A trade as journalled: its legs (venue, symbol, side), when it opened and closed."""

    trade_id: str
    intent_id: str
    strategy: str
    base: str
    legs: list[dict[str, Any]]
    opened_ts: float
    closed_ts: float | None


@dataclass(frozen=True, slots=True)
class IntentRecord:
    """One intent of a trade (its entry, an exit) with the decision as journalled."""

    intent_id: str
    action: str
    decision: dict[str, Any]
    created_ts: float


@dataclass(frozen=True, slots=True)
class TradeFill:
    """A venue fill of one of the trade's orders; `intent_id` None for a close-all flatten."""

    venue: str
    symbol: str
    side: str
    base_qty: Decimal
    price: Decimal
    fee: Decimal
    ts: float
    intent_id: str | None


@dataclass(frozen=True, slots=True)
class FundingPayment:
    venue: str
    symbol: str
    amount: Decimal
    ts: float


class AttributionJournal:
    """The attribution's view of the journal (same connection)."""

    def __init__(self, journal: Journal, clock: Callable[[], float] = time.time) -> None:
        self.journal = journal
        self.clock = clock

    async def trade(self, trade_id: str) -> TradeRecord | None:
        rows = await self._trades("WHERE trade_id=?", (trade_id,))
        return rows[0] if rows else None

    async def trades_since(self, since_ts: float) -> list[TradeRecord]:
        """Trades open now or closed at or after `since_ts`, oldest first."""
        return await self._trades("WHERE status='open' OR closed_ts >= ? ORDER BY opened_ts", (since_ts,))

    async def _trades(self, where: str, params: tuple[Any, ...]) -> list[TradeRecord]:
        async with self.journal.db.execute(
            f"SELECT trade_id, intent_id, strategy, base, legs, opened_ts, closed_ts FROM trades {where}", params
        ) as cur:
            rows = await cur.fetchall()
        out = []
        for r in rows:
            try:
                out.append(TradeRecord(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6]))
            except ValueError:
                log.error("journal: unreadable trade row %s skipped", r[0])
        return out

    async def intents(self, trade: TradeRecord) -> list[IntentRecord]:
        """The trade's entry intent and every intent that named it (its exits), oldest first."""
        async with self.journal.db.execute(
            "SELECT intent_id, action, decision, created_ts FROM intents WHERE intent_id=? OR trade_id=?"
            " ORDER BY created_ts", (trade.intent_id, trade.trade_id),
        ) as cur:
            rows = await cur.fetchall()
        out = []
        for r in rows:
            try:
                out.append(IntentRecord(r[0], r[1], json.loads(r[2]), r[3]))
            except ValueError:
                log.error("journal: intent %s has an unreadable decision; attributed without it", r[0])
                out.append(IntentRecord(r[0], r[1], {}, r[3]))
        return out

    async def fills(self, trade: TradeRecord, intent_ids: list[str], until_ts: float) -> list[TradeFill]:
        """Fills of the trade's orders (entry, exits, leg repairs: same intents) and of close-all
        flattens sent on its legs while it was open."""
        marks = ",".join("?" * len(intent_ids)) or "NULL"
        columns = "f.venue, f.symbol, f.side, f.base_qty, f.price, f.fee, f.ts, o.intent_id, o.purpose"
        join = "FROM orders o JOIN fills f ON f.venue = o.venue AND f.client_order_id = o.client_order_id"
        async with self.journal.db.execute(
            f"SELECT {columns} {join} WHERE o.intent_id IN ({marks})"
            # Flattens by the fills' time (booked before close-all closes the trade): no index on purpose,
            # which every order's write-ahead row would pay for.
            f" UNION ALL SELECT {columns} FROM fills f JOIN orders o ON o.venue = f.venue"
            " AND o.client_order_id = f.client_order_id WHERE f.ts BETWEEN ? AND ? AND o.purpose = 'flatten'"
            " ORDER BY 7",
            (*intent_ids, trade.opened_ts, until_ts),
        ) as cur:
            rows = await cur.fetchall()
        legs = {(leg["venue"], leg["symbol"]) for leg in trade.legs}
        out = []
        for r in rows:
            if (r[0], r[1]) not in legs:
                continue
            out.append(TradeFill(r[0], r[1], r[2], amount(r[3]), amount(r[4]), amount(r[5]), r[6],
                                 None if r[8] == "flatten" else r[7]))
        return out

    async def funding(self, trade: TradeRecord, until_ts: float) -> list[FundingPayment]:
        """Funding paid on the trade's venues and symbols between its opening and `until_ts` (a
        venue/symbol belongs to one open trade at a time)."""
        async with self.journal.db.execute(
            "SELECT venue, symbol, amount, ts FROM funding_payments WHERE ts >= ? AND ts <= ? ORDER BY ts",
            (trade.opened_ts, until_ts),
        ) as cur:
            rows = await cur.fetchall()
        legs = {(leg["venue"], leg["symbol"]) for leg in trade.legs}
        return [FundingPayment(r[0], r[1], amount(r[2]), r[3]) for r in rows if (r[0], r[1]) in legs]

    # -- the computed attributions ---------------------------------------------------------
    async def save(self, trade: TradeRecord, attribution: dict[str, Any]) -> None:
        """Writes (or rewrites) the trade's attribution; `observed` is kept."""
        await self.journal.db.execute(
            "INSERT INTO trade_attributions VALUES (?,?,?,?,?,?,0,?) ON CONFLICT(trade_id) DO UPDATE SET"
            " closed_ts=excluded.closed_ts, attribution=excluded.attribution, updated_ts=excluded.updated_ts",
            (trade.trade_id, trade.strategy, trade.base, trade.opened_ts, trade.closed_ts,
             json.dumps(attribution, sort_keys=True), self.clock()),
        )

    async def mark_observed(self, trade_id: str) -> bool:
        """True the first time: the trade's slippage goes into the metrics once, restarts included."""
        cursor = await self.journal.db.execute(
            "UPDATE trade_attributions SET observed=1 WHERE trade_id=? AND observed=0", (trade_id,))
        return cursor.rowcount == 1

    async def saved(self, trade_id: str) -> dict[str, Any] | None:
        async with self.journal.db.execute(
            "SELECT attribution FROM trade_attributions WHERE trade_id=?", (trade_id,)
        ) as cur:
            row = await cur.fetchone()
        return json.loads(row[0]) if row is not None else None

    async def saved_many(self, trade_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Saved attributions by trade id (a trade not attributed yet is left out)."""
        out: dict[str, dict[str, Any]] = {}
        wanted = sorted(set(trade_ids))
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            async with self.journal.db.execute(
                f"SELECT trade_id, attribution FROM trade_attributions WHERE trade_id IN ({','.join('?' * len(chunk))})",
                chunk,
            ) as cur:
                for trade_id, text in await cur.fetchall():
                    out[trade_id] = json.loads(text)
        return out

    async def closed_since(self, since_ts: float) -> list[dict[str, Any]]:
        """Saved attributions of trades closed at or after `since_ts`, oldest first."""
        async with self.journal.db.execute(
            "SELECT trade_id, attribution FROM trade_attributions WHERE closed_ts >= ? ORDER BY closed_ts",
            (since_ts,),
        ) as cur:
            rows = await cur.fetchall()
        out = []
        for r in rows:
            try:
                out.append(json.loads(r[1]))
            except ValueError:
                log.error("journal: unreadable attribution of trade %s skipped", r[0])
        return out

    async def trade_ids_of(self, client_order_ids: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """(venue, client order id) -> the trade its order belongs to (its entry's or an exit's)."""
        out: dict[tuple[str, str], str] = {}
        wanted = sorted(set(client_order_ids))
        for start in range(0, len(wanted), 400):
            chunk = wanted[start:start + 400]
            marks = ",".join("(?,?)" for _ in chunk)
            async with self.journal.db.execute(
                "SELECT o.venue, o.client_order_id, COALESCE(i.trade_id, t.trade_id) FROM orders o"
                " LEFT JOIN intents i ON i.intent_id = o.intent_id LEFT JOIN trades t ON t.intent_id = o.intent_id"
                f" WHERE (o.venue, o.client_order_id) IN (VALUES {marks})",
                tuple(x for pair in chunk for x in pair),
            ) as cur:
                async for r in cur:
                    if r[2] is not None:
                        out[(r[0], r[1])] = r[2]
        return out
