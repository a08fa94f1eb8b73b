"""The engine's shared state (one Desk per engine) and the small helpers every part reads it with.

The parts of the engine (perpbot.execution.*) each own one job and hold this one Desk: the
clients, the journal, the portfolio, the open trades, the trading state and the flags. Nothing
here does I/O; the helpers are plain functions over the Desk.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import deque
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from perpbot.book.store import BookStore
from perpbot.core.instruments import Instrument
from perpbot.core.margin import liquidation_distance_pct
from perpbot.core.quote_rate import QuoteRate
from perpbot.portfolio.collateral import CollateralPlan, collateral_plan
from perpbot.core.numbers import scaled_to_decimal
from perpbot.core.orders import OrderRequest, OrderResult, Side
from perpbot.core.ports import ExchangeClient
from perpbot.core.versioned import VersionedDict
from perpbot.journal.redis_state import RedisState
from perpbot.journal.sqlite import Journal
from perpbot.portfolio.book import Portfolio, dstr
from perpbot.risk.gate import RiskGate
from perpbot.settings import Settings
from perpbot.telemetry.metrics import Metrics

if TYPE_CHECKING:
    from perpbot.execution.attribution import TradeAttributions
    from perpbot.execution.confirmations import Confirmations

STATES = ("ACTIVE", "REDUCING", "PAUSED", "HALTED")
STARTING_REASON = "starting: waiting for reconciliation with every venue"
ZERO = Decimal(0)

Key = tuple[str, str]


@dataclasses.dataclass(slots=True)
class Sent:
    """What one order did: filled base quantity (this order only) and how it ended."""

    filled_base: Decimal = ZERO
    rejected: bool = False
    unknown: bool = False
    result: OrderResult | None = None
    error: str | None = None


class InFlight(dict[str, dict[str, Any]]):
    """client id -> the order being sent (a plain dict to every reader), that also counts the orders ever
    put in flight per (venue, symbol) in `sent`: the periodic reconciliation, which reads the venues
    outside the trade lock, tells from it that an order came and went on a key while it read."""

    __slots__ = ("sent",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: dict[Key, int] = {}
        for order in self.values():
            self._count(order)

    def __setitem__(self, client_order_id: str, order: dict[str, Any]) -> None:
        super().__setitem__(client_order_id, order)
        self._count(order)

    def _count(self, order: dict[str, Any]) -> None:
        key = (str(order.get("venue")), str(order.get("symbol")))
        self.sent[key] = self.sent.get(key, 0) + 1


def in_flight_keys(desk: Desk) -> set[Key]:
    """(venue, symbol) of every order in flight now."""
    return {(str(o.get("venue")), str(o.get("symbol"))) for o in desk.in_flight.values()}


def sent_count(desk: Desk, key: Key) -> int:
    """Orders ever put in flight on `key` (0 when the in-flight map is a plain dict that does not count)."""
    sent: dict[Key, int] = getattr(desk.in_flight, "sent", {})
    return sent.get(key, 0)


@dataclasses.dataclass(eq=False)
class Desk:
    """Everything the engine's parts share. The collaborators first, then the mutable state."""

    settings: Settings
    clients: dict[str, ExchangeClient]
    gate: RiskGate
    store: BookStore
    instruments: dict[Key, Instrument]
    journal: Journal
    portfolio: Portfolio
    metrics: Metrics
    redis_state: RedisState | None = None
    funding_map: dict[Any, Any] = dataclasses.field(default_factory=dict)
    clock: Callable[[], float] = time.time
    # Trading state (perpbot.execution.states owns the moves).
    state: str = "PAUSED"
    state_reason: str = STARTING_REASON
    state_since: float = 0.0
    leg_failures: int = 0
    reconciled: dict[str, bool] = dataclasses.field(default_factory=dict)
    venue_connected: dict[str, bool] = dataclasses.field(default_factory=dict)
    recent_order_times: deque[float] = dataclasses.field(default_factory=lambda: deque(maxlen=10_000))
    unhedged_usdt_seconds: Decimal = ZERO
    residue_accrued_at: float | None = None
    residue_notional: Decimal = ZERO  # the residues' notional at the last accrual (held until the next)
    # Counts its writes: the scanner's view of the open trades is rebuilt only when it changed.
    open_trades: VersionedDict[str, dict[str, Any]] = dataclasses.field(default_factory=VersionedDict)
    in_flight: dict[str, dict[str, Any]] = dataclasses.field(default_factory=InFlight)  # client id -> order
    venue_open_orders: dict[str, list[OrderResult]] = dataclasses.field(default_factory=dict)
    # (venue, client id) -> (filled, avg price, fee) of an order not final yet.
    order_fills: dict[Key, tuple[Decimal, Decimal, Decimal]] = dataclasses.field(default_factory=dict)
    trade_lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    # Per venue: the newest funding payment journalled (epoch ms); the next fetch starts there.
    funding_cursor_ms: dict[str, int] = dataclasses.field(default_factory=dict)
    funding_synced_at: float = 0.0
    stop_event: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    stopping: bool = False  # graceful stop: no new decision is taken, the one in flight finishes
    periodic_failures: int = 0
    # (venue, symbol) keys a reconciliation left alone because a trade touched them while it read the venues.
    reconcile_skips: int = 0
    # Legs whose margin series are exported (perpbot.execution.desk.publish_margins removes the stale ones).
    margin_series: set[Key] = dataclasses.field(default_factory=set)
    # The configured USDC/USDT rate counts as taken at start unless risk.usdc_usdt_rate_as_of says when.
    quote_rate_as_of: float = dataclasses.field(default_factory=time.time)
    # (venue, symbol) where the venue pushed a liquidation or ADL of ours ((venue, None): symbol not named);
    # the margin watch closes their trades' other legs at once (perpbot.execution.margin_guard).
    forced_closes: set[tuple[str, str | None]] = dataclasses.field(default_factory=set)
    # (venue, symbol) -> since when (epoch s) its local position is in doubt: a reduce-only order of ours was
    # refused there, or the venue pushed a liquidation/ADL of it. No order goes there until a statement of the
    # venue's taken after that time is booked (perpbot.execution.doubts).
    doubted: dict[Key, float] = dataclasses.field(default_factory=dict)
    # venue -> since when (epoch s) its free margin is in doubt: it refused an entry for margin while the bot's
    # view allowed it (its equity read before a move): no entry there until its balance is read again.
    margin_doubted: dict[str, float] = dataclasses.field(default_factory=dict)
    # venue -> when (epoch s) the reconciliation's last read of its positions and balance began.
    balance_read_at: dict[str, float] = dataclasses.field(default_factory=dict)
    # (venue, symbol) -> when a fill of ours there was last booked (epoch s): a pushed position received
    # before it may not show that fill yet.
    fill_booked_at: dict[Key, float] = dataclasses.field(default_factory=dict)
    # Local positions a pushed statement corrected (as the reconciliation's position changes), newest last.
    pushed_corrections: deque[dict[str, Any]] = dataclasses.field(default_factory=lambda: deque(maxlen=1000))
    # Venues the account preflight keeps out of trading, with the reason (perpbot.execution.preflight).
    venues_blocked: dict[str, str] = dataclasses.field(default_factory=dict)
    # The collateral transfer (source, target) last exported, if any.
    transfer_series: tuple[str, str] | None = None
    # The private streams' bookings and waiters (perpbot.execution.confirmations); None without streams.
    confirmations: Confirmations | None = None
    # Per-trade attribution (perpbot.execution.attribution), told of every trade that closes; None: not kept.
    attributions: TradeAttributions | None = None

    def __post_init__(self) -> None:
        self.state_since = self.clock()
        self.reconciled = {venue: False for venue in self.clients}
        self.venue_connected = {venue: False for venue in self.clients}


