"""The scanner: runs every strategy over the bases whose books changed, on usable books only."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

from perpbot.book.store import BookStore
from perpbot.core.decisions import Decision
from perpbot.core.events import FundingUpdate
from perpbot.core.instruments import Instrument
from perpbot.scanner.protocol import Key, MarketView, OpenTrade, Strategy, Usable, index_by_base
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
        # Quiet-market fast path: when every strategy has an entry screen (EntryScreen), a
        # base with no open trade whose screens all say no is not evaluated at all.
        screens = [getattr(s, "may_enter", None) for s in self.strategies]
        self._screens = screens if screens and all(screens) else None
        self._keys_by_base = {
            base: [(inst, (inst.venue, inst.symbol)) for inst in insts] for base, insts in self._by_base.items()
        }
        self.screened = 0  # bases skipped by the screens (the cheap path)

    def _usable(self, base: str, now: float) -> Usable:
        """The base's usable books, as MarketView.books_for sees them, with their keys."""
        store = self.store
        books = store.books
        out: Usable = []
        if type(store) is BookStore:
            stale = store.stale_after_s
            for inst, key in self._keys_by_base.get(base, ()):
                book = books.get(key)
                # BookStore.is_usable, inlined (valid and fresh): this runs on every update.
                if book is not None and book.valid and now - book.recv_ts <= stale:
                    out.append((inst, key, book))
        else:
            for inst, key in self._keys_by_base.get(base, ()):
                book = books.get(key)
                if book is not None and store.is_usable(book, now):
                    out.append((inst, key, book))
        return out

    def bases_of(self, changed: Iterable[Key]) -> list[str]:
        """The bases touched by `changed` keys, sorted (unknown instruments are ignored)."""
        base_of = self._base_of
        return sorted({base_of[key] for key in changed if key in base_of})

    def scan(self, changed: Iterable[Key], open_trades: Sequence[OpenTrade]) -> list[Decision]:
        """Evaluate every strategy for each base whose books changed; count entry opportunities."""
        if type(changed) is tuple and len(changed) == 1:  # one book changed: skip set + sort
            base = self._base_of.get(changed[0])
            bases = [base] if base is not None else []
        else:
            bases = self.bases_of(changed)
        if not bases:
            return []
        self.scans += 1
        now = self.clock()
        view: MarketView | None = None
        screens = self._screens
        decisions: list[Decision] = []
        for base in bases:
            trades = [t for t in open_trades if t.base == base] if open_trades else []
            if screens is not None and not trades:
                usable = self._usable(base, now)
                funding = self.funding_map
                quiet = True
                try:
                    for screen in screens:
                        if screen(base, usable, funding):
                            quiet = False
                            break
                except Exception:
                    quiet = False  # a failing screen: the full evaluation logs the strategy's error
                if quiet:
                    # No strategy can decide anything here: the same outcome as a full
                    # evaluation that found nothing (no live opportunity on this base).
                    self.screened += 1
                    if base in self._live:
                        del self._live[base]
                    continue
            if view is None:
                view = MarketView(self.store, self.funding_map, self.instruments, now, self._by_base)
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
