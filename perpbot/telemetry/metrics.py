"""Every Prometheus series perpbot exports, defined once with the SPEC's exact names.

A `Metrics` object owns its own CollectorRegistry (no global state), so tests and several
bots in one process never collide. Components receive it and touch only its attributes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

disable_created_metrics()  # keep the exposition to the series operators query

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0)
EXEC_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SLIPPAGE_BUCKETS = (-50.0, -20.0, -10.0, -5.0, -2.0, -1.0, 0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        # --- SPEC names -----------------------------------------------------------
        self.system_health = Gauge("perpbot_system_health", "Overall health 0-100 (%)", registry=r)
        self.websocket_connected = Gauge(
            "perpbot_websocket_connected", "1 when the venue feed is connected", ["exchange"], registry=r
        )
        self.orders_total = Counter(
            "perpbot_orders", "Orders sent to venues", ["exchange", "side"], registry=r
        )
        self.orders_success_total = Counter(
            "perpbot_orders_success", "Orders the venue accepted (filled or partially filled)",
            ["exchange", "side"], registry=r,
        )
        self.order_execution_duration = Histogram(
            "perpbot_order_execution_duration_seconds", "Order round trip, send to venue answer",
            ["exchange"], buckets=EXEC_BUCKETS, registry=r,
        )
        self.capital_utilization = Gauge(
            "perpbot_capital_utilization_percent", "Used margin / equity across venues (%)", registry=r
        )
        self.opportunities_total = Counter(
            "perpbot_arbitrage_opportunities", "Opportunities found", ["strategy"], registry=r
        )
        self.active_positions = Gauge(
            "perpbot_active_positions", "Open positions (venue x symbol with non-zero size)", registry=r
        )
        self.websocket_latency = Histogram(
            "perpbot_websocket_latency_seconds", "Receive time minus exchange timestamp",
            ["exchange"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.websocket_latency_current = Gauge(
            "perpbot_websocket_latency_current_seconds", "Latest smoothed feed latency",
            ["exchange"], registry=r,
        )
        self.websocket_ping_rtt = Gauge(
            "perpbot_websocket_ping_rtt_seconds", "Last keepalive ping round trip", ["exchange"], registry=r
        )
        # --- market data ------------------------------------------------------------
        self.websocket_messages_total = Counter(
            "perpbot_websocket_messages", "Frames received", ["exchange"], registry=r
        )
        self.websocket_reconnects_total = Counter(
            "perpbot_websocket_reconnects", "Reconnects by reason", ["exchange", "reason"], registry=r
        )
        self.book_resyncs_total = Counter(
            "perpbot_book_resyncs", "Book resyncs by reason", ["exchange", "reason"], registry=r
        )
        self.parse_errors_total = Counter(
            "perpbot_parse_errors", "Frames that could not be parsed", ["exchange"], registry=r
        )
        self.books_valid = Gauge(
            "perpbot_books_valid", "Books currently valid", ["exchange"], registry=r
        )
        # --- trading ----------------------------------------------------------------
        self.risk_refusals_total = Counter(
            "perpbot_risk_refusals", "Orders refused by the risk gate", ["reason"], registry=r
        )
        self.orders_rejected_total = Counter(
            "perpbot_orders_rejected", "Orders the venue rejected", ["exchange", "reason"], registry=r
        )
        self.trades_total = Counter(
            "perpbot_trades", "Hedged trades by outcome", ["strategy", "outcome"], registry=r
        )
        self.pnl_realized = Gauge("perpbot_pnl_realized_usdt", "Realised PnL today (USDT)", registry=r)
        self.pnl_unrealized = Gauge("perpbot_pnl_unrealized_usdt", "Unrealised PnL (USDT)", registry=r)
        self.fees_paid = Gauge("perpbot_fees_paid_usdt", "Fees paid today (USDT)", registry=r)
        self.funding_pnl = Gauge("perpbot_funding_pnl_usdt", "Funding received minus paid today (USDT)", registry=r)
        self.equity = Gauge("perpbot_equity_usdt", "Equity per venue (USDT)", ["exchange"], registry=r)
        self.unhedged_notional = Gauge(
            "perpbot_unhedged_notional_usdt", "Notional currently not hedged (USDT)", registry=r
        )
        self.unhedged_usdt_seconds = Gauge(
            "perpbot_unhedged_usdt_seconds", "Unhedged notional x seconds used today", registry=r
        )
        self.trading_state = Gauge(
            "perpbot_trading_state", "1 for the current trading state", ["state"], registry=r
        )
        self.event_loop_lag = Histogram(
            "perpbot_event_loop_lag_seconds", "Event-loop scheduling lag",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0), registry=r,
        )
        # --- private streams (orders, fills, positions, balances, funding pushed by the venues) ---
        self.private_stream_connected = Gauge(
            "perpbot_private_stream_connected", "1 when the venue's private stream is logged in and subscribed",
            ["exchange"], registry=r,
        )
        self.order_socket_up = Gauge(
            "perpbot_order_socket_up", "1 when the venue's order-entry WebSocket is connected and logged in",
            ["exchange"], registry=r,
        )
        self.order_entry_total = Counter(
            "perpbot_order_entry", "Orders sent, by path: ws (the order socket) or rest (fallback or configured)",
            ["exchange", "path"], registry=r,
        )
        self.private_stream_last_message_age = Gauge(
            "perpbot_private_stream_last_message_age_seconds", "Seconds since the private stream's last frame",
            ["exchange"], registry=r,
        )
        self.private_stream_reconnects_total = Counter(
            "perpbot_private_stream_reconnects", "Private stream reconnects by reason", ["exchange", "reason"],
            registry=r,
        )
        self.private_fills_total = Counter(
            "perpbot_private_fills", "Executions booked from a private stream", ["exchange"], registry=r
        )
        self.private_fills_duplicate_total = Counter(
            "perpbot_private_fills_duplicate", "Executions seen again (same venue trade id) and not booked",
            ["exchange"], registry=r,
        )
        self.private_confirm_timeouts_total = Counter(
            "perpbot_private_confirm_timeouts", "Orders whose final state the stream did not show in time "
            "(resolved over REST)", ["exchange"], registry=r,
        )
        self.private_margin_events_total = Counter(
            "perpbot_private_margin_events", "Margin calls and liquidations pushed by the venue",
            ["exchange", "kind"], registry=r,
        )
        self.fill_booking_latency = Histogram(
            "perpbot_fill_booking_latency_seconds", "From a fill's receipt on the private stream to its booking",
            ["exchange"], buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5), registry=r,
        )
        # --- per-trade attribution (issue 18, perpbot.execution.attribution): realised vs expected ---
        self.slippage_bps = Histogram(
            "perpbot_slippage_bps", "Per closed trade leg: fill price against the decision's depth price "
            "(bps, + = worse)", ["exchange", "phase"], buckets=SLIPPAGE_BUCKETS, registry=r,
        )
        self.funding_realized_expected_ratio = Gauge(
            "perpbot_funding_realized_expected_ratio", "Funding realised / expected for the time held, trades "
            "closed in the last 24 h (1 when nothing was expected or received)", ["exchange"], registry=r,
        )
        self.funding_drift_usdt = Gauge(
            "perpbot_funding_drift_usdt", "Funding realised minus expected, trades closed in the last 24 h (USDT)",
            ["exchange"], registry=r,
        )
        self.fee_drift_bps = Gauge(
            "perpbot_fee_drift_bps", "Fees paid minus fees at the expected rate over traded notional, trades "
            "closed in the last 24 h (bps)", ["exchange"], registry=r,
        )
        self.component_health = Gauge(
            "perpbot_component_health", "1 when a health component is fine", ["component"], registry=r
        )
        # --- margin safety per leg (issue 16): the venue's liquidation price against the live mark ---
        self.liquidation_distance = Gauge(
            "perpbot_position_liquidation_distance_percent", "How far the mark may move against the leg before "
            "its venue liquidates it (% of the mark)", ["exchange", "symbol"], registry=r,
        )
        self.liquidation_price = Gauge(
            "perpbot_position_liquidation_price", "The leg's liquidation price as its venue states it",
            ["exchange", "symbol"], registry=r,
        )
        self.maintenance_margin = Gauge(
            "perpbot_position_maintenance_margin", "The leg's maintenance margin as its venue states it (quote)",
            ["exchange", "symbol"], registry=r,
        )
        self.quote_rate = Gauge("perpbot_quote_rate_usdc_usdt", "USDT per USDC the bot compares Hyperliquid "
                                "(USDC) with the USDT venues by", registry=r)
        self.quote_rate_fresh = Gauge("perpbot_quote_rate_fresh", "1 while the USDC/USDT rate is younger than "
                                      "risk.usdc_usdt_max_age_s; 0: USDC/USDT entries refused", registry=r)
        self.venue_preflight_ok = Gauge(
            "perpbot_venue_preflight_ok", "1 when the venue's account setup (position mode, margin mode, leverage, "
            "collateral) passed its last preflight; 0: kept out of trading", ["exchange"], registry=r,
        )
        self.collateral_imbalance = Gauge(
            "perpbot_collateral_imbalance_usdt", "Equity minus the venue's share of the total by what its legs and "
            "an intended trade need (+ surplus, - deficit)", ["exchange"], registry=r,
        )
        self.collateral_transfer = Gauge(
            "perpbot_collateral_transfer_usdt", "The transfer that would restore the collateral balance (0 series "
            "absent: none needed); moved by the operator, never automatically", ["source", "target"], registry=r,
        )
        self.internal_transfers = Counter(
            "perpbot_internal_transfers_total", "Internal transfers (a venue's funding or spot wallet into its "
            "trading wallet; risk.internal_transfers) by outcome: done, refused, unknown", ["exchange", "outcome"],
            registry=r,
        )
        self.internal_transfer_usdt = Counter(
            "perpbot_internal_transfer_usdt_total", "USDT (at the USDC/USDT rate for USDC) moved into the venue's "
            "trading wallet by accepted internal transfers", ["exchange"], registry=r,
        )
        self.adl_rank = Gauge(
            "perpbot_position_adl_rank", "The leg's auto-deleveraging rank where the venue gives one (higher "
            "goes first)", ["exchange", "symbol"], registry=r,
        )
        # --- control API (issue 17) --------------------------------------------------------
        self.control_refusals_total = Counter(
            "perpbot_control_refusals", "Control API requests refused (token, scope, origin, host, body)",
            ["reason"], registry=r,
        )

    def watch_rate_budget(self, snapshot: Callable[[], Any]) -> None:
        """Export the venues' request budget at every scrape from `snapshot()` (a
        perpbot.execution.rate_budget.BudgetSnapshot): nothing is counted on the order path itself."""
        if getattr(self, "_rate_budget_watched", False):
            return
        self.registry.register(_RateBudgetCollector(snapshot))
        self._rate_budget_watched = True

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _RateBudgetCollector:
    """perpbot_rate_budget_* and perpbot_rate_limit_responses_total, read from the budget's snapshot."""

    def __init__(self, snapshot: Callable[[], Any]) -> None:
        self._snapshot = snapshot

    def describe(self) -> list[Metric]:
        return []  # the series appear once the budget has venues

    def collect(self) -> Iterator[Metric]:
        used = GaugeMetricFamily("perpbot_rate_budget_used", "Weight or requests counted in the venue's window now",
                                 labels=["exchange", "window"])
        limit = GaugeMetricFamily("perpbot_rate_budget_limit", "The venue's limit for that window",
                                  labels=["exchange", "window"])
        blocked = GaugeMetricFamily("perpbot_rate_budget_blocked_seconds",
                                    "Seconds left of the venue's Retry-After (orders refused meanwhile)",
                                    labels=["exchange"])
        stops = CounterMetricFamily("perpbot_rate_limit_responses", "Venue answers that said stop (429, 418, ban)",
                                    labels=["exchange", "status"])
        deferred = CounterMetricFamily("perpbot_rate_budget_reads_deferred",
                                       "Reads told to wait for room or a Retry-After", labels=["exchange"])
        for venue in self._snapshot().venues:
            for window in venue.windows:
                used.add_metric([venue.venue, window.name], window.used)
                limit.add_metric([venue.venue, window.name], window.limit)
            blocked.add_metric([venue.venue], venue.blocked_for_s)
            for status, count in sorted(venue.stop_responses.items()):
                stops.add_metric([venue.venue, str(status)], count)
            deferred.add_metric([venue.venue], venue.reads_deferred)
        yield from (used, limit, blocked, stops, deferred)
