"""Execution engine: decisions -> risk gate -> journal first -> both legs at once -> legs policy ->
portfolio, journal and metrics; plus recovery, reconciliation, trading states and operator commands.

Nothing is sent before its intent and order rows are committed. An order whose answer was
lost is resolved by querying the venue for its client id, never re-sent. A leg that filled
alone is hedged or unwound by the pure policy in perpbot.execution.legs; when that fails
within the retry cap, trading HALTS with the exposure logged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from decimal import Decimal
from typing import Any

from perpbot.book.store import BookStore
from perpbot.core import errors
from perpbot.core.decisions import Decision, Leg, Refusal
from perpbot.core.versioned import VersionedDict
from perpbot.core.instruments import Instrument
from perpbot.core.numbers import scaled_to_decimal
from perpbot.core.orders import OrderRequest, OrderResult
from perpbot.core.ports import ExchangeClient
from perpbot.execution.client_ids import client_order_id, new_intent_id
from perpbot.core.shielding import uncancellable
from perpbot.execution.legs import Done, Halt, Hedge, LegOutcome, Resolve, Unwind, decide, on_other_leg
from perpbot.execution.reconcile import diff_positions
from perpbot.journal.sqlite import FINAL_STATUSES, Journal, TradeChange
from perpbot.portfolio.book import FillRecord, Portfolio, Position, dstr

log = logging.getLogger(__name__)

STATES = ("ACTIVE", "REDUCING", "PAUSED", "HALTED")
STARTING_REASON = "starting: waiting for reconciliation with every venue"
RESOLVE_ATTEMPTS = 3
FUNDING_SYNC_INTERVAL_S = 60.0  # venues settle funding hourly at the most often
ZERO = Decimal(0)
# Refusals that mean "this venue cannot trade this quantity" (below its lot, minimum size or
# minimum notional): the correction is tried on the other leg's venue instead.
SIZE_RULES = frozenset({"lot_size", "min_qty", "min_notional"})


@dataclasses.dataclass(slots=True)
class Sent:
    """What one order did: filled base quantity (this order only) and how it ended."""

    filled_base: Decimal = ZERO
    rejected: bool = False
    unknown: bool = False
    result: OrderResult | None = None
    error: str | None = None


def _journal_fill(row: dict[str, Any]) -> FillRecord:
    """A journal fills row (Journal.fills_since) as the portfolio's record of it."""
    return FillRecord(row["venue"], row["symbol"], row["side"], row["base_qty"], row["price"], row["fee"],
                      row["realized_pnl"], row["ts"], row["strategy"], row["client_order_id"])


def _s(value: Any) -> Any:
    return dstr(value) if isinstance(value, Decimal) else value


