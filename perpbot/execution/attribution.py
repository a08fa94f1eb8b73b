"""Per-trade attribution as the engine keeps it: computed from the journal (the decisions' expectations,
the venue's fills and funding) when a trade closes, saved, put into the metrics once, recomputed when
read (funding for a trade's holding time can arrive after it closed), summed per day for the API.

The figures themselves are perpbot.portfolio.attribution's (pure); the reads and writes are
perpbot.journal.attribution's. Attribution never stands in the way of trading: a failure is logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from perpbot.core.decisions import LegExpectation
from perpbot.journal.attribution import AttributionJournal, IntentRecord, TradeRecord
from perpbot.journal.sqlite import Journal
from perpbot.portfolio.attribution import (
    ZERO, LegFill, LegInputs, SummaryRow, TradeAttribution, attribute_leg, daily_summary,
)
from perpbot.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

DAY_S = 86400.0
# Trades closed this recently are recomputed (refresh, summaries): funding settled while they were held may
# still be on its way (the funding-history sync runs every minute; a private stream pushes it at once).
REFRESH_S = 600.0
# The periodic refresh runs at most this often (it recomputes recent trades and reads 24 h of them).
REFRESH_EVERY_S = 60.0
# The window the funding and fee gauges sum over.
GAUGE_WINDOW_S = DAY_S
BPS = Decimal(10000)


def expectation_of(decision: dict[str, Any], venue: str, symbol: str) -> LegExpectation | None:
    """The journalled decision's expectation of its leg on venue/symbol (None when it has none)."""
    expectation = decision.get("expectation") or {}
    for leg, expected in zip(decision.get("legs", ()), expectation.get("legs", ())):
        if (leg.get("venue"), leg.get("symbol")) == (venue, symbol):
            try:
                return LegExpectation(**{k: Decimal(str(v)) for k, v in expected.items()})
            except (TypeError, ArithmeticError):
                log.error("unreadable expectation for %s %s: %r", venue, symbol, expected)
                return None
    return None


def optional_decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def attribute(trade: TradeRecord, intents: list[IntentRecord], fills: Iterable[Any], funding: Iterable[Any],
              now: float) -> TradeAttribution:
    """A journalled trade's attribution (pure apart from the rows handed in)."""
    entry = next((i for i in intents if i.intent_id == trade.intent_id), None)
    decisions = {i.intent_id: i.decision for i in intents}
    until = trade.closed_ts if trade.closed_ts is not None else now
    held_s = Decimal(str(round(max(0.0, until - trade.opened_ts), 3)))
    fills = list(fills)
    funding = list(funding)
    legs = []
    for leg in trade.legs:
        venue, symbol = leg["venue"], leg["symbol"]
        own = [f for f in fills if (f.venue, f.symbol) == (venue, symbol)]
        # Each fill judged by its own decision's expectation (entry, exit, or the repair of either).
        references = {i: expectation_of(d, venue, symbol) for i, d in decisions.items()}
        legs.append(attribute_leg(LegInputs(
            venue=venue, symbol=symbol, side=leg["side"],
            fills=tuple(LegFill(f.side, f.base_qty, f.price, f.fee, f.ts,
                                references.get(f.intent_id) if f.intent_id is not None else None) for f in own),
            funding=tuple(p.amount for p in funding if (p.venue, p.symbol) == (venue, symbol)),
            entry=references.get(trade.intent_id), exit=None, held_s=held_s,
        )))
    decision = entry.decision if entry else {}
    return TradeAttribution(trade.trade_id, trade.strategy, trade.base, trade.opened_ts, trade.closed_ts,
                            optional_decimal(decision.get("edge_bps")), optional_decimal(decision.get("edge_usdt")),
                            tuple(legs))


