"""The risk gate: turns decisions and single orders into ApprovedOrders, or refusals by rule."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from decimal import Decimal

from perpbot.core.decisions import Decision, Leg, Refusal
from perpbot.core.instruments import Instrument
from perpbot.core.orders import OrderRequest
from perpbot.risk import margin, quotes, rules
from perpbot.risk.approved import ApprovedOrder, _mint
from perpbot.risk.context import OrderBudget, RiskContext
from perpbot.scanner.depth import BPS, common_base_step, floor_to_step
from perpbot.settings import ExecutionSettings, RiskSettings
from perpbot.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

_ONE = Decimal(1)
_MINUTE = 60.0


LOG_EVERY_S = 10.0  # a refusal rule is logged at most this often; every refusal is counted

class RiskGate:
    """Every order passes here. Synchronous and deterministic: the same decision and context
    always give the same answer; the only side effects are metrics, one log line per refusal,
    and recording approved orders in `ctx.recent_order_times` for the rate limit.

    `rate_budget` (the venues' request budget, perpbot.execution.rate_budget) is asked for every order:
    an order it cannot take now is refused (`rate_budget`, `rate_limited`), never delayed."""

    def __init__(self, risk: RiskSettings, execution: ExecutionSettings, metrics: Metrics,
                 rate_budget: OrderBudget | None = None) -> None:
        self.risk = risk
        self.execution = execution
        self.metrics = metrics
        self.rate_budget = rate_budget
        # Orders an entry leaves free on each of its venues for the repairs it may need.
        self._entry_reserve = execution.rate_budget.entry_reserve_orders
        self._slip = execution.slippage_bps / BPS
        # The two slippage multipliers, computed once (the same Decimals limit_price always used).
        self._up = _ONE + self._slip
        self._down = _ONE - self._slip
        self._last_logged: dict[str, float] = {}
        self._held_back: dict[str, int] = {}

    # -- pricing and sizing ------------------------------------------------------------
    def limit_price(self, instrument: Instrument, side: str, ref_price: Decimal) -> Decimal:
        """IOC limit: ref moved by slippage_bps against us, rounded onto the tick inside the band
        (buys round down, sells round up)."""
        moved = ref_price * self._up if side == "buy" else ref_price * self._down
        return instrument.round_price(moved, side)

    @staticmethod
    def common_qty(a: Instrument, b: Instrument, base_qty: Decimal) -> Decimal:
        """The base quantity on BOTH lot grids, rounded down (so the legs hedge exactly)."""
        return floor_to_step(base_qty, common_base_step(a, b))

    def _leg_request(self, leg: Leg, instrument: Instrument, base_qty: Decimal, client_id: str) -> OrderRequest:
        # base_qty is on the common grid, hence an exact multiple of this venue's lot.
        venue_qty = instrument.base_to_venue_qty(base_qty)
        return OrderRequest(
            venue=leg.venue,
            symbol=leg.symbol,
            side=leg.side,
            qty=venue_qty,
            price=self.limit_price(instrument, leg.side, leg.ref_price),
            client_order_id=client_id,
            reduce_only=False,
            time_in_force="IOC",
        )

    # -- entry: both legs or none -----------------------------------------------------------
    def approve_entry(
        self, decision: Decision, ctx: RiskContext, intent_id: str, client_ids: tuple[str, str]
    ) -> tuple[list[ApprovedOrder], list[Refusal]]:
        """Both legs approved, or none with every refusal found (each counted and logged once)."""
        refusals = self._entry_refusals(decision, ctx, client_ids)
        if isinstance(refusals, tuple):
            requests = refusals
            approved = [_mint(request, rules.ENTRY, intent_id) for request in requests]
            self._record(ctx, len(approved))
            return approved, []
        self._refuse(refusals)
        return [], refusals

    def _entry_refusals(
        self, decision: Decision, ctx: RiskContext, client_ids: tuple[str, str]
    ) -> list[Refusal] | tuple[OrderRequest, OrderRequest]:
        risk = self.risk
        if decision.action != "open":
            return [Refusal("hedge_shape", f"approve_entry got a {decision.action} decision")]
        shape = rules.rule_hedge_shape(decision)
        if shape is not None:
            return [shape]
        leg_a, leg_b = decision.legs
        missing = [
            r for r in (rules.rule_instrument_known(leg.venue, leg.symbol, ctx) for leg in decision.legs) if r
        ]
        if missing:
            return missing
        inst_a = ctx.instruments[(leg_a.venue, leg_a.symbol)]
        inst_b = ctx.instruments[(leg_b.venue, leg_b.symbol)]
        qty = self.common_qty(inst_a, inst_b, min(leg_a.base_qty, leg_b.base_qty))
        if qty <= 0:
            step = common_base_step(inst_a, inst_b)
            return [Refusal("lot_size", f"{min(leg_a.base_qty, leg_b.base_qty)} is below the common lot {step}")]
        requests = (
            self._leg_request(leg_a, inst_a, qty, client_ids[0]),
            self._leg_request(leg_b, inst_b, qty, client_ids[1]),
        )
        deltas = rules.position_deltas(requests, ctx)
        grosses = rules.venue_grosses(deltas, requests, ctx)
        found = [
            rules.rule_trading_state(ctx.state, rules.ENTRY, False),
            rules.rule_order_grid(requests[0], inst_a),
            rules.rule_order_grid(requests[1], inst_b),
            # The edge with the USDC/USDT rate where the legs settle in different currencies (perpbot.risk.quotes).
            quotes.rule_quote_rate(inst_a, inst_b, ctx),
            rules.rule_min_edge(quotes.entry_edge_bps(decision, inst_a, inst_b, ctx), risk.min_edge_bps),
            rules.rule_book_usable(requests, ctx, risk.max_book_age_s),
            rules.rule_venue_connected(requests, ctx),
            rules.rule_private_stream(requests, ctx),
            # The three notional rules share one computation of the position deltas and of the
            # per-venue gross notionals (the same functions the public rule_* run).
            rules.max_position_size_of(deltas, requests, ctx, risk.max_position_size_usdt),
            rules.max_leverage_of(grosses, ctx, risk.max_leverage),
            rules.capital_utilization_of(grosses, ctx, risk.max_capital_utilization_percent),
            rules.rule_max_open_positions(ctx, risk.max_open_positions),
            rules.rule_daily_loss(ctx, risk.daily_loss_limit_usdt),
            rules.rule_unhedged_budget(ctx, risk.unhedged_budget_usdt_seconds),
            rules.rule_order_rate(ctx, risk.max_orders_per_minute, 2),
            rules.rule_rate_budget(requests, self.rate_budget, ctx.now, self._entry_reserve),
            # Margin safety per leg (perpbot.risk.margin): marks known, the legs' liquidation distances.
            margin.rule_preflight(deltas, ctx),
            margin.rule_margin_refused(deltas, ctx),
            margin.rule_marks_known(deltas, ctx),
            margin.rule_liquidation_critical(ctx, risk.liquidation_critical_pct),
            margin.rule_liquidation_entry(deltas, grosses, ctx, risk.liquidation_entry_min_pct,
                                          risk.maintenance_margin_rate),
        ]
        refusals = _unique([r for r in found if r is not None])
        return refusals if refusals else requests

    # -- single orders: exits, hedges, unwinds, flatten -----------------------------------------
    def approve_order(
        self, request: OrderRequest, purpose: str, ctx: RiskContext, intent_id: str
    ) -> ApprovedOrder | Refusal:
        """One order. Entries get every entry rule; exits must have a usable book, a connected
        feed and respect the order rate; hedges, unwinds and flattens only need a valid state,
        the grid and (when reduce-only) to shrink the position, so risk can always be taken off.
        """
        refusal = self._order_refusal(request, purpose, ctx)
        if refusal is not None:
            self._refuse([refusal])
            return refusal
        self._record(ctx, 1)
        return _mint(request, purpose, intent_id)

    def approve_orders(
        self, requests: Sequence[OrderRequest], purpose: str, ctx: RiskContext, intent_id: str
    ) -> tuple[list[ApprovedOrder], list[Refusal]]:
        """Orders that leave together (a trade's exits on both legs): all approved or none, with every
        refusal found. Only an approval is recorded against the order rate: a pair half refused takes
        no slot, and the pair's rate is judged for both orders at once (one slot left refuses both)."""
        refusals = [r for r in (self._order_refusal(request, purpose, ctx, len(requests)) for request in requests)
                    if r is not None]
        if refusals:
            self._refuse(_unique(refusals))
            return [], refusals
        self._record(ctx, len(requests))
        return [_mint(request, purpose, intent_id) for request in requests], []

    def _order_refusal(self, request: OrderRequest, purpose: str, ctx: RiskContext,
                       together: int = 1) -> Refusal | None:
        risk = self.risk
        state = rules.rule_trading_state(ctx.state, purpose, request.reduce_only)
        if state is not None:
            return state
        known = rules.rule_instrument_known(request.venue, request.symbol, ctx)
        if known is not None:
            return known
        instrument = ctx.instruments[(request.venue, request.symbol)]
        checks = [
            rules.rule_order_grid(request, instrument), rules.rule_reduce_only(request, ctx),
            # Every purpose: a venue that said stop refuses the order anyway (and a 418 ban grows).
            rules.rule_rate_budget((request,), self.rate_budget, ctx.now,
                                   self._entry_reserve if purpose == rules.ENTRY else 0),
        ]
        if purpose in (rules.ENTRY, rules.EXIT):
            checks += [
                rules.rule_book_usable((request,), ctx, risk.max_book_age_s),
                rules.rule_venue_connected((request,), ctx),
                rules.rule_order_rate(ctx, risk.max_orders_per_minute, together),
            ]
        if purpose == rules.ENTRY:
            checks += [
                rules.rule_private_stream((request,), ctx),
                rules.rule_max_position_size((request,), ctx, risk.max_position_size_usdt),
                rules.rule_max_leverage((request,), ctx, risk.max_leverage),
                rules.rule_capital_utilization((request,), ctx, risk.max_capital_utilization_percent),
                rules.rule_max_open_positions(ctx, risk.max_open_positions),
                rules.rule_daily_loss(ctx, risk.daily_loss_limit_usdt),
                rules.rule_unhedged_budget(ctx, risk.unhedged_budget_usdt_seconds),
                *self._margin_refusals((request,), ctx),
            ]
        for check in checks:
            if check is not None:
                return check
        return None

    def _margin_refusals(self, requests: tuple[OrderRequest, ...], ctx: RiskContext) -> list[Refusal | None]:
        """The margin-safety rules of a single entry order (perpbot.risk.margin)."""
        deltas = rules.position_deltas(requests, ctx)
        grosses = rules.venue_grosses(deltas, requests, ctx)
        return [margin.rule_preflight(deltas, ctx), margin.rule_margin_refused(deltas, ctx),
                margin.rule_marks_known(deltas, ctx),
                margin.rule_liquidation_critical(ctx, self.risk.liquidation_critical_pct),
                margin.rule_liquidation_entry(deltas, grosses, ctx, self.risk.liquidation_entry_min_pct,
                                              self.risk.maintenance_margin_rate)]

    # -- automatic halt --------------------------------------------------------------------------
    def breach(self, ctx: RiskContext) -> str | None:
        """The reason to HALT now, or None: daily loss limit hit, unhedged budget exhausted.
        (Repeated leg failures are counted by the engine against risk.max_leg_failures.)"""
        loss = rules.rule_daily_loss(ctx, self.risk.daily_loss_limit_usdt)
        if loss is not None:
            return f"daily loss limit hit: {loss.detail}"
        budget = rules.rule_unhedged_budget(ctx, self.risk.unhedged_budget_usdt_seconds)
        if budget is not None:
            return f"unhedged budget exhausted: {budget.detail}"
        return None

    # -- bookkeeping -----------------------------------------------------------------------------
    def _refuse(self, refusals: list[Refusal]) -> None:
        """Count every refusal; log each rule at most once per LOG_EVERY_S (with how many were
        held back) so a refused opportunity that persists cannot flood the logs."""
        counter = self.metrics.risk_refusals_total
        now = time.monotonic()
        for refusal in refusals:
            counter.labels(refusal.rule).inc()
            last = self._last_logged.get(refusal.rule)
            if last is not None and now - last < LOG_EVERY_S:
                self._held_back[refusal.rule] = self._held_back.get(refusal.rule, 0) + 1
                continue
            held = self._held_back.pop(refusal.rule, 0)
            self._last_logged[refusal.rule] = now
            suffix = f" ({held} more since last logged)" if held else ""
            log.warning("Risk refusal: %s: %s%s", refusal.rule, refusal.detail, suffix)

    @staticmethod
    def _record(ctx: RiskContext, count: int) -> None:
        times = ctx.recent_order_times
        horizon = ctx.now - _MINUTE
        while times and times[0] <= horizon:
            times.popleft()
        times.extend([ctx.now] * count)


def _unique(refusals: list[Refusal]) -> list[Refusal]:
    seen = set()
    out = []
    for refusal in refusals:
        if (refusal.rule, refusal.detail) not in seen:
            seen.add((refusal.rule, refusal.detail))
            out.append(refusal)
    return out
