"""Write-ahead trade journal in SQLite (aiosqlite, WAL): intents and orders are written before
an order leaves, fills are counted once, positions/funding/state changes survive restarts.

Money is stored as canonical decimal TEXT (exact), never REAL. Migrations are applied at
open() and recorded in `schema_version`; running them twice changes nothing.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import aiosqlite

from perpbot.core.orders import OrderRequest
from perpbot.core.shielding import uncancellable

log = logging.getLogger(__name__)

ORDER_STATUSES = (
    "pending", "open", "filled", "partially_filled", "canceled", "expired", "rejected", "failed",
    "unknown", "not_found",
)
FINAL_STATUSES = ("filled", "partially_filled", "canceled", "expired", "rejected", "failed", "not_found")

MIGRATIONS: list[str] = [
    # 1: the base schema
    """
    CREATE TABLE intents (
        intent_id TEXT PRIMARY KEY, strategy TEXT NOT NULL, action TEXT NOT NULL, base TEXT NOT NULL,
        trade_id TEXT, decision TEXT NOT NULL, status TEXT NOT NULL,
        created_ts REAL NOT NULL, updated_ts REAL NOT NULL
    );
    CREATE TABLE orders (
        client_order_id TEXT NOT NULL, venue TEXT NOT NULL, intent_id TEXT, purpose TEXT NOT NULL,
        symbol TEXT NOT NULL, side TEXT NOT NULL CHECK (side IN ('buy','sell')),
        qty TEXT NOT NULL, price TEXT NOT NULL, reduce_only INTEGER NOT NULL,
        status TEXT NOT NULL, venue_order_id TEXT, filled_qty TEXT NOT NULL DEFAULT '0',
        avg_price TEXT, fee TEXT NOT NULL DEFAULT '0', reason TEXT,
        created_ts REAL NOT NULL, updated_ts REAL NOT NULL,
        PRIMARY KEY (venue, client_order_id)
    );
    CREATE INDEX orders_status ON orders(status);
    CREATE TABLE fills (
        venue TEXT NOT NULL, fill_id TEXT NOT NULL, client_order_id TEXT, symbol TEXT NOT NULL,
        side TEXT NOT NULL, base_qty TEXT NOT NULL, price TEXT NOT NULL, fee TEXT NOT NULL,
        realized_pnl TEXT NOT NULL DEFAULT '0', strategy TEXT, ts REAL NOT NULL,
        UNIQUE (venue, fill_id)
    );
    CREATE INDEX fills_ts ON fills(ts);
    CREATE TABLE positions (
        venue TEXT NOT NULL, symbol TEXT NOT NULL, size TEXT NOT NULL, entry_price TEXT NOT NULL,
        realized_pnl TEXT NOT NULL DEFAULT '0', updated_ts REAL NOT NULL, PRIMARY KEY (venue, symbol)
    );
    CREATE TABLE funding_payments (
        venue TEXT NOT NULL, payment_id TEXT NOT NULL, symbol TEXT NOT NULL, amount TEXT NOT NULL,
        ts REAL NOT NULL, UNIQUE (venue, payment_id)
    );
    CREATE TABLE state_changes (
        id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, from_state TEXT, to_state TEXT NOT NULL,
        reason TEXT NOT NULL, actor TEXT NOT NULL
    );
    CREATE TABLE trades (
        trade_id TEXT PRIMARY KEY, intent_id TEXT NOT NULL, strategy TEXT NOT NULL, base TEXT NOT NULL,
        legs TEXT NOT NULL, status TEXT NOT NULL, opened_ts REAL NOT NULL, closed_ts REAL
    );
    """,
    # 2: the instrument cache (start-up reads it instead of the venues' instrument lists; refreshed
    # from the venues in the background). `instrument` is perpbot.core.instruments.Instrument as JSON,
    # Decimals as their exact strings; `venue_markets` the venue client's market list (ccxt markets
    # and currencies as JSON), so the client needs no market load before its first order.
    """
    CREATE TABLE instruments (
        venue TEXT NOT NULL, symbol TEXT NOT NULL, instrument TEXT NOT NULL, updated_ts REAL NOT NULL,
        PRIMARY KEY (venue, symbol)
    );
    CREATE TABLE venue_markets (
        venue TEXT PRIMARY KEY, markets TEXT NOT NULL, currencies TEXT, updated_ts REAL NOT NULL
    );
    """,
]


class JournalError(Exception):
    """The journal cannot be used (newer schema, unreadable file) or a value is not storable."""


def _text(value: Decimal) -> str:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise JournalError(f"refusing to journal non-finite or non-Decimal amount {value!r}")
    return format(value.normalize(), "f") if value else "0"


def _dec(value: str | None) -> Decimal | None:
    if value is None:
        return None
    result = Decimal(value)
    if not result.is_finite():
        raise InvalidOperation(value)
    return result


@dataclass(slots=True)
class OrderRow:
    venue: str
    client_order_id: str
    intent_id: str | None
    purpose: str
    symbol: str
    side: str
    qty: Decimal
    price: Decimal
    reduce_only: bool
    status: str
    venue_order_id: str | None
    filled_qty: Decimal
    avg_price: Decimal | None
    fee: Decimal
    reason: str | None
    created_ts: float
    updated_ts: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "venue": self.venue, "client_order_id": self.client_order_id, "intent_id": self.intent_id,
            "purpose": self.purpose, "symbol": self.symbol, "side": self.side, "qty": str(self.qty),
            "price": str(self.price), "reduce_only": self.reduce_only, "status": self.status,
            "venue_order_id": self.venue_order_id, "filled_qty": str(self.filled_qty),
            "avg_price": None if self.avg_price is None else str(self.avg_price), "fee": str(self.fee),
            "reason": self.reason, "created_ts": self.created_ts, "updated_ts": self.updated_ts,
        }


@dataclass(frozen=True, slots=True)
class TradeChange:
    """What an intent did to a trade: `open` a new one, `resize` its legs (a partial exit, a
    repair, a start-up adoption of the venues' sizes) or `close` it. Legs are the trade's leg
    dicts with each leg's own base_qty (a sub-lot residue makes them differ)."""

    kind: str  # "open" | "resize" | "close"
    trade_id: str
    legs: tuple[dict[str, Any], ...] = ()
    intent_id: str = ""
    strategy: str = ""
    base: str = ""

    def statement(self, now: float) -> tuple[str, tuple]:
        legs = json.dumps(list(self.legs), default=str)
        if self.kind == "open":
            return ("INSERT INTO trades VALUES (?,?,?,?,?,'open',?,NULL)",
                    (self.trade_id, self.intent_id, self.strategy, self.base, legs, now))
        if self.kind == "resize":
            return ("UPDATE trades SET legs=? WHERE trade_id=? AND status='open'", (legs, self.trade_id))
        if self.kind == "close":
            return ("UPDATE trades SET status='closed', closed_ts=? WHERE trade_id=?", (now, self.trade_id))
        raise JournalError(f"unknown trade change {self.kind!r}")


class Journal:
    """One SQLite file; open() before use, close() at the end."""

    def __init__(self, path: str | Path, clock=time.time) -> None:
        self.path = str(path)
        self._clock = clock
        self._db: aiosqlite.Connection | None = None

    # -- lifecycle -------------------------------------------------------------------
    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self.path, isolation_level=None)
        await self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a row the engine relied on before sending an order must survive a power cut.
        await self._db.execute("PRAGMA synchronous=FULL")
        await self._db.execute("PRAGMA busy_timeout=5000")
        await self.migrate()

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise JournalError("journal is not open")
        return self._db

    async def schema_version(self) -> int:
        async with self.db.execute("SELECT MAX(version) FROM schema_version") as cur:
            row = await cur.fetchone()
        return int(row[0] or 0)

    async def migrate(self) -> int:
        """Apply missing migrations in order; returns the version now in force."""
        await self.db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_ts REAL)")
        current = await self.schema_version()
        if current > len(MIGRATIONS):
            raise JournalError(
                f"journal {self.path} has schema version {current}, newer than this build knows ({len(MIGRATIONS)})"
            )
        for version in range(current + 1, len(MIGRATIONS) + 1):
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                for statement in MIGRATIONS[version - 1].split(";"):
                    if statement.strip():
                        await self.db.execute(statement)
                await self.db.execute(
                    "INSERT INTO schema_version (version, applied_ts) VALUES (?, ?)", (version, self._clock())
                )
                await self.db.execute("COMMIT")
            except BaseException:
                await self.db.execute("ROLLBACK")
                raise
            log.info("journal migrated to schema version %d", version)
        return len(MIGRATIONS)

    # -- intents and orders -----------------------------------------------------------
    async def record_intent(
        self, intent_id: str, strategy: str, action: str, base: str, decision: dict[str, Any],
        orders: list[tuple[OrderRequest, str]], trade_id: str | None = None, status: str = "sending",
    ) -> None:
        """The intent and its orders (status 'pending') in one transaction, before anything is sent."""
        now = self._clock()
        rows = [self._order_params(req, purpose, intent_id, now) for req, purpose in orders]
        payload = json.dumps(decision, default=str, sort_keys=True)
        await self._transaction(
            [("INSERT INTO intents VALUES (?,?,?,?,?,?,?,?,?)",
              (intent_id, strategy, action, base, trade_id, payload, status, now, now))]
            + [(self._INSERT_ORDER, row) for row in rows]
        )

    async def _transaction(self, statements: Sequence[tuple[str, tuple]]) -> None:
        """The statements in one transaction that a cancellation cannot cut: it runs to COMMIT (or
        ROLLBACK on an error) and only then is the caller's cancellation raised."""
        await uncancellable(self._run_transaction(statements))

    async def _run_transaction(self, statements: Sequence[tuple[str, tuple]]) -> None:
        await self.db.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in statements:
                await self.db.execute(sql, params)
            await self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                await self.db.execute("ROLLBACK")
            raise

    async def intents_with_status(self, *statuses: str) -> list[dict[str, Any]]:
        """Intents in the given statuses, oldest first, with their decision payload decoded."""
        marks = ",".join("?" for _ in statuses)
        async with self.db.execute(
            f"SELECT intent_id, strategy, action, base, trade_id, decision, status, created_ts FROM intents"
            f" WHERE status IN ({marks}) ORDER BY created_ts",
            statuses,
        ) as cur:
            rows = await cur.fetchall()
        out = []
        for intent_id, strategy, action, base, trade_id, decision, status, created_ts in rows:
            try:
                payload = json.loads(decision)
            except ValueError:
                log.error("journal: intent %s has an unreadable decision; left for the operator", intent_id)
                continue
            out.append({"intent_id": intent_id, "strategy": strategy, "action": action, "base": base,
                        "trade_id": trade_id, "decision": payload, "status": status, "created_ts": created_ts})
        return out

    async def set_intent_status(self, intent_id: str, status: str) -> None:
        await self.db.execute(
            "UPDATE intents SET status=?, updated_ts=? WHERE intent_id=?", (status, self._clock(), intent_id)
        )

    _INSERT_ORDER = (
        "INSERT INTO orders (client_order_id, venue, intent_id, purpose, symbol, side, qty, price, reduce_only,"
        " status, created_ts, updated_ts) VALUES (?,?,?,?,?,?,?,?,?,'pending',?,?)"
    )

    def _order_params(self, req: OrderRequest, purpose: str, intent_id: str | None, now: float) -> tuple:
        if req.side not in ("buy", "sell"):
            raise JournalError(f"bad side {req.side!r}")
        return (
            req.client_order_id, req.venue, intent_id, purpose, req.symbol, req.side, _text(req.qty),
            _text(req.price), int(req.reduce_only), now, now,
        )

    async def record_order(self, request: OrderRequest, purpose: str, intent_id: str | None) -> None:
        """One order (hedge, unwind, flatten) as 'pending', committed before it is sent."""
        await self.db.execute(self._INSERT_ORDER, self._order_params(request, purpose, intent_id, self._clock()))

    async def update_order(
        self, venue: str, client_order_id: str, status: str, *, venue_order_id: str | None = None,
        filled_qty: Decimal | None = None, avg_price: Decimal | None = None, fee: Decimal | None = None,
        reason: str | None = None,
    ) -> None:
        if status not in ORDER_STATUSES:
            raise JournalError(f"unknown order status {status!r}")
        sets = ["status=?", "updated_ts=?"]
        params: list[Any] = [status, self._clock()]
        for column, value in (
            ("venue_order_id", venue_order_id), ("filled_qty", filled_qty), ("avg_price", avg_price),
            ("fee", fee), ("reason", reason),
        ):
            if value is not None:
                sets.append(f"{column}=?")
                params.append(_text(value) if isinstance(value, Decimal) else value)
        params += [venue, client_order_id]
        cursor = await self.db.execute(
            f"UPDATE orders SET {', '.join(sets)} WHERE venue=? AND client_order_id=?", params
        )
        if cursor.rowcount != 1:
            raise JournalError(f"no journalled order {venue}/{client_order_id}")

    async def order(self, venue: str, client_order_id: str) -> OrderRow | None:
        rows = await self._orders("WHERE venue=? AND client_order_id=?", (venue, client_order_id))
        return rows[0] if rows else None

    async def orders_with_status(self, *statuses: str) -> list[OrderRow]:
        marks = ",".join("?" * len(statuses))
        return await self._orders(f"WHERE status IN ({marks}) ORDER BY created_ts", statuses)

    async def orders_of_intent(self, intent_id: str) -> list[OrderRow]:
        return await self._orders("WHERE intent_id=? ORDER BY created_ts", (intent_id,))

    async def _orders(self, where: str, params: tuple) -> list[OrderRow]:
        query = (
            "SELECT venue, client_order_id, intent_id, purpose, symbol, side, qty, price, reduce_only, status,"
            f" venue_order_id, filled_qty, avg_price, fee, reason, created_ts, updated_ts FROM orders {where}"
        )
        result = []
        async with self.db.execute(query, params) as cur:
            async for r in cur:
                try:
                    result.append(OrderRow(
                        r[0], r[1], r[2], r[3], r[4], r[5], _dec(r[6]), _dec(r[7]), bool(r[8]), r[9], r[10],
                        _dec(r[11]), _dec(r[12]), _dec(r[13]), r[14], r[15], r[16],
                    ))
                except (InvalidOperation, TypeError, ValueError):
                    # Keep going: one corrupt row must not hide every other order from recovery.
                    log.error("journal: unreadable order row %s/%s skipped", r[0], r[1])
        return result

    # -- fills, positions, funding ----------------------------------------------------
    async def record_fill(
        self, venue: str, fill_id: str, client_order_id: str | None, symbol: str, side: str,
        base_qty: Decimal, price: Decimal, fee: Decimal, realized_pnl: Decimal = Decimal(0),
        strategy: str | None = None, ts: float | None = None,
    ) -> bool:
        """True when the fill is new; a fill id seen before is ignored (never counted twice)."""
        cursor = await self.db.execute(
            "INSERT OR IGNORE INTO fills VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (venue, fill_id, client_order_id, symbol, side, _text(base_qty), _text(price), _text(fee),
             _text(realized_pnl), strategy, self._clock() if ts is None else ts),
        )
        return cursor.rowcount == 1

    async def fills_since(self, since_ts: float) -> list[dict[str, Any]]:
        out = []
        async with self.db.execute(
            "SELECT venue, fill_id, client_order_id, symbol, side, base_qty, price, fee, realized_pnl, strategy, ts"
            " FROM fills WHERE ts >= ? ORDER BY ts", (since_ts,),
        ) as cur:
            async for r in cur:
                try:
                    out.append({
                        "venue": r[0], "fill_id": r[1], "client_order_id": r[2], "symbol": r[3], "side": r[4],
                        "base_qty": _dec(r[5]), "price": _dec(r[6]), "fee": _dec(r[7]),
                        "realized_pnl": _dec(r[8]), "strategy": r[9], "ts": r[10],
                    })
                except (InvalidOperation, TypeError, ValueError):
                    log.error("journal: unreadable fill row %s/%s skipped", r[0], r[1])
        return out

    async def save_position(
        self, venue: str, symbol: str, size: Decimal, entry_price: Decimal, realized_pnl: Decimal
    ) -> None:
        await self.db.execute(
            "INSERT INTO positions VALUES (?,?,?,?,?,?) ON CONFLICT(venue, symbol) DO UPDATE SET"
            " size=excluded.size, entry_price=excluded.entry_price, realized_pnl=excluded.realized_pnl,"
            " updated_ts=excluded.updated_ts",
            (venue, symbol, _text(size), _text(entry_price), _text(realized_pnl), self._clock()),
        )

    async def positions(self) -> list[dict[str, Any]]:
        out = []
        async with self.db.execute("SELECT venue, symbol, size, entry_price, realized_pnl FROM positions") as cur:
            async for r in cur:
                try:
                    out.append({"venue": r[0], "symbol": r[1], "size": _dec(r[2]), "entry_price": _dec(r[3]),
                                "realized_pnl": _dec(r[4])})
                except (InvalidOperation, TypeError, ValueError):
                    log.error("journal: unreadable position row %s/%s skipped", r[0], r[1])
        return out

    async def record_funding(self, venue: str, payment_id: str, symbol: str, amount: Decimal, ts: float) -> bool:
        cursor = await self.db.execute(
            "INSERT OR IGNORE INTO funding_payments VALUES (?,?,?,?,?)",
            (venue, payment_id, symbol, _text(amount), ts),
        )
        return cursor.rowcount == 1

    async def funding_since(self, since_ts: float) -> list[dict[str, Any]]:
        async with self.db.execute(
            "SELECT venue, payment_id, symbol, amount, ts FROM funding_payments WHERE ts >= ?", (since_ts,)
        ) as cur:
            rows = await cur.fetchall()
        out = []
        for r in rows:
            try:
                out.append({"venue": r[0], "payment_id": r[1], "symbol": r[2], "amount": _dec(r[3]), "ts": r[4]})
            except (InvalidOperation, TypeError, ValueError):
                log.error("journal: unreadable funding row %s/%s skipped", r[0], r[1])
        return out

    # -- trades ------------------------------------------------------------------------
    async def open_trade(self, trade_id: str, intent_id: str, strategy: str, base: str, legs: list[dict]) -> None:
        await self.db.execute(
            "INSERT INTO trades VALUES (?,?,?,?,?,'open',?,NULL)",
            (trade_id, intent_id, strategy, base, json.dumps(legs, default=str), self._clock()),
        )

    async def finish_intent(self, intent_id: str, status: str, change: "TradeChange | None" = None) -> None:
        """An intent's final status and the change it made to a trade, in ONE transaction: a crash
        leaves either both (the trade as the venues hold it) or neither (the intent is still
        'sending' and start-up recovery rebuilds the change from the journalled orders)."""
        now = self._clock()
        statements: list[tuple[str, tuple]] = []
        if change is not None:
            statements.append(change.statement(now))
        statements.append(("UPDATE intents SET status=?, updated_ts=? WHERE intent_id=?", (status, now, intent_id)))
        await self._transaction(statements)

    async def apply_trade_change(self, change: "TradeChange") -> None:
        """A trade change of its own (start-up adoption of the venues' sizes), committed atomically."""
        await self._transaction([change.statement(self._clock())])

    async def close_trade(self, trade_id: str) -> None:
        await self.db.execute(
            "UPDATE trades SET status='closed', closed_ts=? WHERE trade_id=?", (self._clock(), trade_id)
        )

    async def open_trades(self) -> list[dict[str, Any]]:
        async with self.db.execute(
            "SELECT trade_id, intent_id, strategy, base, legs, opened_ts FROM trades WHERE status='open'"
        ) as cur:
            rows = await cur.fetchall()
        out = []
        for r in rows:
            try:
                out.append({"trade_id": r[0], "intent_id": r[1], "strategy": r[2], "base": r[3],
                            "legs": json.loads(r[4]), "opened_ts": r[5]})
            except ValueError:
                log.error("journal: unreadable trade row %s skipped", r[0])
        return out

    # -- trading-state audit ---------------------------------------------------------------
    async def record_state_change(self, from_state: str | None, to_state: str, reason: str, actor: str) -> None:
        await self.db.execute(
            "INSERT INTO state_changes (ts, from_state, to_state, reason, actor) VALUES (?,?,?,?,?)",
            (self._clock(), from_state, to_state, reason, actor),
        )

    async def state_changes(self, limit: int = 100) -> list[dict[str, Any]]:
        async with self.db.execute(
            "SELECT ts, from_state, to_state, reason, actor FROM state_changes ORDER BY id DESC LIMIT ?", (limit,)
        ) as cur:
            rows = await cur.fetchall()
        return [{"ts": r[0], "from": r[1], "to": r[2], "reason": r[3], "actor": r[4]} for r in rows]

    async def last_state(self) -> str | None:
        changes = await self.state_changes(1)
        return changes[0]["to"] if changes else None

    # -- instrument cache ----------------------------------------------------------------------
    @staticmethod
    def instrument_text(instrument: Any) -> str:
        """An Instrument as JSON: every field, Decimals as their exact strings (str(Decimal) keeps the
        exponent, so the value read back is the same Decimal, digit for digit)."""
        import dataclasses

        return json.dumps({f.name: (str(v) if isinstance(v, Decimal) else v)
                           for f in dataclasses.fields(instrument) for v in (getattr(instrument, f.name),)},
                          sort_keys=True)

    @staticmethod
    def instrument_of(text: str) -> Any:
        """The Instrument of `instrument_text`, or None when the row does not hold exactly the fields
        this build's Instrument has (a row written by another version is a cache miss, not a guess)."""
        import dataclasses

        from perpbot.core.instruments import Instrument

        try:
            data = json.loads(text)
            fields = dataclasses.fields(Instrument)
            if not isinstance(data, dict) or set(data) != {f.name for f in fields}:
                return None
            values = {}
            for f in fields:
                value = data[f.name]
                if f.type in ("Decimal", Decimal):
                    if not isinstance(value, str):
                        return None
                    value = _dec(value)
                elif f.type in ("int", int):
                    if not isinstance(value, int) or isinstance(value, bool):
                        return None
                elif not isinstance(value, str):
                    return None
                values[f.name] = value
            return Instrument(**values)
        except (ValueError, TypeError, InvalidOperation):
            return None

    async def save_instruments(self, instruments: Any) -> None:
        """Insert or replace cached instruments (one statement, no explicit transaction)."""
        now = self._clock()
        rows = [(i.venue, i.symbol, self.instrument_text(i), now) for i in instruments]
        if rows:
            await self.db.executemany(
                "INSERT INTO instruments VALUES (?,?,?,?) ON CONFLICT(venue, symbol) DO UPDATE SET"
                " instrument=excluded.instrument, updated_ts=excluded.updated_ts", rows,
            )

    async def cached_instruments(self) -> dict[tuple[str, str], Any]:
        """Every readable cached instrument by (venue, symbol); unreadable rows are skipped (logged)."""
        async with self.db.execute("SELECT venue, symbol, instrument FROM instruments") as cur:
            rows = await cur.fetchall()
        return self._instruments_of_rows(rows)

    @classmethod
    def read_cached_instruments(cls, path: str | Path) -> dict[tuple[str, str], Any]:
        """The cache read synchronously with plain sqlite3, read-only (for callers without an open
        Journal, e.g. the feeds' contract sizes). {} when the file, or the table, is not there."""
        import contextlib
        import sqlite3

        if str(path) == ":memory:" or not Path(path).exists():
            return {}
        try:
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)) as db:
                rows = db.execute("SELECT venue, symbol, instrument FROM instruments").fetchall()
        except sqlite3.Error as exc:
            log.info("journal %s: no instrument cache read (%s)", path, exc)
            return {}
        return cls._instruments_of_rows(rows)

    @classmethod
    def _instruments_of_rows(cls, rows: Any) -> dict[tuple[str, str], Any]:
        out = {}
        for venue, symbol, text in rows:
            instrument = cls.instrument_of(text)
            if instrument is None or (instrument.venue, instrument.symbol) != (venue, symbol):
                log.warning("journal: cached instrument %s %s unreadable by this build; ignored", venue, symbol)
                continue
            out[(venue, symbol)] = instrument
        return out

    async def save_venue_markets(self, venue: str, markets: Any, currencies: Any) -> bool:
        """Cache a venue client's market list (JSON); False (nothing cached) when it is not JSON."""
        try:
            text = json.dumps(markets, allow_nan=False)
            extra = None if currencies is None else json.dumps(currencies, allow_nan=False)
        except (TypeError, ValueError) as exc:
            log.warning("journal: market list of %s not cacheable (%s)", venue, exc)
            return False
        await self.db.execute(
            "INSERT INTO venue_markets VALUES (?,?,?,?) ON CONFLICT(venue) DO UPDATE SET"
            " markets=excluded.markets, currencies=excluded.currencies, updated_ts=excluded.updated_ts",
            (venue, text, extra, self._clock()),
        )
        return True

    async def cached_venue_markets(self) -> dict[str, tuple[Any, Any]]:
        """venue -> (markets, currencies) as cached; unreadable rows are skipped (logged)."""
        async with self.db.execute("SELECT venue, markets, currencies FROM venue_markets") as cur:
            rows = await cur.fetchall()
        out = {}
        for venue, markets, currencies in rows:
            try:
                out[venue] = (json.loads(markets), None if currencies is None else json.loads(currencies))
            except ValueError:
                log.warning("journal: cached market list of %s unreadable; ignored", venue)
        return out