def side(value: str) -> Side:
    """A journalled side ("buy"/"sell") as the order vocabulary's Side."""
    if value not in ("buy", "sell"):
        raise ValueError(f"not an order side: {value!r}")
    return "buy" if value == "buy" else "sell"


def s(value: Any) -> Any:
    """A Decimal as its plain string (JSON-ready); anything else as it is."""
    return dstr(value) if isinstance(value, Decimal) else value


def mark(desk: Desk, venue: str, symbol: str) -> Decimal | None:
    """The mid of a usable book, else the last mark the venue reported."""
    book = desk.store.get(venue, symbol)
    if book is not None and desk.store.is_usable(book):
        bid, ask = book.best_bid(), book.best_ask()
        if bid is not None and ask is not None:
            return scaled_to_decimal(bid + ask) / 2
    return desk.portfolio.marks.get((venue, symbol))


def base_qty(desk: Desk, venue: str, symbol: str, venue_qty: Decimal) -> Decimal:
    """A venue quantity (contracts on OKX) in base units."""
    instrument = desk.instruments.get((venue, symbol))
    return venue_qty * (instrument.contract_size if instrument else Decimal(1))


def request_base(desk: Desk, request: OrderRequest) -> Decimal:
    return base_qty(desk, request.venue, request.symbol, request.qty)


