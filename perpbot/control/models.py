"""Response models of the control API: one per route, the single source of both the answers'
shape and the OpenAPI document's response schemas (`openapi_document` takes `model_json_schema`).

The engine, the feed supervisor and the health monitor hand the routes plain dicts; each handler
validates its answer through its route's model and serialises the result. The models describe
every field those producers send; a field a producer leaves out stays out of the answer (dumped
with `exclude_unset`), and extra keys pass through unchanged (`extra="allow"`), so a producer that
grows a field does not break the API before its model learns it.

Amounts are decimal strings ("1000.5"): a Decimal is turned into its `str`, as the JSON encoder did.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, RootModel


def _decimal_text(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value


DecimalStr = Annotated[str, BeforeValidator(_decimal_text)]
"""A decimal amount as a string (a Decimal is accepted and written as str(value))."""


class Answer(BaseModel):
    """Base of the route answers: known fields typed, extra keys kept as sent."""

    model_config = ConfigDict(extra="allow")


# -- market data and operations ----------------------------------------------------------------
class ConnectionStatus(Answer):
    name: str | None = None
    url: str | None = None
    connected: bool | None = None
    connected_since: float | None = None
    last_message_ts: float | None = None
    last_message_age_s: float | None = None
    reconnects: int | None = None
    resyncs: int | None = None
    messages: int | None = None
    latency_ms: float | None = None
    ping_rtt_ms: float | None = None
    last_error: str | None = None
    next_retry_s: float | None = None


class BookValidity(Answer):
    valid: bool | None = None
    invalid_reason: str | None = None


class PrivateStreamStatus(Answer):
    """A venue's private stream (orders, fills, positions pushed): perpbot.feeds.private_stream.

    `live` (logged in and subscribed) is what the risk gate asks: while it is false, entries on the
    venue are refused and orders are confirmed over REST."""

    live: bool | None = None
    connected: bool | None = None
    logged_in: bool | None = None
    connected_since: float | None = None
    last_message_age_s: float | None = None
    reconnects: int | None = None
    messages: int | None = None
    login_failures: int | None = None
    key_renewals: int | None = None
    parse_errors: int | None = None
    last_error: str | None = None


class OrderSocketStatus(Answer):
    """A venue's order-entry WebSocket: perpbot.feeds.order_socket. While `ready` is false the venue's
    orders go over REST (counted in `fallbacks`); `unknown` counts orders whose answer was lost (resolved
    by query of the client order id, never re-sent)."""

    ready: bool | None = None
    connected: bool | None = None
    reconnects: int | None = None
    sent: int | None = None
    answers: int | None = None
    unknown: int | None = None
    late_answers: int | None = None
    fallbacks: int | None = None
    login_failures: int | None = None
    parse_errors: int | None = None
    last_error: str | None = None


class VenueFeedStatus(Answer):
    connected: bool | None = None
    connected_since: float | None = None
    last_message_age_s: float | None = None
    reconnects: int | None = None
    resyncs: int | None = None
    latency_ms: float | None = None
    ping_rtt_ms: float | None = None
    books: dict[str, BookValidity] | None = None
    connections: list[ConnectionStatus] | None = None
    # The venue's private stream; null when it has none (paper mode, execution.private_streams off,
    # no trading engine wired yet). The fields above are the public market-data feed's only.
    private: PrivateStreamStatus | None = None
    # The venue's order socket; null when orders go over REST only (execution.order_entry rest, paper).
    orders: OrderSocketStatus | None = None


class WebsocketStatus(RootModel[dict[str, VenueFeedStatus]]):
    """Per venue (the key): its feed's connection state, its books' validity and its private stream."""


class BookAnswer(Answer):
    venue: str
    symbol: str
    valid: bool
    usable: bool
    invalid_reason: str | None = None
    sequence: int | None = None
    updates: int | None = None
    last_update_age_s: float | None = None
    exchange_ts_ms: int | None = None
    best_bid: str | None = None
    best_ask: str | None = None
    bids: list[list[str | None]]
    asks: list[list[str | None]]


class Liveness(Answer):
    status: str
    uptime_s: float


class Readiness(Answer):
    ready: bool
    score: float | None = None
    reasons: list[str]


class HealthDetail(Answer):
    score: float
    components: dict[str, float]
    ready: bool
    reasons: list[str]


class ConfigAnswer(RootModel[dict[str, Any]]):
    """The configuration in force (see perpbot.settings.Settings), secrets as '**********'."""


class OpenApiAnswer(Answer):
    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]
    components: dict[str, Any]


# -- engine reads and commands -------------------------------------------------------------------
class Balance(Answer):
    venue: str
    equity: DecimalStr | None = None
    available: DecimalStr | None = None
    used_margin: DecimalStr | None = None
    currency: str | None = None  # the venue's settlement currency (USDT, or USDC on Hyperliquid)
    equity_usdt: DecimalStr | None = None  # equity in USDT (a USDC venue's at usdc_usdt)
    usdc_usdt: DecimalStr | None = None  # the USDC/USDT rate equity_usdt was taken at


class Balances(RootModel[list[Balance]]):
    """One entry per venue."""


class Position(Answer):
    venue: str
    symbol: str
    side: str | None = None
    size: DecimalStr | None = None
    entry_price: DecimalStr | None = None
    mark_price: DecimalStr | None = None
    unrealized_pnl: DecimalStr | None = None
    leverage: DecimalStr | None = None
    unhedged_base: DecimalStr | None = None
    # Margin safety (issue 16), as the venue stated it (push, else REST): None until it has.
    liquidation_price: DecimalStr | None = None
    liquidation_distance_pct: DecimalStr | None = None
    maintenance_margin: DecimalStr | None = None
    margin_ratio: DecimalStr | None = None
    adl_rank: int | None = None
    margin_mode: str | None = None
    margin_source: str | None = None


class Positions(RootModel[list[Position]]):
    """One entry per open position (venue, symbol)."""


class SyncReport(Answer):
    changed: list[dict[str, Any]] | None = None
    venues: dict[str, bool] | None = None
    errors: dict[str, str] | None = None
    # Keys left to the next pass: something was in flight on them, or a fill landed while the
    # venues were read (the reconciliation reads outside the trade lock).
    skipped: list[Any] | None = None
    # POST /api/sync/positions?dry_run=true: what a sync would change, nothing applied.
    dry_run: bool | None = None
    orders_to_settle: list[dict[str, Any]] | None = None
    operation_id: str | None = None
    joined: bool | None = None  # this request joined a sync already running


class PauseAnswer(Answer):
    state: str
    reason: str | None = None
    canceled_orders: list[dict[str, Any]] | None = None


class ResumeAnswer(Answer):
    state: str
    resumed: bool | None = None
    reason: str | None = None


class TradingState(Answer):
    state: str
    reason: str | None = None
    since: float | None = None
    reconciled: dict[str, bool] | None = None
    leg_failures: int | None = None
    open_trades: int | None = None
    venues_blocked: dict[str, str] | None = None  # the account preflight's reasons (issue 16)
    positions_in_doubt: dict[str, float] | None = None  # "venue symbol" -> since (epoch s): waiting for the venue


class ActiveOrder(Answer):
    venue: str | None = None
    symbol: str | None = None
    side: str | None = None
    qty: DecimalStr | None = None
    filled_qty: DecimalStr | None = None
    price: DecimalStr | None = None
    client_order_id: str | None = None
    status: str | None = None
    purpose: str | None = None


class ActiveOrders(RootModel[list[ActiveOrder]]):
    """Orders in flight from this bot and orders still open at the venues."""


class FlattenResult(Answer):
    venue: str
    symbol: str | None = None
    size: DecimalStr | None = None
    side: str | None = None
    status: str
    filled: DecimalStr | None = None
    remaining: DecimalStr | None = None
    client_order_id: str | None = None
    error: str | None = None


class CloseAllAnswer(Answer):
    state: str | None = None
    results: list[FlattenResult]
    canceled_orders: list[dict[str, Any]] | None = None
    operation_id: str | None = None
    joined: bool | None = None  # this request joined a close-all already running (it acted once)


class PnlToday(Answer):
    realized: DecimalStr | None = None
    unrealized: DecimalStr | None = None
    fees: DecimalStr | None = None
    funding: DecimalStr | None = None
    net: DecimalStr | None = None
    usdc_usdt: DecimalStr | None = None  # USDT per USDC: a USDC venue's amounts are counted in USDT at it


class Fill(Answer):
    venue: str | None = None
    symbol: str | None = None
    side: str | None = None
    base_qty: DecimalStr | None = None
    price: DecimalStr | None = None
    fee: DecimalStr | None = None
    realized_pnl: DecimalStr | None = None
    ts: float | None = None
    strategy: str | None = None
    client_order_id: str | None = None
    trade_id: str | None = None  # the trade the fill's order belongs to (None: not a trade's order)
    attribution: TradeLeg | None = None  # its trade's leg on this venue/symbol, once the trade closed


class Trades(RootModel[list[Fill]]):
    """Fills, oldest first; each names its trade (`trade_id`) and, once that trade closed, carries the
    attribution of the trade's leg on its venue/symbol (`attribution`, a TradeLeg)."""