class Engine:
    def __init__(
        self, settings, clients: dict[str, ExchangeClient], gate, store: BookStore,
        instruments: dict[tuple[str, str], Instrument], funding_map: dict | None, journal: Journal,
        portfolio: Portfolio, metrics, redis_state=None, clock=time.time,
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.gate = gate
        self.store = store
        self.instruments = instruments
        self.funding_map = funding_map if funding_map is not None else {}
        self.journal = journal
        self.portfolio = portfolio
        self.metrics = metrics
        self.redis_state = redis_state
        self._clock = clock
        self.state = "PAUSED"
        self.state_reason = STARTING_REASON
        self.state_since = clock()
        self.reconciled: dict[str, bool] = {venue: False for venue in clients}
        self.venue_connected: dict[str, bool] = {venue: False for venue in clients}
        self.recent_order_times: deque[float] = deque(maxlen=10_000)
        self.unhedged_usdt_seconds = ZERO
        self.leg_failures = 0
        # Counts its writes: the scanner's view of the open trades is rebuilt only when it changed.
        self.open_trades: VersionedDict = VersionedDict()
        self.in_flight: dict[str, dict[str, Any]] = {}  # client id -> order being sent
        self.venue_open_orders: dict[str, list[OrderResult]] = {}
        self._order_fills: dict[tuple[str, str], tuple[Decimal, Decimal, Decimal]] = {}  # filled, avg, fee
        self._trade_lock = asyncio.Lock()
        # Per venue: the newest funding payment journalled (epoch ms); the next fetch starts there.
        self._funding_cursor_ms: dict[str, int] = {}
        self._funding_synced_at = 0.0
        self._stop = asyncio.Event()
        self._stopping = False  # graceful stop: no new decision is taken, the one in flight finishes
        self._residue_accrued_at: float | None = None

    # ====================================================================== state
    async def _set_state(self, state: str, reason: str, actor: str) -> bool:
        """Move through perpbot.risk.states.transition; refused moves are journalled too."""
        from perpbot.risk.states import TradingState, transition

        previous = self.state
        new, audit = transition(TradingState[previous], TradingState[state], reason, self._clock())
        if not audit.accepted:
            await self.journal.record_state_change(previous, previous, f"refused {state}: {audit.detail}", actor)
            log.warning("trading state change %s -> %s refused: %s", previous, state, audit.detail)
            return False
        state = new.value
        self.state, self.state_reason, self.state_since = state, reason, self._clock()
        await self.journal.record_state_change(previous, state, reason, actor)
        for name in STATES:
            self.metrics.trading_state.labels(name).set(1 if name == state else 0)
        if self.redis_state is not None:
            await self.redis_state.set_state(state, reason)
        level = logging.CRITICAL if state == "HALTED" else logging.WARNING
        log.log(level, "trading state %s -> %s by %s: %s", previous, state, actor, reason)
        return True

    def _risk_context(self):
        """The risk gate's view, built from the engine's own state (perpbot.risk.context)."""
        from perpbot.risk.context import RiskContext
        from perpbot.risk.states import TradingState

        marks = {key: self._mark(*key) for key in self.instruments}
        candidates = {
            "state": TradingState[self.state],
            "now": self._clock(),
            "equity_usdt": {v: b.equity for v, b in self.portfolio.balances.items()},
            "used_margin_usdt": {v: b.used_margin for v, b in self.portfolio.balances.items()},
            "positions": {k: p.size for k, p in self.portfolio.positions.items() if p.size},
            "marks": {k: m for k, m in marks.items() if m is not None},
            "mark_prices": {k: m for k, m in marks.items() if m is not None},
            "open_trades": len(self.open_trades),
            "daily_pnl_usdt": self.portfolio.pnl_today()["net"],
            "recent_order_times": self.recent_order_times,
            "unhedged_usdt_seconds": self.unhedged_usdt_seconds,
            "venue_connected": dict(self.venue_connected),
            "store": self.store,
            "instruments": self.instruments,
            "leverage": {v: self.settings.risk.max_leverage for v in self.clients},
        }
        names = {f.name for f in dataclasses.fields(RiskContext)}
        return RiskContext(**{k: v for k, v in candidates.items() if k in names})

    def _mark(self, venue: str, symbol: str) -> Decimal | None:
        book = self.store.get(venue, symbol)
        if book is not None and self.store.is_usable(book) and book.best_bid() is not None and book.best_ask() is not None:
            return scaled_to_decimal(book.best_bid() + book.best_ask()) / 2
        return self.portfolio.marks.get((venue, symbol))

    def _aggressive_price(self, venue: str, symbol: str, side: str, fallback: Decimal, attempt: int = 0) -> Decimal:
        """Limit price for a corrective IOC (hedge, unwind, flatten).

        Base: the touch of a usable book, else the last known mark, else `fallback` (the leg's own
        price). Band: execution.repair_slippage_bps doubled per corrective attempt, so a repair
        that missed because the market moved (a price jump, a stale book) reaches further each
        time instead of failing three times at a stale price and halting with a naked leg."""
        book = self.store.get(venue, symbol)
        touch = None
        if book is not None and self.store.is_usable(book):
            best = book.best_ask() if side == "buy" else book.best_bid()
            touch = scaled_to_decimal(best) if best is not None else None
        if touch is None:
            touch = self.portfolio.marks.get((venue, symbol))
        base = touch if touch is not None else fallback
        execution = self.settings.execution
        bps = max(execution.slippage_bps, execution.repair_slippage_bps) * (2 ** max(attempt - 1, 0))
        slip = min(bps, Decimal(1000)) / Decimal(10_000)  # never beyond 10 % from the reference
        price = base * (1 + slip) if side == "buy" else base * (1 - slip)
        instrument = self.instruments.get((venue, symbol))
        return instrument.round_price(price, side) if instrument else price

    # ====================================================================== sending
    async def _send(self, approved, strategy: str | None) -> Sent:
        """Place one approved (and already journalled) order and settle what it did."""
        request: OrderRequest = approved.request
        client = self.clients[request.venue]
        self.metrics.orders_total.labels(request.venue, request.side).inc()
        self.in_flight[request.client_order_id] = {
            "venue": request.venue, "symbol": request.symbol, "side": request.side, "qty": str(request.qty),
            "price": str(request.price), "client_order_id": request.client_order_id, "purpose": approved.purpose,
        }
        started = time.perf_counter()
        try:
            try:
                result = await asyncio.wait_for(
                    client.place_order(request), timeout=self.settings.execution.order_timeout_s
                )
            except asyncio.TimeoutError:
                raise errors.UnknownOutcome(request.venue, "no answer within order_timeout_s") from None
        except errors.OrderRejected as exc:
            await self.journal.update_order(request.venue, request.client_order_id, "rejected", reason=exc.message)
            self.metrics.orders_rejected_total.labels(request.venue, type(exc).__name__).inc()
            log.warning("Order rejected: %s %s %s id=%s reason=%s", request.venue, request.symbol, request.side,
                        request.client_order_id, exc.message)
            return Sent(rejected=True, error=exc.message)
        except (errors.RateLimited, errors.TemporaryError) as exc:
            # Certainly not on the book: nothing to resolve.
            await self.journal.update_order(request.venue, request.client_order_id, "failed", reason=exc.message)
            log.warning("order not placed on %s (%s): %s", request.venue, type(exc).__name__, exc.message)
            return Sent(error=exc.message)
        except errors.UnknownOutcome as exc:
            await self.journal.update_order(request.venue, request.client_order_id, "unknown", reason=exc.message)
            log.warning("order %s on %s: outcome unknown (%s); resolving by query",
                        request.client_order_id, request.venue, exc.message)
            return await self._resolve(request, strategy)
        finally:
            self.metrics.order_execution_duration.labels(request.venue).observe(time.perf_counter() - started)
            self.in_flight.pop(request.client_order_id, None)
        return await self._settle(request, result, strategy)

    async def _resolve(self, request: OrderRequest, strategy: str | None) -> Sent:
        """Find out what an order with a lost answer did, by its client id. Never re-sends."""
        client = self.clients[request.venue]
        delay = 0.1
        for attempt in range(1, RESOLVE_ATTEMPTS + 1):
            try:
                result = await client.fetch_order(request.symbol, request.client_order_id)
            except errors.VenueErrorBase as exc:
                log.warning("resolving %s on %s failed (attempt %d): %s", request.client_order_id,
                            request.venue, attempt, exc.message)
                result = None
                found = False
            else:
                found = result is not None
            if found:
                if result.status == "open":
                    try:
                        result = await client.cancel_order(request.symbol, request.client_order_id) or result
                    except errors.VenueErrorBase as exc:
                        log.warning("cancel of %s failed: %s", request.client_order_id, exc.message)
                return await self._settle(request, result, strategy)
            if attempt < RESOLVE_ATTEMPTS:
                await asyncio.sleep(delay)
                delay *= 2
        try:
            final = await client.fetch_order(request.symbol, request.client_order_id)
        except errors.VenueErrorBase:
            return Sent(unknown=True, error="outcome still unknown")
        if final is None:
            await self.journal.update_order(request.venue, request.client_order_id, "not_found",
                                            reason="venue has no order with this client id")
            return Sent(error="not found at venue")
        return await self._settle(request, final, strategy)

    async def _settle(self, request: OrderRequest, result: OrderResult, strategy: str | None) -> Sent:
        """Record a venue answer: journal the order, count new fill quantity once, update the portfolio."""
        instrument = self.instruments.get((request.venue, request.symbol))
        contract = instrument.contract_size if instrument else Decimal(1)
        key = (request.venue, request.client_order_id)
        row = await self.journal.order(*key)
        previous = self._order_fills.get(key) or (
            (row.filled_qty, row.avg_price or ZERO, row.fee) if row else (ZERO, ZERO, ZERO)
        )
        prev_filled, prev_avg, prev_fee = previous
        delta = result.filled_qty - prev_filled
        filled_base = ZERO
        if delta > 0:
            avg = result.avg_price if result.avg_price is not None else request.price
            price = (avg * result.filled_qty - prev_avg * prev_filled) / delta
            fee = result.fee - prev_fee
            filled_base = delta * contract
            trial = dataclasses.replace(
                self.portfolio.positions.get((request.venue, request.symbol)) or Position(request.venue, request.symbol)
            )
            realized = trial.apply(filled_base if request.side == "buy" else -filled_base, price)
            fill_id = f"{request.client_order_id}:{result.filled_qty}"
            # One timestamp for the journal row and the in-memory record: /api/trades answers the
            # same whether it reads memory or (past the portfolio's bound) the journal.
            fill_ts = self._clock()
            if await self.journal.record_fill(request.venue, fill_id, request.client_order_id, request.symbol,
                                              request.side, filled_base, price, fee, realized, strategy, fill_ts):
                self.portfolio.apply_fill(request.venue, request.symbol, request.side, filled_base, price, fee,
                                          ts=fill_ts, strategy=strategy, client_order_id=request.client_order_id)
                position = self.portfolio.positions[(request.venue, request.symbol)]
                await self.journal.save_position(request.venue, request.symbol, position.size,
                                                 position.entry_price, position.realized_pnl)
            self._order_fills[key] = (result.filled_qty, avg, result.fee)
        status = result.status if result.status != "open" else "open"
        await self.journal.update_order(
            request.venue, request.client_order_id, status, venue_order_id=result.venue_order_id,
            filled_qty=result.filled_qty, avg_price=result.avg_price, fee=result.fee, reason=result.reason,
        )
        if status in FINAL_STATUSES:
            # The journal row now holds the final cumulative fill: the in-memory cache of a
            # finished order is dropped so it does not grow with every order of a weeks-long run.
            self._order_fills.pop(key, None)
        if result.filled_qty > 0:
            self.metrics.orders_success_total.labels(request.venue, request.side).inc()
        rejected = result.status == "rejected"
        if rejected:
            log.warning("Order rejected: %s %s id=%s reason=%s", request.venue, request.symbol,
                        request.client_order_id, result.reason)
            self.metrics.orders_rejected_total.labels(request.venue, "rejected").inc()
        return Sent(filled_base=filled_base if delta > 0 else ZERO, rejected=rejected, result=result)

    # ====================================================================== trading
    async def on_decisions(self, decisions: list[Decision]) -> list[dict[str, Any]]:
        """Carry out the scanner's decisions one after the other; returns one report per decision."""
        reports = []
        for decision in decisions:
            if self._stopping:
                reports.append({"outcome": "skipped", "reason": "shutting down"})
                continue
            # PAUSED is the operator's emergency stop: no order at all, exits included (positions stay
            # as they are; close-all is the explicit way out). REDUCING and HALTED still let exits run.
            if (self.state != "ACTIVE" and decision.action == "open") or self.state == "PAUSED":
                reports.append({"outcome": "skipped", "reason": f"trading state {self.state}"})
                continue
            async with self._trade_lock:
                if self._stopping:  # the stop came while this decision waited for the trade before it
                    reports.append({"outcome": "skipped", "reason": "shutting down"})
                    continue
                held = self._held_by_open_trade(decision) if decision.action == "open" else None
                if held:
                    # The scanner's decisions of one batch were all taken against the same open
                    # trades: an entry on a venue/symbol a trade of this batch already holds would
                    # net against that leg (one-way positions) and leave both trades' reduce-only
                    # exits refused forever. Found by the hostile-venue suite (docs/RELIABILITY.md).
                    reports.append({"outcome": "skipped", "reason": f"{held} already in an open trade"})
                    continue
                reports.append(await self._execute(decision))
            await self._check_breach()
        self._publish()
        return reports

    def _held_by_open_trade(self, decision: Decision) -> str | None:
        """'venue symbol' of the first entry leg already used by an open trade, else None."""
        held = {(leg["venue"], leg["symbol"]) for trade in self.open_trades.values() for leg in trade["legs"]}
        for leg in decision.legs:
            if (leg.venue, leg.symbol) in held:
                return f"{leg.venue} {leg.symbol}"
        return None

    async def _execute(self, decision: Decision) -> dict[str, Any]:
        intent_id = new_intent_id()
        legs = decision.legs
        tags = ("a", "b")
        cids = tuple(client_order_id(leg.venue, intent_id, tags[i], 0) for i, leg in enumerate(legs))
        approved, refusals = self._approve(decision, intent_id, cids)
        if refusals or len(approved) != 2:
            detail = "; ".join(f"{r.rule}: {r.detail}" for r in refusals) or "gate approved fewer than two legs"
            log.info("decision %s %s refused: %s", decision.strategy, decision.base, detail)
            return {"intent_id": intent_id, "outcome": "refused", "reason": detail}
        # Approved orders in leg order (the gate may have adjusted quantities or prices).
        ordered = sorted(approved, key=lambda a: cids.index(a.request.client_order_id))
        await self.journal.record_intent(
            intent_id, decision.strategy, decision.action, decision.base,
            {"edge_bps": decision.edge_bps, "edge_usdt": decision.edge_usdt, "reason": decision.reason,
             "legs": [dataclasses.asdict(leg) for leg in legs]},
            [(a.request, a.purpose) for a in ordered], trade_id=decision.trade_id,
        )
        # Both legs leave together or not at all: a cancellation (a stop past its grace) waits for
        # both sends to be answered and settled instead of cutting one of them off.
        sent = await uncancellable(asyncio.gather(*(self._send(a, decision.strategy) for a in ordered)))
        outcomes = [
            LegOutcome(self._base(a.request), s.filled_base, s.rejected, s.unknown) for a, s in zip(ordered, sent)
        ]
        requests = [a.request for a in ordered]
        target = self._target(decision.action, requests)
        outcome, attempt, halted = await self._correct(intent_id, decision.strategy, requests, outcomes,
                                                       target=target)
        hedged = outcome.hedged if isinstance(outcome, Done) else ZERO
        if halted:
            label = "halted"
        elif attempt == 0:
            label = "hedged" if hedged > 0 else "nothing_filled"
        else:
            label = "corrected" if hedged > 0 else "unwound"
        change = self._trade_change(decision, intent_id, requests, outcomes)
        # The trade's new shape and the intent's end in one transaction (perpbot.journal.sqlite).
        await self.journal.finish_intent(intent_id, label, change)
        self._apply_trade_change(change, decision)
        self.metrics.trades_total.labels(decision.strategy, label).inc()
        if attempt > 0 or halted:
            self.leg_failures += 1
            if self.leg_failures >= self.settings.risk.max_leg_failures and self.state != "HALTED":
                await self._set_state("HALTED", f"{self.leg_failures} trades in a row needed leg repair", "engine")
        else:
            self.leg_failures = 0
        return {"intent_id": intent_id, "outcome": label, "hedged_base": _s(hedged), "corrective_orders": attempt}

    def _target(self, action: str, requests: list[OrderRequest]) -> Decimal:
        """The difference leg0 - leg1 the legs policy aims at: 0 for an entry; for an exit, the
        difference of the two legs' sizes, so a trade holding a residue ends flat on both venues."""
        if action != "close":
            return ZERO
        return self._base(requests[0]) - self._base(requests[1])

    def _approve(self, decision: Decision, intent_id: str, cids: tuple[str, str]):
        """Entries go through approve_entry (both legs or none); closes are two reduce-only exits."""
        ctx = self._risk_context()
        if decision.action == "open":
            return self.gate.approve_entry(decision, ctx, intent_id, cids)
        approved, refusals = [], []
        sizes = self._exit_sizes(decision)
        for leg, cid, size in zip(decision.legs, cids, sizes):
            instrument = self.instruments.get((leg.venue, leg.symbol))
            if instrument is None:
                refusals.append(Refusal("instrument_known", f"{leg.venue} {leg.symbol} unknown"))
                continue
            request = OrderRequest(
                venue=leg.venue, symbol=leg.symbol, side=leg.side, qty=instrument.base_to_venue_qty(size),
                price=self.gate.limit_price(instrument, leg.side, leg.ref_price), client_order_id=cid,
                reduce_only=True,
            )
            answer = self.gate.approve_order(request, "exit", ctx, intent_id)
            (refusals if isinstance(answer, Refusal) else approved).append(answer)
        return (approved, refusals) if not refusals else ([], refusals)

    def _exit_sizes(self, decision: Decision) -> list[Decimal]:
        """Base quantity to close on each leg. A strategy closes a whole trade at the smaller leg's
        size; when the trade's legs hold different sizes (a residue no venue could trade), each
        leg closes all it holds, so nothing is left naked on the larger one."""
        asked = [leg.base_qty for leg in decision.legs]
        trade = self.open_trades.get(decision.trade_id) if decision.trade_id else None
        if trade is None:
            return asked
        held = {(leg["venue"], leg["symbol"]): Decimal(leg["base_qty"]) for leg in trade["legs"]}
        sizes = [held.get((leg.venue, leg.symbol)) for leg in decision.legs]
        if any(size is None for size in sizes) or min(asked) < min(sizes):  # type: ignore[type-var]
            return asked  # a partial exit: as the strategy asked
        return [size for size in sizes if size is not None]

    def _base(self, request: OrderRequest) -> Decimal:
        instrument = self.instruments.get((request.venue, request.symbol))
        return request.qty * (instrument.contract_size if instrument else Decimal(1))

    async def _correct(self, intent_id: str, strategy: str, requests: list[OrderRequest],
                       outcomes: list[LegOutcome], start_attempt: int = 0,
                       target: Decimal = ZERO) -> tuple[Any, int, bool]:
        """Run the legs policy until the legs match or trading halts. `start_attempt` counts
        corrective orders already sent for this intent (after a restart), so their client ids
        are never reused and the retry cap still holds. `outcomes` is updated in place: on return
        it holds what each leg finally did."""
        attempt = start_attempt
        max_retries = self.settings.execution.max_hedge_retries
        naked_since: float | None = None
        while True:
            action = decide(outcomes[0], outcomes[1], attempt, max_retries, target=target)
            if isinstance(action, Done):
                self._account_unhedged(naked_since, ZERO)
                return action, attempt, False
            if naked_since is None:
                naked_since = self._clock()
            if isinstance(action, Halt):
                exposure = [
                    f"{r.venue} {r.symbol} {r.side} filled {o.filled}" for r, o in zip(requests, outcomes)
                ]
                reason = f"intent {intent_id}: {action.reason} ({'; '.join(exposure)})"
                self._account_unhedged(naked_since, abs(outcomes[0].filled - outcomes[1].filled - target) *
                                       (requests[0].price))
                await self._set_state("HALTED", reason, "engine")
                return action, attempt, True
            attempt += 1
            if isinstance(action, Resolve):
                for i in action.legs:
                    sent = await self._resolve(requests[i], strategy)
                    outcomes[i] = dataclasses.replace(outcomes[i], unknown=sent.unknown).add(sent.filled_base)
                continue
            order = self._corrective(intent_id, requests, action, attempt)
            if order is None:
                # The chosen venue cannot trade this quantity (below its lot or minimum): the other
                # venue may (its lot is finer, its minimum lower).
                order = self._corrective(intent_id, requests, on_other_leg(action), attempt)
            if order is None:
                residual = outcomes[0].filled - outcomes[1].filled - target
                log.warning("intent %s: residual %s base is below what either venue can trade; kept on the "
                            "trade and counted as unhedged exposure", intent_id, residual)
                self._account_unhedged(naked_since, ZERO)
                return Done(hedged=min(o.filled for o in outcomes), residual=residual), attempt, False
            if isinstance(order, Refusal):
                if isinstance(action, Hedge):
                    outcomes[action.leg] = dataclasses.replace(outcomes[action.leg], rejected=True)
                continue
            chosen, approved = order
            is_hedge = isinstance(chosen, Hedge)
            await self.journal.record_order(approved.request, approved.purpose, intent_id)
            sent = await self._send(approved, strategy)
            filled = sent.filled_base if is_hedge else -sent.filled_base
            outcomes[chosen.leg] = outcomes[chosen.leg].add(filled, rejected=sent.rejected and is_hedge,
                                                            unknown=sent.unknown)

    def _corrective(self, intent_id: str, requests: list[OrderRequest], action: Hedge | Unwind,
                    attempt: int) -> tuple[Hedge | Unwind, Any] | Refusal | None:
        """The approved order carrying out `action`; None when its venue cannot trade the quantity
        (zero lots, or refused by a size rule); a Refusal for any other reason."""
        original = requests[action.leg]
        is_hedge = isinstance(action, Hedge)
        side = original.side if is_hedge else ("sell" if original.side == "buy" else "buy")
        instrument = self.instruments.get((original.venue, original.symbol))
        qty = instrument.base_to_venue_qty(action.qty) if instrument else action.qty
        if qty <= 0:
            return None
        request = OrderRequest(
            venue=original.venue, symbol=original.symbol, side=side, qty=qty,
            price=self._aggressive_price(original.venue, original.symbol, side, original.price, attempt),
            client_order_id=client_order_id(original.venue, intent_id, ("h" if is_hedge else "u") + "ab"[action.leg],
                                            attempt),
            reduce_only=not is_hedge and self._reduces(original, qty),
        )
        purpose = "hedge" if is_hedge else "unwind"
        approved = self.gate.approve_order(request, purpose, self._risk_context(), intent_id)
        if isinstance(approved, Refusal):
            log.warning("intent %s: %s on %s refused by risk: %s", intent_id, purpose, original.venue, approved.detail)
            return None if approved.rule in SIZE_RULES else approved
        return action, approved

    def _reduces(self, filled: OrderRequest, venue_qty: Decimal) -> bool:
        """Whether undoing `filled` shrinks the venue position (so it can be sent reduce-only).

        Positions are netted per venue and symbol: when the fill itself reduced an existing
        position (one the bot did not open, say), its unwind re-opens that position and a
        reduce-only flag would make the venue refuse the unwind."""
        position = self.portfolio.positions.get((filled.venue, filled.symbol))
        size = position.size if position is not None else ZERO
        instrument = self.instruments.get((filled.venue, filled.symbol))
        base_qty = instrument.venue_to_base_qty(venue_qty) if instrument else venue_qty
        return size >= base_qty if filled.side == "buy" else -size >= base_qty

    def _account_unhedged(self, since: float | None, still_naked_usdt: Decimal) -> None:
        if since is not None:
            self.unhedged_usdt_seconds += still_naked_usdt * Decimal(str(round(self._clock() - since, 3)))
        self.metrics.unhedged_notional.set(float(still_naked_usdt + self.residue_usdt()))
        self.metrics.unhedged_usdt_seconds.set(float(self.unhedged_usdt_seconds))

    # ====================================================================== residues
    def residues(self) -> dict[tuple[str, str], Decimal]:
        """Base quantity held on a leg beyond its trade's other leg (a residue no venue could trade),
        per venue/symbol of the larger leg. Each venue/symbol belongs to one trade at most."""
        out: dict[tuple[str, str], Decimal] = {}
        for trade in self.open_trades.values():
            legs = trade["legs"]
            if len(legs) != 2:
                continue
            sizes = [Decimal(leg["base_qty"]) for leg in legs]
            if sizes[0] == sizes[1]:
                continue
            larger = legs[0] if sizes[0] > sizes[1] else legs[1]
            out[(larger["venue"], larger["symbol"])] = abs(sizes[0] - sizes[1])
        return out

    def residue_usdt(self) -> Decimal:
        total = ZERO
        for (venue, symbol), qty in self.residues().items():
            mark = self._mark(venue, symbol)
            if mark is None:
                leg = next((leg for t in self.open_trades.values() for leg in t["legs"]
                            if (leg["venue"], leg["symbol"]) == (venue, symbol)), None)
                mark = Decimal(leg.get("ref_price") or "0") if leg else ZERO
            total += qty * mark
        return total

    def _accrue_residue(self) -> None:
        """Residues count against the unhedged budget for as long as they are held."""
        now = self._clock()
        since, self._residue_accrued_at = self._residue_accrued_at, now
        notional = self.residue_usdt()
        if since is not None and notional > 0:
            self.unhedged_usdt_seconds += notional * Decimal(str(round(now - since, 3)))
        self.metrics.unhedged_notional.set(float(notional))
        self.metrics.unhedged_usdt_seconds.set(float(self.unhedged_usdt_seconds))

    def _trade_change(self, decision: Decision, intent_id: str, requests: list[OrderRequest],
                      outcomes: list[LegOutcome]) -> TradeChange | None:
        """What the intent did to its trade, from what each leg finally did: an entry opens a trade
        holding each leg's own fill; an exit shrinks each leg by what it closed (a partial exit
        is a resize, journalled like the rest), or closes the trade when both legs are flat."""
        filled = [o.filled for o in outcomes]
        if all(f == 0 for f in filled):
            return None
        if decision.action == "open":
            refs = {(leg.venue, leg.symbol): leg.ref_price for leg in decision.legs}
            # Entry prices and edge travel with the legs so exits (and restarts) can judge convergence.
            legs = tuple({"venue": r.venue, "symbol": r.symbol, "side": r.side, "base_qty": dstr(f),
                          "ref_price": str(refs.get((r.venue, r.symbol), "0")), "entry_edge_bps": str(decision.edge_bps)}
                         for r, f in zip(requests, filled))
            return TradeChange("open", intent_id, legs, intent_id=intent_id, strategy=decision.strategy,
                               base=decision.base)
        trade = self.open_trades.get(decision.trade_id) if decision.trade_id else None
        if trade is None:
            return None
        closed = {(r.venue, r.symbol): f for r, f in zip(requests, filled)}
        legs = []
        for leg in trade["legs"]:
            remaining = Decimal(leg["base_qty"]) - closed.get((leg["venue"], leg["symbol"]), ZERO)
            if remaining < 0:
                log.error("trade %s: %s %s closed %s beyond its size %s", trade["trade_id"], leg["venue"],
                          leg["symbol"], -remaining, leg["base_qty"])
                remaining = ZERO
            legs.append({**leg, "base_qty": dstr(remaining)})
        if all(Decimal(leg["base_qty"]) == 0 for leg in legs):
            return TradeChange("close", trade["trade_id"])
        return TradeChange("resize", trade["trade_id"], tuple(legs))

    def _apply_trade_change(self, change: TradeChange | None, decision: Decision | None = None) -> None:
        """The in-memory mirror of a journalled change (written back, so readers see a new version)."""
        if change is None:
            return
        if change.kind == "open":
            edge = str(decision.edge_bps) if decision is not None else change.legs[0].get("entry_edge_bps", "0")
            self.open_trades[change.trade_id] = {"trade_id": change.trade_id, "strategy": change.strategy,
                                                 "base": change.base, "legs": [dict(leg) for leg in change.legs],
                                                 "opened_ts": self._clock(), "entry_edge_bps": edge}
        elif change.kind == "close":
            self.open_trades.pop(change.trade_id, None)
        elif change.trade_id in self.open_trades:
            trade = dict(self.open_trades[change.trade_id])
            trade["legs"] = [dict(leg) for leg in change.legs]
            self.open_trades[change.trade_id] = trade
        residue = self.residues()
        self.metrics.unhedged_notional.set(float(self.residue_usdt()))
        if residue:
            log.warning("unhedged residue held: %s", {f"{v} {s}": dstr(q) for (v, s), q in residue.items()})

    async def _check_breach(self) -> None:
        """HALT when the gate reports a breach (daily loss, unhedged budget)."""
        reason = self.gate.breach(self._risk_context())
        if reason and self.state != "HALTED":
            await self._set_state("HALTED", f"risk breach: {reason}", "risk")

    # ====================================================================== recovery
    async def start(self) -> dict[str, Any]:
        """Load the journal, reconcile with every venue, and only then trade."""
        for row in await self.journal.positions():
            self.portfolio.set_position(row["venue"], row["symbol"], row["size"], row["entry_price"], row["realized_pnl"])
        for fill in await self.journal.fills_since(self._clock() - 86400):
            self.portfolio.restore_fill(_journal_fill(fill))
        day_ago = self._clock() - 86400
        for payment in await self.journal.funding_since(0):
            self.portfolio.restore_funding(payment["venue"], payment["symbol"], payment["amount"], payment["ts"],
                                           recent=payment["ts"] >= day_ago)
            venue_ms = int(payment["ts"] * 1000)
            self._funding_cursor_ms[payment["venue"]] = max(self._funding_cursor_ms.get(payment["venue"], 0), venue_ms)
        for trade in await self.journal.open_trades():
            self.open_trades[trade["trade_id"]] = trade
        last = await self.journal.state_changes(1)
        # A leg a crash left naked is repaired first: the venues of interrupted trades are reconciled
        # first (all at once), then repaired while the other venues reconcile; funding history (heavy
        # reads, ~1 s a venue) is synced only after the trading state is set, beside trading (below).
        # Under the trade lock, as periodic(): a background instrument refresh waits for it.
        urgent = {leg.get("venue") for intent in await self.journal.intents_with_status("sending")
                  for leg in (intent["decision"].get("legs") or []) if isinstance(leg, dict)} & set(self.clients)
        others = [v for v in self.clients if v not in urgent]
        repaired = asyncio.Event()  # the other venues' reads run beside the repair, their writes after it
        later = (asyncio.create_task(self._reconcile(venues_only=others, writes_after=repaired),
                                     name="start-up-reconcile") if urgent and others else None)
        try:
            async with self._trade_lock:
                report = await self._reconcile(venues_only=urgent if later is not None else None)
            for change in report["changed"]:
                log.warning("start-up reconciliation changed %s", change)
            report["repaired"] = await self._repair_interrupted()
            repaired.set()
            if later is not None:
                rest = await later
                for change in rest["changed"]:
                    log.warning("start-up reconciliation changed %s", change)
                report["changed"] += rest["changed"]
                report["errors"].update(rest["errors"])
                report["venues"] = dict(self.reconciled)
        finally:
            if later is not None and not later.done():
                later.cancel()
        async with self._trade_lock:
            report["trades_checked"] = await self._check_trades_against_venues()
        enabled = list(self.clients)
        if not enabled:
            await self._set_state("PAUSED", f"{STARTING_REASON} (no tradeable venue)", "recovery")
        elif self.state == "HALTED":
            pass  # the start-up check found what nothing explains: the reason is in the audit trail
        elif all(self.reconciled.get(v) for v in enabled):
            if last and last[0]["to"] == "HALTED":
                await self._set_state("HALTED", f"restored after restart: {last[0]['reason']}", "recovery")
            elif last and last[0]["to"] == "PAUSED" and last[0]["actor"] == "operator":
                await self._set_state("PAUSED", f"restored after restart: {last[0]['reason']}", "recovery")
            else:
                await self._set_state("ACTIVE", "reconciled with every venue", "recovery")
        else:
            failed = [v for v in enabled if not self.reconciled.get(v)]
            await self._set_state("PAUSED", f"{STARTING_REASON} (failed: {', '.join(failed)})", "recovery")
        self._publish()

        async def funding_history() -> None:
            venues = list(self.clients.items())
            results = await asyncio.gather(*(self._sync_funding(v, c, self._trade_lock) for v, c in venues),
                                           return_exceptions=True)
            for (venue, _), result in zip(venues, results):
                if isinstance(result, BaseException):
                    log.error("start-up funding history of %s failed: %s", venue,
                              getattr(result, "message", None) or repr(result))

        self._funding_synced_at = self._clock()
        self.startup_funding = asyncio.create_task(funding_history(), name="startup-funding-history")
        return report

    async def _repair_interrupted(self) -> list[dict[str, Any]]:
        """Intents a crash cut short (still 'sending'): rebuild both legs' outcomes from the journal
        (already settled against the venues by reconciliation) and run the same leg-repair policy a
        live trade runs, so a leg that filled before the crash is hedged or unwound, never left naked."""
        repaired: list[dict[str, Any]] = []
        for intent in await self.journal.intents_with_status("sending"):
            intent_id = intent["intent_id"]
            rows = await self.journal.orders_of_intent(intent_id)
            legs_json = intent["decision"].get("legs") or []
            tags = ("a", "b")
            try:
                cids = [client_order_id(leg["venue"], intent_id, tags[i], 0) for i, leg in enumerate(legs_json)]
            except (KeyError, ModuleNotFoundError):
                cids = []
            originals = [next((r for r in rows if r.client_order_id == cid), None) for cid in cids]
            if len(originals) != 2 or any(r is None for r in originals):
                await self.journal.set_intent_status(intent_id, "abandoned")
                log.error("intent %s: cannot rebuild its two legs from the journal; marked abandoned", intent_id)
                repaired.append({"intent_id": intent_id, "outcome": "abandoned"})
                continue
            if any(r.status not in FINAL_STATUSES for r in originals):
                log.error("intent %s: a leg is still unresolved after reconciliation; left for the next sync",
                          intent_id)
                continue
            requests = [OrderRequest(r.venue, r.symbol, r.side, r.qty, r.price, r.client_order_id, r.reduce_only)
                        for r in originals]
            outcomes = [LegOutcome(self._base(req), self._base_qty(r.venue, r.symbol, r.filled_qty),
                                   rejected=r.status == "rejected") for req, r in zip(requests, originals)]
            corrective = [r for r in rows if r.client_order_id not in cids]
            for row in corrective:
                leg = next((i for i, req in enumerate(requests)
                            if (req.venue, req.symbol) == (row.venue, row.symbol)), None)
                if leg is None:
                    continue
                filled = self._base_qty(row.venue, row.symbol, row.filled_qty)
                outcomes[leg] = outcomes[leg].add(filled if row.side == requests[leg].side else -filled)
            strategy = intent["strategy"]
            async with self._trade_lock:
                outcome, attempt, halted = await self._correct(
                    intent_id, strategy, requests, outcomes, start_attempt=len(corrective),
                    target=self._target(intent["action"], requests))
                hedged = outcome.hedged if isinstance(outcome, Done) else ZERO
                change = None
                # An entry's trade is opened atomically with its intent's end; a journal written
                # before that was so may hold the trade already: never open it twice.
                if len(legs_json) == 2 and not (intent["action"] == "open" and intent_id in self.open_trades):
                    decision = Decision(
                        strategy=strategy, action=intent["action"], base=intent["base"],
                        legs=tuple(Leg(leg["venue"], leg["symbol"], leg["side"], Decimal(str(leg["base_qty"])),
                                       Decimal(str(leg["ref_price"]))) for leg in legs_json),
                        edge_bps=Decimal(str(intent["decision"].get("edge_bps", "0"))),
                        edge_usdt=Decimal(str(intent["decision"].get("edge_usdt", "0"))),
                        reason="restored after restart", trade_id=intent["trade_id"],
                    )
                    change = self._trade_change(decision, intent_id, requests, outcomes)
                else:
                    decision = None
                label = "halted" if halted else ("recovered" if hedged > 0 else "recovered_flat")
                await self.journal.finish_intent(intent_id, label, change)
                self._apply_trade_change(change, decision)
            log.warning("intent %s interrupted by a restart: %s (hedged %s, corrective orders %d)", intent_id,
                        label, hedged, attempt)
            repaired.append({"intent_id": intent_id, "outcome": label, "hedged_base": _s(hedged)})
        return repaired

    async def _check_trades_against_venues(self) -> list[dict[str, Any]]:
        """Start-up check, after reconciliation and repair: each open trade's legs against the
        venue positions of their venue/symbol (each belongs to one trade at most).

        - equal: nothing to do;
        - the venue holds less, same direction (an exit or repair the journal missed, a
          liquidation): the trade takes the venue's size, journalled; flat legs close it; legs
          left unequal are rebalanced by the legs policy like any trade (unwinding the excess);
        - the venue holds more, or the other way round: nothing explains it, so trading HALTS
          with the reason instead of trading on a wrong picture."""
        report: list[dict[str, Any]] = []
        problems: list[str] = []
        for trade_id, trade in list(self.open_trades.items()):
            if not all(self.reconciled.get(leg["venue"]) for leg in trade["legs"]):
                continue  # the venue could not be read: the next check (sync) decides
            legs, changed = [], False
            for leg in trade["legs"]:
                position = self.portfolio.positions.get((leg["venue"], leg["symbol"]))
                held = position.size if position is not None else ZERO
                along = held if leg["side"] == "buy" else -held  # in the leg's own direction
                recorded = Decimal(leg["base_qty"])
                if along == recorded:
                    legs.append(leg)
                elif ZERO <= along < recorded:
                    legs.append({**leg, "base_qty": dstr(along)})
                    changed = True
                    log.warning("trade %s: %s %s holds %s at the venue, the journal said %s; adopted", trade_id,
                                leg["venue"], leg["symbol"], dstr(along), leg["base_qty"])
                else:
                    problems.append(f"trade {trade_id}: {leg['venue']} {leg['symbol']} holds {dstr(held)}, "
                                    f"the trade expects {leg['side']} {leg['base_qty']}")
                    legs.append(leg)
            if not changed:
                continue
            if all(Decimal(leg["base_qty"]) == 0 for leg in legs):
                change = TradeChange("close", trade_id)
            else:
                change = TradeChange("resize", trade_id, tuple(legs))
            await self.journal.apply_trade_change(change)
            self._apply_trade_change(change)
            entry: dict[str, Any] = {"kind": "trade", "trade_id": trade_id, "change": change.kind,
                                     "legs": [leg["base_qty"] for leg in legs]}
            if change.kind == "resize":
                entry["rebalanced"] = await self._rebalance(trade_id)
            report.append(entry)
        if problems:
            await self._set_state("HALTED", "start-up check: " + "; ".join(problems), "recovery")
        return report

    async def _rebalance(self, trade_id: str) -> str:
        """Bring a trade whose legs hold different sizes back to equal legs through the legs policy
        (journalled as a 'repair' intent): the larger leg is unwound reduce-only first; what no
        venue can trade stays on the trade as a counted residue."""
        trade = self.open_trades[trade_id]
        sizes = [Decimal(leg["base_qty"]) for leg in trade["legs"]]
        if sizes[0] == sizes[1]:
            return "balanced"
        requests = []
        for leg in trade["legs"]:
            instrument = self.instruments.get((leg["venue"], leg["symbol"]))
            price = self._mark(leg["venue"], leg["symbol"]) or Decimal(leg.get("ref_price") or "0")
            qty = instrument.base_to_venue_qty(Decimal(leg["base_qty"])) if instrument else Decimal(leg["base_qty"])
            requests.append(OrderRequest(leg["venue"], leg["symbol"], leg["side"], qty, price, "", False))
        # The lagging leg counts as refused, so the policy unwinds the excess rather than adding to the other side.
        lag = 0 if sizes[0] < sizes[1] else 1
        outcomes = [LegOutcome(size, size, rejected=(i == lag)) for i, size in enumerate(sizes)]
        intent_id = new_intent_id()
        await self.journal.record_intent(intent_id, trade["strategy"], "repair", trade["base"],
                                         {"legs": trade["legs"], "reason": "start-up check"}, [], trade_id=trade_id)
        outcome, attempt, halted = await self._correct(intent_id, trade["strategy"], requests, outcomes)
        legs = tuple({**leg, "base_qty": dstr(o.filled)} for leg, o in zip(trade["legs"], outcomes))
        if all(o.filled == 0 for o in outcomes):
            change = TradeChange("close", trade_id)
        else:
            change = TradeChange("resize", trade_id, legs)
        label = "halted" if halted else "rebalanced"
        await self.journal.finish_intent(intent_id, label, change)
        self._apply_trade_change(change)
        log.warning("trade %s rebalanced at start-up: %s after %d corrective order(s)", trade_id, label, attempt)
        return label

    def _base_qty(self, venue: str, symbol: str, venue_qty: Decimal) -> Decimal:
        instrument = self.instruments.get((venue, symbol))
        return venue_qty * (instrument.contract_size if instrument else Decimal(1))

    async def _reconcile(self, funding: bool = False, venues_only: Any = None,
                         writes_after: asyncio.Event | None = None) -> dict[str, Any]:
        """Settle unresolved orders, then make local positions and balances equal the venues'; with
        `funding`, also book new funding payments. The same code runs at start-up, periodically and on
        POST /api/sync/positions. Close-all skips funding: funding-history reads are heavy in venue
        rate-limit weight (Binance income: 30) and a flatten must not wait on them.

        Every venue at once, each in the old order (its unresolved orders, then its positions, balance
        and open orders); one venue failing (or slow) does not keep the others from being reconciled.
        `venues_only`: those venues alone. `writes_after`: each venue reads everything it needs, then
        waits for the event before it changes the journal or the portfolio (start-up reads the other
        venues while an interrupted trade is repaired, without writing inside its transactions)."""
        unresolved: dict[str, list[Any]] = {}
        for row in await self.journal.orders_with_status("unknown", "pending", "open"):
            unresolved.setdefault(row.venue, []).append(row)
        # A copy: a venue left out meanwhile does not break the loop.
        venues = [(v, c) for v, c in self.clients.items() if venues_only is None or v in venues_only]

        async def one_venue(venue: str, client: ExchangeClient) -> tuple[list[dict[str, Any]], str | None]:
            """One venue's part. Venues run concurrently; a venue's orders and positions touch only its
            own keys of the portfolio and the journal (no explicit transaction)."""
            found: list[dict[str, Any]] = []
            problem: str | None = None
            answers = []
            for row in unresolved.get(venue, ()):
                try:
                    result = await client.fetch_order(row.symbol, row.client_order_id)
                    if result is not None and result.status == "open":
                        result = await client.cancel_order(row.symbol, row.client_order_id) or result
                except errors.VenueErrorBase as exc:
                    problem = f"order {row.client_order_id}: {exc.message}"
                    continue
                answers.append((row, result))
            # Read after the orders' answers: the positions include what those orders filled.
            reads = await asyncio.gather(client.fetch_positions(), client.fetch_balance(), client.fetch_open_orders(),
                                         return_exceptions=True)
            failed = [r for r in reads if isinstance(r, BaseException)]
            if any(not isinstance(e, errors.VenueErrorBase) for e in failed):
                raise next(e for e in failed if not isinstance(e, errors.VenueErrorBase))
            if writes_after is not None:
                await writes_after.wait()
            for row, result in answers:
                if result is None:
                    await self.journal.update_order(row.venue, row.client_order_id, "not_found",
                                                    reason="not at venue when reconciled")
                    found.append({"kind": "order", "venue": row.venue, "client_order_id": row.client_order_id,
                                  "from": row.status, "to": "not_found"})
                    continue
                request = OrderRequest(row.venue, row.symbol, row.side, row.qty, row.price, row.client_order_id,
                                       row.reduce_only)
                await self._settle(request, result, None)
                found.append({"kind": "order", "venue": row.venue, "client_order_id": row.client_order_id,
                              "from": row.status, "to": result.status, "filled_qty": _s(result.filled_qty)})
            if failed:
                self.reconciled[venue] = False
                self.venue_connected[venue] = False
                return found, failed[0].message
            remote, balance, open_orders = reads
            self.portfolio.set_balance(balance)
            self.venue_open_orders[venue] = open_orders
            local = {s: (p.size, p.entry_price) for (v, s), p in self.portfolio.positions.items() if v == venue}
            for change in diff_positions(venue, local, remote):
                self.portfolio.set_position(venue, change.symbol, change.venue_size, change.venue_entry)
                position = self.portfolio.positions[(venue, change.symbol)]
                await self.journal.save_position(venue, change.symbol, position.size, position.entry_price,
                                                 position.realized_pnl)
                found.append(change.as_dict())
            for position in remote:
                if position.mark_price is not None:
                    self.portfolio.set_mark(venue, position.symbol, position.mark_price)
                if position.leverage is not None:
                    self.portfolio.leverage[(venue, position.symbol)] = position.leverage
            self.reconciled[venue] = True
            self.venue_connected[venue] = True
            if funding:
                try:
                    found += await self._sync_funding(venue, client)
                except errors.VenueErrorBase as exc:
                    problem = f"funding history: {exc.message}"
            return found, problem

        outcomes = await asyncio.gather(*(one_venue(v, c) for v, c in venues), return_exceptions=True)
        changed: list[dict[str, Any]] = []
        problems: dict[str, str] = {}
        unexpected: BaseException | None = None
        for (venue, _), outcome in zip(venues, outcomes):
            if isinstance(outcome, BaseException):
                # Not a venue error (a bug, a cancel): every other venue has finished its part; raised below.
                log.error("reconciliation with %s raised %r", venue, outcome)
                unexpected = unexpected or outcome
                continue
            found, problem = outcome
            changed += found
            if problem is not None:
                problems[venue] = problem
        if unexpected is not None:
            raise unexpected
        for venue, problem in problems.items():
            log.error("reconciliation with %s failed: %s", venue, problem)
        if self.redis_state is not None:
            await self.redis_state.set_positions(self.positions())
        return {"changed": changed, "venues": dict(self.reconciled), "errors": problems}

    async def _sync_funding(self, venue: str, client: ExchangeClient,
                            lock: asyncio.Lock | None = None) -> list[dict[str, Any]]:
        """Fetch the venue's funding payments since the last one journalled; journal each once (unique per
        venue payment id) and apply only newly journalled ones to the portfolio. First run: the last 24 h.
        With `lock` (start-up's sync, which runs beside trading), the fetch runs outside it and the booking
        inside it, so no journal write lands inside a trade's transaction."""
        from contextlib import nullcontext

        fetch = getattr(client, "fetch_funding_payments", None)
        if fetch is None:
            return []
        since_ms = self._funding_cursor_ms.get(venue) or int((self._clock() - 86400) * 1000)
        booked = []
        payments = await fetch(since_ms)
        async with (lock if lock is not None else nullcontext()):
            for payment in payments:
                ts = payment.ts_ms / 1000
                if await self.journal.record_funding(venue, payment.payment_id, payment.symbol, payment.amount, ts):
                    self.portfolio.apply_funding(venue, payment.symbol, payment.amount, ts)
                    booked.append({"kind": "funding", "venue": venue, "symbol": payment.symbol,
                                   "payment_id": payment.payment_id, "amount": _s(payment.amount),
                                   "ts_ms": payment.ts_ms})
                    log.info("funding %s %s %s (payment %s)", venue, payment.symbol, payment.amount,
                             payment.payment_id)
                self._funding_cursor_ms[venue] = max(self._funding_cursor_ms.get(venue, 0), payment.ts_ms)
        return booked

    async def run(self) -> None:
        """Periodic reconciliation, breach checks, heartbeat and metrics until stop()."""
        interval = self.settings.execution.reconcile_interval_s
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=interval)
                break
            except asyncio.TimeoutError:
                pass
            try:
                await self.periodic()
                self._periodic_failures = 0
            except Exception:  # an unexpected bug in one pass must not take the control API down
                self._periodic_failures = getattr(self, "_periodic_failures", 0) + 1
                log.exception("periodic reconciliation failed (%d in a row)", self._periodic_failures)
                if self._periodic_failures >= 3 and self.state != "HALTED":
                    await self._set_state("HALTED", "periodic reconciliation failed 3 times in a row", "engine")

    async def periodic(self) -> dict[str, Any]:
        funding = self._clock() - self._funding_synced_at >= FUNDING_SYNC_INTERVAL_S
        async with self._trade_lock:
            report = await self._reconcile(funding=funding)
        if funding:
            self._funding_synced_at = self._clock()
        if (self.state == "PAUSED" and self.state_reason.startswith(STARTING_REASON) and self.reconciled
                and all(self.reconciled.values())):
            await self._set_state("ACTIVE", "reconciled with every venue", "recovery")
        self._accrue_residue()
        await self._check_breach()
        if self.redis_state is not None:
            await self.redis_state.heartbeat()
        self._publish()
        return report

    def stop(self) -> None:
        self._stop.set()

    async def drain(self, grace_s: float) -> bool:
        """Graceful stop: take no new decision, let the execution in flight (both legs and their
        repair) finish. True when nothing is in flight any more (no decision starts after this:
        on_decisions checks the flag under the trade lock); False when `grace_s` ran out first."""
        self._stopping = True
        try:
            await asyncio.wait_for(self._trade_lock.acquire(), timeout=grace_s)
        except asyncio.TimeoutError:
            log.critical("stop: an execution is still in flight after %.1fs; leaving it to start-up recovery", grace_s)
            return False
        self._trade_lock.release()
        return True

    # ====================================================================== operator commands
    async def pause(self, reason: str) -> dict[str, Any]:
        await self._set_state("PAUSED", reason or "paused by operator", "operator")
        # A trade already under way finishes its legs (a half-done trade is worse than a late stop);
        # once the lock is ours nothing more is sent, so the answer means "no new orders from now".
        async with self._trade_lock:
            canceled = await self._cancel_working_orders()
        return {"state": self.state, "reason": self.state_reason, "canceled_orders": canceled}

    async def resume(self) -> dict[str, Any]:
        if not all(self.reconciled.values()):
            missing = [v for v, ok in self.reconciled.items() if not ok]
            return {"state": self.state, "resumed": False,
                    "reason": f"not reconciled with {', '.join(missing)}; POST /api/sync/positions first"}
        from perpbot.risk.states import OPERATOR_RESUME_AFTER_RECONCILIATION

        reason = OPERATOR_RESUME_AFTER_RECONCILIATION if self.state == "HALTED" else "resumed by operator"
        resumed = await self._set_state("ACTIVE", reason, "operator")
        if resumed:
            self.leg_failures = 0
        return {"state": self.state, "resumed": resumed}

    async def _cancel_working_orders(self) -> list[dict[str, Any]]:
        canceled = []
        for venue, client in self.clients.items():
            try:
                working = await client.fetch_open_orders()
            except errors.VenueErrorBase as exc:
                canceled.append({"venue": venue, "error": exc.message})
                continue
            for order in working:
                try:
                    result = await client.cancel_order(order.symbol, order.client_order_id)
                    canceled.append({"venue": venue, "client_order_id": order.client_order_id,
                                     "status": result.status if result else "not_found"})
                except errors.VenueErrorBase as exc:
                    canceled.append({"venue": venue, "client_order_id": order.client_order_id, "error": exc.message})
            self.venue_open_orders[venue] = []
        return canceled

    async def close_all(self) -> dict[str, Any]:
        """Reduce-only flatten of every venue position, including ones the bot did not open."""
        if self.state == "ACTIVE":
            await self._set_state("REDUCING", "close-all requested", "operator")
        canceled = await self._cancel_working_orders()
        results: list[dict[str, Any]] = []
        async with self._trade_lock:
            # Local positions first made equal to the venues', so reduce-only checks see the truth.
            await self._reconcile()
            intent_id = new_intent_id()
            for venue, client in self.clients.items():
                try:
                    positions = await client.fetch_positions()
                except errors.VenueErrorBase as exc:
                    results.append({"venue": venue, "status": "error", "error": exc.message})
                    continue
                for number, position in enumerate(positions):
                    results.append(await self._flatten(client, position, intent_id, number))
            await self._reconcile()
            await self._close_flat_trades()
        self._publish()
        return {"state": self.state, "results": results, "canceled_orders": canceled}

    async def _close_flat_trades(self) -> None:
        """Trades whose legs are all flat at the venues are over: without this the scanner would keep
        sending exits for positions that no longer exist."""
        for trade_id, trade in list(self.open_trades.items()):
            sizes = [self.portfolio.positions.get((leg["venue"], leg["symbol"])) for leg in trade["legs"]]
            if all(p is None or p.size == 0 for p in sizes):
                await self.journal.close_trade(trade_id)
                del self.open_trades[trade_id]
                log.warning("trade %s closed by close-all", trade_id)

    async def _flatten(self, client: ExchangeClient, position, intent_id: str, number: int) -> dict[str, Any]:
        venue, symbol = position.venue, position.symbol
        side = "sell" if position.size > 0 else "buy"
        entry = {"venue": venue, "symbol": symbol, "size": _s(position.size), "side": side}
        instrument = self.instruments.get((venue, symbol))
        if instrument is None:
            try:
                instrument = (await client.load_instruments([symbol]))[symbol]
                self.instruments[(venue, symbol)] = instrument
            except errors.VenueErrorBase as exc:
                return {**entry, "status": "error", "error": f"instrument unknown: {exc.message}"}
        qty = abs(position.size) / instrument.contract_size
        fallback = position.mark_price or position.entry_price
        request = OrderRequest(venue, symbol, side, qty, self._aggressive_price(venue, symbol, side, fallback),
                               client_order_id(venue, intent_id, f"f{number}", 0), reduce_only=True)
        approved = self.gate.approve_order(request, "flatten", self._risk_context(), intent_id)
        if isinstance(approved, Refusal):
            return {**entry, "status": "refused", "error": f"{approved.rule}: {approved.detail}"}
        await self.journal.record_order(approved.request, "flatten", intent_id)
        sent = await self._send(approved, None)
        remaining = abs(position.size) - sent.filled_base
        status = "closed" if remaining == 0 else "rejected" if sent.rejected else "unknown" if sent.unknown else "partial"
        return {**entry, "status": status, "filled": _s(sent.filled_base), "remaining": _s(remaining),
                "client_order_id": request.client_order_id, "error": sent.error}

    async def sync_positions(self) -> dict[str, Any]:
        async with self._trade_lock:
            report = await self._reconcile(funding=True)
        self._funding_synced_at = self._clock()
        self._publish()
        return report

    # ====================================================================== reads
    def trading_state(self) -> dict[str, Any]:
        return {"state": self.state, "reason": self.state_reason, "since": self.state_since,
                "reconciled": dict(self.reconciled), "leg_failures": self.leg_failures,
                "open_trades": len(self.open_trades)}

    def positions(self) -> list[dict[str, Any]]:
        residues = self.residues()
        out = []
        for position in self.portfolio.open_positions():
            key = (position.venue, position.symbol)
            mark = self._mark(*key)
            out.append({
                "venue": position.venue, "symbol": position.symbol,
                "side": "long" if position.size > 0 else "short", "size": _s(position.size),
                "entry_price": _s(position.entry_price), "mark_price": _s(mark),
                "unrealized_pnl": _s((mark - position.entry_price) * position.size) if mark is not None else "0",
                "leverage": _s(self.portfolio.leverage.get(key)),
                # Base held beyond the trade's other leg: a residue no venue could trade, unhedged.
                "unhedged_base": _s(residues.get(key, ZERO)),
            })
        return out

    def balances(self) -> list[dict[str, Any]]:
        return [{"venue": b.venue, "equity": _s(b.equity), "available": _s(b.available),
                 "used_margin": _s(b.used_margin)} for b in self.portfolio.balances.values()]

    def active_orders(self) -> list[dict[str, Any]]:
        working = list(self.in_flight.values())
        for venue, orders in self.venue_open_orders.items():
            working += [{"venue": venue, "symbol": o.symbol, "side": o.side, "qty": _s(o.qty),
                         "filled_qty": _s(o.filled_qty), "client_order_id": o.client_order_id,
                         "status": o.status} for o in orders]
        return working

    def pnl_today(self) -> dict[str, Any]:
        return {k: _s(v) for k, v in self.portfolio.pnl_today().items()}

    async def trades_since(self, since_ts: float) -> list[dict[str, Any]]:
        """Fills of the last 24 h at most (as before: older ones are in the journal only), oldest
        first. From memory when the portfolio's bounded history still holds all of them, else
        from the journal (a fast market outruns portfolio.MAX_RECENT_FILLS within a day)."""
        since_ts = max(since_ts, self._clock() - 86400.0)
        if self.portfolio.complete_since(since_ts):
            return [f.as_dict() for f in self.portfolio.trades_since(since_ts)]
        return [_journal_fill(row).as_dict() for row in await self.journal.fills_since(since_ts)]

    def _publish(self) -> None:
        pnl = self.portfolio.pnl_today()
        m = self.metrics
        m.pnl_realized.set(float(pnl["realized"]))
        m.pnl_unrealized.set(float(pnl["unrealized"]))
        m.fees_paid.set(float(pnl["fees"]))
        m.funding_pnl.set(float(pnl["funding"]))
        for venue, balance in self.portfolio.balances.items():
            m.equity.labels(venue).set(float(balance.equity))
        m.active_positions.set(len(self.portfolio.open_positions()))
        m.capital_utilization.set(float(self.portfolio.capital_utilization_percent()))
