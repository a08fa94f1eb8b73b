"""The scanner: runs every strategy over the bases whose books changed, on usable books only."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence

from perpbot.book.store import BookStore
from perpbot.core.decisions import Decision
from perpbot.core.events import FundingUpdate
from perpbot.core.instruments import Instrument
from perpbot.scanner.expectations import intended_hold_s, with_expectation
from perpbot.scanner.held import HeldTrades
from perpbot.scanner.protocol import EntryScreen, Key, MarketView, OpenTrade, Strategy, index_by_base
from perpbot.scanner.screens import ScreenIndex
from perpbot.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

# An entry opportunity as counted: (strategy, ((venue, symbol, side) of each leg)).
Opportunity = tuple[str, tuple[tuple[str, str, str], ...]]
_NONE_LIVE: frozenset[Opportunity] = frozenset()
_NOBODY: frozenset[str] = frozenset()


class Scanner:
    """Turns book changes into decisions.

    `scan` is synchronous and pure apart from the opportunity counter; `run` is the loop that
    waits on the store's `changed` event. Updates that arrive while a scan (or the awaited
    `on_decisions`) runs accumulate in the store's dirty set and are conflated into the next
    scan, so a burst of N updates costs one scan per base, not N.

    What each strategy declares (`Strategy.screens()`) decides how much of that work is skipped:
    when every strategy has a TopScreen or a FundingScreen (ours do), the screen index
    (perpbot/scanner/screens.py) keeps per-book screen products between calls and refreshes only
    the books named in `changed`: every change to a book must reach `scan` in `changed` (the
    store's dirty set does this in `run`), otherwise a later scan of its base screens on that
    book's previous best prices. A book never reported is read when its base is first scanned.
    Otherwise, when every strategy has an EntryScreen, a base with no open trade whose screens
    all say no is not evaluated; with neither, every changed base is.
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
        self._live: dict[str, set[Opportunity]] = {}
        self.scans = 0
        self.screened = 0  # bases skipped by the screens (the cheap path)
        declared = [strategy.screens() for strategy in self.strategies]
        keys_by_base = {base: [(inst, (inst.venue, inst.symbol)) for inst in insts]
                        for base, insts in self._by_base.items()}
        self.index = ScreenIndex.of(declared, store, keys_by_base, funding_map)
        entry_screens = [screens.may_enter for screens in declared if screens.may_enter is not None]
        self._entry_screens: list[EntryScreen] | None = (
            entry_screens if entry_screens and len(entry_screens) == len(declared) else None)
        self.held = HeldTrades({s.name: screens.may_exit for s, screens in zip(self.strategies, declared)},
                               store.books, instruments, funding_map)

    def bases_of(self, changed: Collection[Key]) -> list[str]:
        """The bases touched by `changed` keys, sorted (unknown instruments are ignored)."""
        base_of = self._base_of
        if len(changed) == 1:  # one book changed (most scans): no set, no sort
            (key,) = changed
            return [base_of[key]] if key in base_of else []
        return sorted({base_of[key] for key in changed if key in base_of})

    def scan(self, changed: Collection[Key], open_trades: Sequence[OpenTrade]) -> list[Decision]:
        """Evaluate every strategy for each base whose books changed; count entry opportunities."""
        if len(changed) == 1 and self._screened_alone(changed, open_trades):
            return []
        if self.index is not None:
            self.index.refresh(changed)
        bases = self.bases_of(changed)
        if not bases:
            return []
        self.scans += 1
        view = MarketView(self.store, self.funding_map, self.instruments, self.clock(), self._by_base)
        held = self.held.by_base(open_trades) if open_trades else {}
        decisions: list[Decision] = []
        for base in bases:
            trades = held.get(base, [])
            strategies = self._to_evaluate(base, trades, view)
            if strategies is None:
                # Same outcome as a full evaluation that found nothing (no live opportunity on this base).
                self.screened += 1
                self._live.pop(base, None)
                continue
            decisions.extend(self._evaluate(strategies, view, base, trades))
        return decisions

    def _screened_alone(self, changed: Collection[Key], open_trades: Sequence[OpenTrade]) -> bool:
        """The hot path, one book changed: refresh its products and judge its base inline, without a
        list, a set, a view or the clock (read for a held base only). True when the base's screens say
        no (counted as a screened scan); False leaves it to the general path (which refreshes the same
        book again, harmlessly), as does a base whose screen is not built yet."""
        index = self.index
        if index is None:
            return False
        if self.store.generation != index.generation:
            index.rebind()
        (key,) = changed
        slot = index.slots.get(key)
        if slot is None:
            return False
        screen, i = slot
        versioned = index.versioned
        entering = screen.refresh(i) or (
            screen.verdict if versioned is not None and versioned.version == screen.version
            else index.funding_may_enter(screen))
        trades = None
        if open_trades:
            held = self.held
            trades = (held.index if open_trades is held.seen else held.by_base(open_trades)).get(screen.base)
        if trades:
            # A held base: skipped when no trade of it can be exited now and no entry is possible on
            # the books its trades leave free (entries never reuse a held book).
            if self.held.exiting(trades, self.clock()) or (
                    entering and index.may_enter(screen, self.held.free_of(screen.base, screen.keys, trades))):
                return False
        elif entering:
            return False
        self.scans += 1
        self.screened += 1
        live = self._live
        if screen.base in live:
            del live[screen.base]
        return True

    def _to_evaluate(self, base: str, trades: list[OpenTrade], view: MarketView) -> list[Strategy] | None:
        """The strategies to evaluate on `base`, whose open trades are `trades`; None when its screens
        say that none of them could decide anything there."""
        index = self.index
        if index is None:
            return self.strategies if trades or self._may_enter(base, view) else None
        screen = index.screen(base)
        exiting = self.held.exiting(trades, view.now) if trades else _NOBODY
        free = self.held.free_of(base, screen.keys, trades) if trades else None
        if not exiting and not index.may_enter(screen, free):
            return None
        # A strategy none of whose trades are on this base only looks for entries, so its own screen
        # may skip it (trades held make entries rarer, never likelier). Its trades here that cannot be
        # exited now (ExitScreen) count as none.
        return [strategy for n, strategy in enumerate(self.strategies)
                if strategy.name in exiting or index.strategy_may_enter(n, screen, free)]

    def _may_enter(self, base: str, view: MarketView) -> bool:
        """Without incremental screens, on a base with no open trade: some strategy's EntryScreen says
        yes (or fails: the full evaluation logs the strategy's error), or they do not all have one."""
        screens = self._entry_screens
        if screens is None:
            return True
        usable = view.usable(base)
        try:
            return any(may_enter(base, usable, self.funding_map) for may_enter in screens)
        except Exception:
            return True

    def _evaluate(self, strategies: list[Strategy], view: MarketView, base: str,
                  trades: list[OpenTrade]) -> list[Decision]:
        """Every one of `strategies` on `base`; counts the entries not already live at its last scan."""
        decisions: list[Decision] = []
        live: set[Opportunity] = set()
        previous = self._live.get(base, _NONE_LIVE)
        for strategy in strategies:
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
            # Each decision carries what its strategy expected of its legs (attribution compares the fills).
            hold_s = intended_hold_s(strategy)
            found = [with_expectation(decision, view, hold_s) for decision in found]
            for decision in found:
                if decision.action == "open":
                    key = (strategy.name, tuple((leg.venue, leg.symbol, leg.side) for leg in decision.legs))
                    live.add(key)
                    if key not in previous:
                        self._opportunities[strategy.name].inc()
            decisions.extend(found)
        self._live[base] = live
        return decisions

    def prime(self) -> None:
        """Build every base's incremental screen now (otherwise built at its first scan)."""
        if self.index is not None:
            self.index.prime()

    async def run(
        self,
        on_decisions: Callable[[list[Decision]], Awaitable[object]],  # what it answers is not used
        open_trades_fn: Callable[[], Sequence[OpenTrade]],
    ) -> None:
        """Forever: wait for changed books, take the dirty set (conflated), scan, hand over."""
        store = self.store
        while True:
            await store.changed.wait()
            decisions = self.scan(store.take_dirty(), open_trades_fn())
            if decisions:
                await on_decisions(decisions)