class TradeLeg(Answer):
    """One leg's attribution (perpbot.portfolio.attribution.LegAttribution): every amount a decimal string."""

    venue: str
    symbol: str
    side: str  # the entry's side: buy = the long leg
    entry_qty: DecimalStr | None = None
    entry_price: DecimalStr | None = None
    entry_top_price: DecimalStr | None = None
    entry_depth_price: DecimalStr | None = None
    exit_qty: DecimalStr | None = None
    exit_price: DecimalStr | None = None
    exit_top_price: DecimalStr | None = None
    exit_depth_price: DecimalStr | None = None
    entry_slippage_usdt: DecimalStr | None = None
    entry_slippage_bps: DecimalStr | None = None
    entry_slippage_top_usdt: DecimalStr | None = None
    entry_slippage_top_bps: DecimalStr | None = None
    exit_slippage_usdt: DecimalStr | None = None
    exit_slippage_bps: DecimalStr | None = None
    exit_slippage_top_usdt: DecimalStr | None = None
    exit_slippage_top_bps: DecimalStr | None = None
    fees_usdt: DecimalStr | None = None
    expected_fees_usdt: DecimalStr | None = None
    fee_drift_usdt: DecimalStr | None = None
    funding_usdt: DecimalStr | None = None
    expected_funding_usdt: DecimalStr | None = None
    funding_drift_usdt: DecimalStr | None = None
    held_s: DecimalStr | None = None
    expected_basis_usdt: DecimalStr | None = None
    slippage_usdt: DecimalStr | None = None
    basis_usdt: DecimalStr | None = None
    total_usdt: DecimalStr | None = None
    traded_notional_usdt: DecimalStr | None = None
    parts: dict[str, DecimalStr | None] | None = None  # expected basis, slippage, fees, funding: sum = total_usdt