def publish(desk: Desk) -> None:
    """P&L, equity, positions and utilisation as metrics."""
    pnl = desk.portfolio.pnl_today()
    m = desk.metrics
    m.pnl_realized.set(float(pnl["realized"]))
    m.pnl_unrealized.set(float(pnl["unrealized"]))
    m.fees_paid.set(float(pnl["fees"]))
    m.funding_pnl.set(float(pnl["funding"]))
    for venue, balance in desk.portfolio.balances.items():
        m.equity.labels(venue).set(float(balance.equity))
    m.active_positions.set(len(desk.portfolio.open_positions()))
    publish_margins(desk)
    publish_collateral(desk)
    rate = quote_rate(desk)
    m.quote_rate.set(float(rate.usdc_usdt))
    m.quote_rate_fresh.set(1 if rate.fresh(desk.clock()) else 0)
    m.capital_utilization.set(float(desk.portfolio.capital_utilization_percent()))


def publish_margins(desk: Desk) -> None:
    """Each leg's liquidation price, distance from the live mark, maintenance margin and ADL rank as metrics;
    the series of a leg no longer held are removed."""
    m = desk.metrics
    shown: set[tuple[str, str]] = set()
    for (venue, symbol), margin in desk.portfolio.margins.items():
        shown.add((venue, symbol))
        live = mark(desk, venue, symbol) or margin.mark
        distance = liquidation_distance_pct(margin.size, live, margin.liquidation_price) if live else None
        for gauge, value in ((m.liquidation_distance, distance), (m.liquidation_price, margin.liquidation_price),
                             (m.maintenance_margin, margin.maintenance_margin),
                             (m.adl_rank, None if margin.adl_rank is None else Decimal(margin.adl_rank))):
            if value is None:
                with contextlib.suppress(KeyError):
                    gauge.remove(venue, symbol)
            else:
                gauge.labels(venue, symbol).set(float(value))
    for venue, symbol in desk.margin_series - shown:
        for gauge in (m.liquidation_distance, m.liquidation_price, m.maintenance_margin, m.adl_rank):
            with contextlib.suppress(KeyError):
                gauge.remove(venue, symbol)
    desk.margin_series = shown


def collateral(desk: Desk) -> CollateralPlan:
    """Each venue's equity against what its legs and an intended trade need (perpbot.portfolio.collateral)."""
    settings = desk.settings
    notional: dict[str, Decimal] = {}
    for (venue, symbol), position in desk.portfolio.positions.items():
        if position.size:
            price = mark(desk, venue, symbol) or position.entry_price
            notional[venue] = notional.get(venue, ZERO) + desk.portfolio.to_usdt(venue, abs(position.size) * price)
    strategies = settings.strategies
    intended = max(strategies.price_spread.order_size_usdt, strategies.funding_spread.order_size_usdt)
    # In USDT: a USDC venue's equity and notional at the USDC/USDT rate (perpbot.portfolio.collateral).
    portfolio = desk.portfolio
    equity = {venue: portfolio.to_usdt(venue, balance.equity) for venue, balance in portfolio.balances.items()}
    return collateral_plan(equity, notional, settings.risk.max_leverage, intended,
                           settings.risk.collateral_min_transfer_usdt)


def publish_collateral(desk: Desk) -> None:
    """The imbalance per venue and the transfer that would restore it as metrics."""
    m = desk.metrics
    plan = collateral(desk)
    for venue, value in plan.imbalance.items():
        m.collateral_imbalance.labels(venue).set(float(value))
    shown = (plan.transfer.source, plan.transfer.target) if plan.transfer is not None else None
    if desk.transfer_series is not None and desk.transfer_series != shown:
        with contextlib.suppress(KeyError):
            m.collateral_transfer.remove(*desk.transfer_series)
    if plan.transfer is not None:
        m.collateral_transfer.labels(plan.transfer.source, plan.transfer.target).set(float(plan.transfer.amount))
    desk.transfer_series = shown


def quote_rate(desk: Desk) -> QuoteRate:
    """The configured USDC/USDT rate, taken at risk.usdc_usdt_rate_as_of (else the bot's start)."""
    risk = desk.settings.risk
    as_of = risk.usdc_usdt_rate_as_of if risk.usdc_usdt_rate_as_of is not None else desk.quote_rate_as_of
    return QuoteRate(risk.usdc_usdt_rate, as_of, risk.usdc_usdt_max_age_s)
