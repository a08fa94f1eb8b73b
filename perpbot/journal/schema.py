"""The journal's schema (its migrations, applied in order at open) and how money is stored:
canonical decimal TEXT (exact), never REAL."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

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
    # 3: the venue's own trade ids (private streams, issue 14). One row per execution the venue
    # reported, by (venue, symbol, trade id): a fill pushed twice, or pushed and also read over
    # REST, or seen again after a restart, is recognised and never booked twice. An order's
    # streamed totals are the sum of its rows.
    """
    CREATE TABLE venue_trades (
        venue TEXT NOT NULL, symbol TEXT NOT NULL, trade_id TEXT NOT NULL, client_order_id TEXT,
        venue_order_id TEXT NOT NULL, side TEXT NOT NULL, qty TEXT NOT NULL, price TEXT NOT NULL,
        fee TEXT NOT NULL, fee_currency TEXT NOT NULL, ts_ms INTEGER NOT NULL, recv_ts REAL NOT NULL,
        PRIMARY KEY (venue, symbol, trade_id)
    );
    CREATE INDEX venue_trades_order ON venue_trades(venue, client_order_id);
    """,
    # 4: the control API's audit trail (issue 17): every state-changing request and every refusal, with
    # the scope of the token used (never the token), where it came from and what it got.
    """
    CREATE TABLE control_audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, method TEXT NOT NULL, path TEXT NOT NULL,
        scope TEXT, remote TEXT, origin TEXT, status INTEGER NOT NULL, outcome TEXT NOT NULL,
        idempotency_key TEXT, operation_id TEXT
    );
    CREATE INDEX control_audit_ts ON control_audit(ts);
    """,
    # 5: per-trade attribution (issue 18): each trade's figures per leg against the decisions'
    # expectations (perpbot.portfolio.attribution as JSON, amounts as exact strings), rewritten when
    # the trade changes or funding for its holding time arrives; `observed` = its slippage is in the metrics.
    # The indexes let a trade's intents, orders, fills and funding be read without scanning the journal.
    """
    CREATE TABLE trade_attributions (
        trade_id TEXT PRIMARY KEY, strategy TEXT NOT NULL, base TEXT NOT NULL, opened_ts REAL NOT NULL,
        closed_ts REAL, attribution TEXT NOT NULL, observed INTEGER NOT NULL DEFAULT 0, updated_ts REAL NOT NULL
    );
    CREATE INDEX trade_attributions_closed ON trade_attributions(closed_ts);
    CREATE INDEX IF NOT EXISTS intents_trade ON intents(trade_id);
    CREATE INDEX IF NOT EXISTS orders_intent ON orders(intent_id);
    CREATE INDEX IF NOT EXISTS fills_order ON fills(venue, client_order_id);
    CREATE INDEX IF NOT EXISTS funding_payments_ts ON funding_payments(ts);
    CREATE INDEX IF NOT EXISTS trades_closed ON trades(closed_ts);
    CREATE INDEX IF NOT EXISTS trades_status ON trades(status);
    """,
]


class JournalError(Exception):
    """The journal cannot be used (newer schema, unreadable file) or a value is not storable."""


def text(value: Decimal) -> str:
    """An amount as the journal stores it; a non-finite or non-Decimal amount is refused."""
    if not isinstance(value, Decimal) or not value.is_finite():
        raise JournalError(f"refusing to journal non-finite or non-Decimal amount {value!r}")
    return format(value.normalize(), "f") if value else "0"


def dec(value: str | None) -> Decimal | None:
    """A stored amount read back; InvalidOperation when it is not a finite decimal."""
    if value is None:
        return None
    result = Decimal(value)
    if not result.is_finite():
        raise InvalidOperation(value)
    return result


def amount(value: str | None) -> Decimal:
    """A stored NOT NULL amount read back (InvalidOperation/TypeError when unreadable or missing)."""
    result = dec(value)
    if result is None:
        raise TypeError("missing amount")
    return result