class TradeAttributions:
    def __init__(self, journal: Journal, metrics: Metrics, venues: Iterable[str],
                 clock: Callable[[], float] = time.time) -> None:
        self.store = AttributionJournal(journal, clock)
        self.metrics = metrics
        self.clock = clock
        self.venues = sorted(venues)
        self._refreshed_at = float("-inf")
        for venue in self.venues:  # every venue's series exists from the start (0: nothing attributed yet)
            for phase in ("entry", "exit"):
                metrics.slippage_bps.labels(venue, phase)
            metrics.funding_realized_expected_ratio.labels(venue).set(1)
            metrics.funding_drift_usdt.labels(venue).set(0)
            metrics.fee_drift_bps.labels(venue).set(0)

    async def compute(self, trade: TradeRecord) -> TradeAttribution:
        """The trade's attribution from the journal as it stands, saved."""
        now = self.clock()
        until = trade.closed_ts if trade.closed_ts is not None else now
        intents = await self.store.intents(trade)
        fills = await self.store.fills(trade, [i.intent_id for i in intents] or [trade.intent_id], until)
        funding = await self.store.funding(trade, until)
        result = attribute(trade, intents, fills, funding, now)
        await self.store.save(trade, result.as_dict())
        return result

    async def of_trade(self, trade_id: str) -> TradeAttribution | None:
        trade = await self.store.trade(trade_id)
        return await self.compute(trade) if trade is not None else None

    async def on_trade_closed(self, trade_id: str) -> None:
        """A trade just closed: its attribution saved and its slippage observed (once). Runs under the
        trade lock: a few reads of this trade only; the 24 h gauges move in the periodic refresh, which
        also catches trades closed by start-up repair."""
        try:
            result = await self.of_trade(trade_id)
            if result is None:
                return
            await self._observe_once(result)
        except Exception:  # attribution is reporting: it must never stop a trade's bookkeeping
            log.exception("attribution of trade %s failed", trade_id)

    async def _observe_once(self, result: TradeAttribution) -> None:
        """A closed trade's slippage into the histogram, the first time only (restarts included)."""
        if not result.closed or not await self.store.mark_observed(result.trade_id):
            return
        for leg in result.legs:
            if leg.entry_qty:
                self.metrics.slippage_bps.labels(leg.venue, "entry").observe(float(leg.entry_slippage_bps))
            if leg.exit_qty:
                self.metrics.slippage_bps.labels(leg.venue, "exit").observe(float(leg.exit_slippage_bps))

    async def refresh(self) -> None:
        """Trades closed in the last REFRESH_S recomputed (funding booked after they closed), and the
        gauges' 24 h window moved on. Run by the engine's periodic pass, at most every REFRESH_EVERY_S."""
        now = self.clock()
        if now - self._refreshed_at < REFRESH_EVERY_S:
            return
        self._refreshed_at = now
        try:
            await self._recompute_recent(self.clock() - REFRESH_S)
            await self.update_gauges()
        except Exception:  # reporting only: never fails the periodic pass
            log.exception("attribution refresh failed")

    async def _recompute_recent(self, since_ts: float) -> None:
        for trade in await self.store.trades_since(since_ts):
            if trade.closed_ts is not None:
                # A trade closed elsewhere than in a decision (start-up repair) is observed here.
                await self._observe_once(await self.compute(trade))

    async def since(self, since_ts: float) -> list[TradeAttribution]:
        """Trades closed at or after `since_ts` (the recent ones recomputed first: late funding)."""
        await self._recompute_recent(max(since_ts, self.clock() - REFRESH_S))
        return [TradeAttribution.from_dict(row) for row in await self.store.closed_since(since_ts)]

    async def summary(self, days: int) -> list[SummaryRow]:
        """Per UTC day (the last `days`, today included), strategy and venue."""
        now = self.clock()
        start = now - (now % DAY_S) - (days - 1) * DAY_S
        return daily_summary(await self.since(start))

    async def update_gauges(self) -> None:
        """Funding realised/expected and fee drift per venue over the trades closed in the last 24 h."""
        trades = [TradeAttribution.from_dict(row)
                  for row in await self.store.closed_since(self.clock() - GAUGE_WINDOW_S)]
        for venue in self.venues:
            legs = [leg for t in trades for leg in t.legs if leg.venue == venue]
            funding = sum((leg.funding_usdt for leg in legs), ZERO)
            expected = sum((leg.expected_funding_usdt for leg in legs), ZERO)
            fees = sum((leg.fee_drift_usdt for leg in legs), ZERO)
            notional = sum((leg.traded_notional_usdt for leg in legs), ZERO)
            # Nothing expected and nothing received is "as expected" (1); otherwise the plain ratio.
            ratio = funding / expected if expected else (Decimal(1) if not funding else Decimal(0))
            self.metrics.funding_realized_expected_ratio.labels(venue).set(float(ratio))
            self.metrics.funding_drift_usdt.labels(venue).set(float(funding - expected))
            self.metrics.fee_drift_bps.labels(venue).set(float(fees / notional * BPS) if notional else 0.0)

    async def annotate(self, fills: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Fills (the /api/trades rows) each with its trade's id and, once the trade closed, the
        attribution of the trade's leg on the fill's venue/symbol (None while it is open)."""
        keys = [(f["venue"], f["client_order_id"]) for f in fills if f.get("client_order_id")]
        trade_of = await self.store.trade_ids_of(keys) if keys else {}
        saved = await self.store.saved_many(list(trade_of.values())) if trade_of else {}
        out = []
        for fill in fills:
            trade_id = trade_of.get((fill["venue"], fill.get("client_order_id") or ""))
            attribution = saved.get(trade_id) if trade_id is not None else None
            leg = None
            if attribution is not None and attribution.get("status") == "closed":
                leg = next((x for x in attribution.get("legs", ())
                            if (x["venue"], x["symbol"]) == (fill["venue"], fill["symbol"])), None)
            out.append({**fill, "trade_id": trade_id, "attribution": leg})
        return out