class TradeAttributionAnswer(Answer):
    """GET /api/trades/{trade_id}: the trade's attribution per leg against its decisions' expectations."""

    trade_id: str
    strategy: str
    base: str
    status: str  # open | closed
    opened_ts: float
    closed_ts: float | None = None
    expected_edge_bps: DecimalStr | None = None
    expected_edge_usdt: DecimalStr | None = None
    realized_pnl_usdt: DecimalStr | None = None
    totals: dict[str, DecimalStr | None]
    legs: list[TradeLeg]


class AttributionRow(Answer):
    """One UTC day, strategy and venue of GET /api/pnl/attribution (figures as decimal strings)."""

    day: str
    strategy: str
    venue: str
    legs: int
    entry_slippage_usdt: DecimalStr | None = None
    exit_slippage_usdt: DecimalStr | None = None
    entry_slippage_top_usdt: DecimalStr | None = None
    exit_slippage_top_usdt: DecimalStr | None = None
    fees_usdt: DecimalStr | None = None
    expected_fees_usdt: DecimalStr | None = None
    fee_drift_usdt: DecimalStr | None = None
    funding_usdt: DecimalStr | None = None
    expected_funding_usdt: DecimalStr | None = None
    funding_drift_usdt: DecimalStr | None = None
    expected_basis_usdt: DecimalStr | None = None
    slippage_usdt: DecimalStr | None = None
    basis_usdt: DecimalStr | None = None
    total_usdt: DecimalStr | None = None
    traded_notional_usdt: DecimalStr | None = None
    funding_realized_expected_ratio: DecimalStr | None = None


class PnlAttribution(Answer):
    days: int
    rows: list[AttributionRow]


class OperationAnswer(Answer):
    """A close-all or sync operation (202 while it runs; GET /api/operations/{id})."""

    id: str
    kind: str
    status: str  # running | done | failed
    started_at: float
    finished_at: float | None = None
    joined: int | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    poll: str


class AuditRecord(Answer):
    ts: float
    method: str
    path: str
    scope: str | None = None  # the token's scope: trade, read, or null (none or a wrong one)
    remote: str | None = None
    origin: str | None = None
    status: int
    outcome: str
    idempotency_key: str | None = None
    operation_id: str | None = None


class AuditTrailAnswer(RootModel[list[AuditRecord]]):
    """Audit records, oldest first."""


class ErrorAnswer(BaseModel):
    """Every error answer (4xx, 5xx); refusals name their reason (e.g. wrong_token, foreign_origin)."""

    error: str
    reason: str | None = None


# Route handler name -> its answer's model (the /metrics route answers Prometheus text: no model).
RESPONSE_MODELS: dict[str, type[BaseModel]] = {
    "websocket_status": WebsocketStatus,
    "book": BookAnswer,
    "live": Liveness,
    "ready": Readiness,
    "health_detail": HealthDetail,
    "config": ConfigAnswer,
    "openapi": OpenApiAnswer,
    "balances": Balances,
    "positions": Positions,
    "sync_positions": SyncReport,
    "pause": PauseAnswer,
    "resume": ResumeAnswer,
    "trading_state": TradingState,
    "active_orders": ActiveOrders,
    "close_all": CloseAllAnswer,
    "pnl_today": PnlToday,
    "trades": Trades,
    "trade": TradeAttributionAnswer,
    "pnl_attribution": PnlAttribution,
    "operation": OperationAnswer,
    "audit": AuditTrailAnswer,
}

REF_TEMPLATE = "#/components/schemas/{model}"


def component_schemas() -> dict[str, dict[str, Any]]:
    """Every model's JSON schema, keyed by model name, nested models included (OpenAPI components)."""
    out: dict[str, dict[str, Any]] = {"Error": ErrorAnswer.model_json_schema(ref_template=REF_TEMPLATE)}
    for model in RESPONSE_MODELS.values():
        schema = model.model_json_schema(ref_template=REF_TEMPLATE)
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out


def dump(model: type[BaseModel], data: Any) -> Any:
    """`data` validated by `model`, back as JSON-ready Python (fields not sent stay out)."""
    return model.model_validate(data).model_dump(exclude_unset=True)
