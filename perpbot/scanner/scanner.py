"""The scanner: runs every strategy over the bases whose books changed, on usable books only."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

from perpbot.book.store import BookStore
from perpbot.core.decisions import Decision
from perpbot.core.events import FundingUpdate
from perpbot.core.instruments import Instrument
from perpbot.scanner.protocol import Key, MarketView, OpenTrade, Strategy, index_by_base
from perpbot.telemetry.metrics import Metrics

log = logging.getLogger(__name__)


class Scanner:
    """Turns book changes into decisions.

    `scan` is synchronous and pure apart from the opportunity counter; `run` is the loop that
    waits on the store's `changed` event. Updates that arrive while a scan (or the awaited
    `on_decisions`) runs accumulate in the store's dirty set and are conflated into the next
    scan, so a burst of N updates costs one scan per base, not N.
    """

    def __init__(
        self,
        store: BookStore,
        strategies: Sequence[Strategy],
        metrics: Metrics,
        instruments: Mapping[Key, Instrument],
        funding_map: Mapping[Key, FundingUpdate],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.strategies = list(strategies)
        self.metrics = metrics
        self.instruments = instruments
        self.funding_map = funding_map
        self.clock = clock
        self._by_base = index_by_base(instruments)
        self._base_of = {key: instrument.base for key, instrument in instruments.items()}
        # Bound counters once: .labels() costs a dict lookup and a lock per call.
        self._opportunities = {s.name: metrics.opportunities_total.labels(s.name) for s in self.strategies}
        self._failed: set[tuple[str, str]] = set()
        # Opportunities seen in the last scan of each base: one that persists over many book
        # updates is counted once, when it appears.
        self._live: dict[str, set[tuple]] = {}
        self.scans = 0

    def bases_of(self, changed: Iterable[Key]) -> list[str]:
        """The bases touched by `changed` keys, sorted (unknown instruments are ignored)."""
        base_of = self._base_of
        return sorted({base_of[key] for key in changed if key in base_of})

    def scan(self, changed: Iterable[Key], open_trades: Sequence[OpenTrade]) -> list[Decision]:
        """Evaluate every strategy for each base whose books changed; count entry opportunities."""
        bases = self.bases_of(changed)
        if not bases:
            return []
        self.scans += 1
        view = MarketView(self.store, self.funding_map, self.instruments, self.clock(), self._by_base)
        decisions: list[Decision] = []
        for base in bases:
            trades = [t for t in open_trades if t.base == base]
            live: set[tuple] = set()
            previous = self._live.get(base, ())
            for strategy in self.strategies:
                try:
                    found = strategy.evaluate(view, base, trades)
                except Exception:
                    # One strategy's bug must not stop the others (exits included) from
                    # running: log it once per (strategy, base) until it succeeds again.
                    if (strategy.name, base) not in self._failed:
                        self._failed.add((strategy.name, base))
                        log.exception("Strategy %s failed on %s", strategy.name, base)
                    continue
                self._failed.discard((strategy.name, base))
                for decision in found:
                    if decision.action == "open":
                        key = (strategy.name, tuple((leg.venue, leg.symbol, leg.side) for leg in decision.legs))
                        live.add(key)
                        if key not in previous:
                            self._opportunities[strategy.name].inc()
                decisions.extend(found)
            self._live[base] = live
        return decisions

    async def run(
        self,
        on_decisions: Callable[[list[Decision]], Awaitable[None]],
        open_trades_fn: Callable[[], Sequence[OpenTrade]],
    ) -> None:
        """Forever: wait for changed books, take the dirty set (conflated), scan, hand over."""
        store = self.store
        while True:
            await store.changed.wait()
            changed = store.take_dirty()
            decisions = self.scan(changed, open_trades_fn())
            if decisions:
                await on_decisions(decisions)
