"""The scanner: runs every strategy over the bases whose books changed, on usable books only."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

from perpbot.book.store import BookStore
from perpbot.core.decisions import Decision
from perpbot.core.events import FundingUpdate
from perpbot.core.instruments import Instrument
from perpbot.scanner.protocol import FundingMap, Key, MarketView, OpenTrade, Strategy, Usable, index_by_base
from perpbot.scanner.tops import Tops
from perpbot.telemetry.metrics import Metrics

log = logging.getLogger(__name__)

# The single-TopScreen products in C memory (perpbot/scanner/_tops.c, Tops) when the accelerator is built
# and not disabled (PERPBOT_PURE_PYTHON=1); the Python lists below do the same work otherwise.
_Tops = Tops


class Scanner:
    """Turns book changes into decisions.

    `scan` is synchronous and pure apart from the opportunity counter; `run` is the loop that
    waits on the store's `changed` event. Updates that arrive while a scan (or the awaited
    `on_decisions`) runs accumulate in the store's dirty set and are conflated into the next
    scan, so a burst of N updates costs one scan per base, not N.

    When every strategy is a TopScreen or FundingScreen (ours are), `scan` keeps per-book screen
    products between calls and refreshes only the books named in `changed`: every change to a
    book must reach `scan` in `changed` (the store's dirty set does this in `run`), otherwise a
    later scan of its base screens on that book's previous best prices. A book never reported
    is read when its base is first scanned. With the C accelerator built, the one TopScreen's
    products live in C memory (`tops.Tops`, one per base) and the hot path refreshes them there.
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
        self._books = store.books  # the store's dict itself (BookStore never replaces it)
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
        # Incremental fast path: when every strategy is a TopScreen or a FundingScreen, each
        # book's screen products are kept between scans and refreshed only for the keys reported
        # changed, so a quiet update costs one book read and a few integer compares.
        tops = [s for s in self.strategies if callable(getattr(s, "top_factors", None))]
        funds = [s for s in self.strategies if callable(getattr(s, "funding_may_enter", None))]
        incremental = bool(self.strategies) and all(s in tops or s in funds for s in self.strategies)
        self._tops = tops if incremental else None
        self._funds = [s.funding_may_enter for s in funds if s not in tops] if incremental else []
        self._states: dict[str, _BaseScreen] = {}
        # Per strategy: its index among the TopScreens, or None for a FundingScreen.
        self._top_index = [tops.index(s) if s in tops else None for s in self.strategies] if incremental else []
        self._versioned = type(funding_map) is FundingMap
        self._trades_seen: tuple | None = None  # the open-trades tuple _held_index was built from
        self._held_index: dict[str, list[OpenTrade]] = {}
        self._free: dict[str, list[int]] = {}  # per held base: its books no trade holds (_free_of)
        # Per strategy name: its ExitScreen (may_exit), or None (its held bases are always evaluated).
        self._exit_screens = {
            s.name: (s.may_exit if callable(getattr(s, "may_exit", None)) else None) for s in self.strategies
        }
        self._slots: dict[Key, tuple[_BaseScreen, int]] = {}
        # With exactly one TopScreen, key -> (state, index, sell, buy, state's sells, state's buys)
        # for the hot path in scan; filled as bases are first seen.
        self._quick: dict[Key, tuple] | None = (
            {} if incremental and len(tops) == 1 else None
        )
        # C products (Tops) for the hot path: only over a BookStore, whose `generation` tells when a book
        # object was replaced (Tops holds the books' key lists, so it must be rebound then).
        self._use_tops = self._quick is not None and _Tops is not None and type(store) is BookStore
        self._generation = store.generation if self._use_tops else 0

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
        quick = self._quick
        if self._use_tops and self.store.generation != self._generation:
            self._rebind()
        if quick is not None and type(changed) is tuple and len(changed) == 1:
            # Hot path (one book changed, one TopScreen): refresh that book's two products and
            # judge its base inline, without building a state list or calling the clock.
            key = changed[0]
            entry = quick.get(key)
            if entry is not None:
                state, i, sell, buy, sells, buys = entry
                tops = state.tops
                if tops is not None:
                    # In C: the same products and extremes as the Python below (see _BaseScreen.tops).
                    crossing = tops.refresh(i)
                else:
                    book = self._books.get(key)
                    if book is None:
                        bid, ask = 0, _NO_ASK
                    else:
                        keys = book.bid_keys
                        bid = keys[-1] * sell if keys else 0
                        keys = book.ask_keys
                        ask = keys[0] * buy if keys else _NO_ASK
                    sells[i] = bid
                    buys[i] = ask
                    # The base's highest sell and lowest buy product, kept incrementally: a full max/min
                    # only when the book that held the extreme moved away from it.
                    hi = state.hi
                    if bid >= hi:
                        state.hi = hi = bid
                        state.hi_i = i
                    elif i == state.hi_i:
                        state.hi = hi = max(sells)
                        state.hi_i = sells.index(hi)
                    lo = state.lo
                    if ask <= lo:
                        state.lo = lo = ask
                        state.lo_i = i
                    elif i == state.lo_i:
                        state.lo = lo = min(buys)
                        state.lo_i = buys.index(lo)
                    crossing = hi >= lo
                funding = self.funding_map
                entering = crossing or (
                    state.verdict
                    if self._versioned and funding.version == state.version
                    else state.funding_may_enter(funding, self._funds)
                )
                base = state.base
                if open_trades:
                    index = self._held_index if open_trades is self._trades_seen else self._held_of(open_trades)
                    held = index.get(base)
                else:
                    held = None
                if held:
                    # A held base: skipped when no trade of it can be exited now and no entry is
                    # possible on the books its trades leave free (entries never reuse a held book).
                    quiet = not self._exiting(held, self.clock()) and (
                        not entering or not state.may_enter(funding, self._funds, self._free_of(state, held)))
                else:
                    quiet = not entering
                if quiet:
                    self.scans += 1
                    self.screened += 1
                    if base in self._live:
                        del self._live[base]
                    return []
                # Otherwise the general path below (refreshing the same book again is harmless).
        incremental = self._tops is not None
        if type(changed) is tuple and len(changed) == 1:  # one book changed: skip set + sort
            key = changed[0]
            base = self._base_of.get(key)
            if base is None:
                return []
            if incremental:
                slot = self._slots.get(key)
                if slot is not None:
                    slot[0].refresh(slot[1], self.store.books.get(key))
            bases = [base]
        else:
            if incremental:
                changed = list(changed)
                books = self.store.books
                if quick is not None:
                    for key in changed:  # the hot path's refresh, inlined: a burst has many keys
                        entry = quick.get(key)
                        if entry is not None:
                            state, i, sell, buy, sells, buys = entry
                            book = books.get(key)
                            if book is None:
                                sells[i] = 0
                                buys[i] = _NO_ASK
                            else:
                                keys = book.bid_keys
                                sells[i] = keys[-1] * sell if keys else 0
                                keys = book.ask_keys
                                buys[i] = keys[0] * buy if keys else _NO_ASK
                            state.stale = True  # hi/lo recomputed once per base, below
                            if state.tops is not None:
                                state.tops.refresh(i)
                        else:
                            slot = self._slots.get(key)
                            if slot is not None:
                                slot[0].refresh(slot[1], books.get(key))
                else:
                    for key in changed:
                        slot = self._slots.get(key)
                        if slot is not None:
                            slot[0].refresh(slot[1], books.get(key))
            bases = self.bases_of(changed)
            if not bases:
                return []
            if quick is not None:
                states = self._states
                for base in bases:
                    state = states.get(base)
                    if state is not None and state.stale:
                        state.extremes()
        self.scans += 1
        now = None
        view: MarketView | None = None
        screens = self._screens
        decisions: list[Decision] = []
        held_by_base = self._held_of(open_trades) if open_trades else {}
        for base in bases:
            trades = held_by_base.get(base, [])
            state = None
            if incremental:
                state = self._states.get(base)
                if state is None:
                    state = self._new_state(base)
            exiting = _NOBODY
            if trades and state is not None:
                if now is None:
                    now = self.clock()
                exiting = self._exiting(trades, now)
            free = self._free_of(state, trades) if trades and state is not None else None
            if state is not None and not exiting:
                if not state.may_enter(self.funding_map, self._funds, free):
                    # Same outcome as a full evaluation that found nothing (see _BaseScreen).
                    self.screened += 1
                    if base in self._live:
                        del self._live[base]
                    continue
            if now is None:
                now = self.clock()
            if screens is not None and not trades and not incremental:
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
            for n, strategy in enumerate(self.strategies):
                if state is not None:
                    # A strategy none of whose trades are on this base only looks for entries, so its
                    # own screen may skip it (trades held make entries rarer, never likelier).
                    # Its trades here that cannot be exited now (ExitScreen) count as none.
                    if strategy.name not in exiting:
                        j = self._top_index[n]
                        if j is not None:
                            if not state.top_may_enter(j, free):
                                continue
                        elif not state.funding_may_enter(self.funding_map, self._funds):
                            continue
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

    def _held_of(self, open_trades: Sequence[OpenTrade]) -> dict[str, list[OpenTrade]]:
        """The open trades by base. A tuple (what the bot hands over: a new one whenever the trades
        change) is indexed once and the index kept while the same tuple comes back; any other
        sequence may be mutated between scans, so it is indexed every time."""
        if open_trades is self._trades_seen:
            return self._held_index
        index: dict[str, list[OpenTrade]] = {}
        for trade in open_trades:
            trades = index.get(trade.base)
            if trades is None:
                index[trade.base] = [trade]
            else:
                trades.append(trade)
        # A new index: the free books computed for the previous one no longer hold.
        self._free = {}
        if type(open_trades) is tuple:
            self._trades_seen, self._held_index = open_trades, index
        else:
            self._trades_seen, self._held_index = None, {}
        return index

    def _free_of(self, state: _BaseScreen, trades: list[OpenTrade]) -> list[int]:
        """The indices of `state`'s books that none of `trades` (its base's) holds; kept with the
        index of the open trades it was computed for."""
        free = self._free.get(state.base)
        if free is None:
            busy = _busy(trades)
            free = [i for i, key in enumerate(state.keys) if key not in busy]
            if self._trades_seen is not None:
                self._free[state.base] = free
        return free

    def _exiting(self, trades: Sequence[OpenTrade], now: float) -> frozenset[str] | set[str]:
        """The names of the strategies that may exit one of `trades` (a held base's) now: every
        owner without an ExitScreen, or whose may_exit says yes (or fails). Trades of a strategy
        the scanner does not run are nobody's to exit."""
        screens = self._exit_screens
        books = self._books
        out: set[str] | frozenset[str] = _NOBODY
        for trade in trades:
            name = trade.strategy
            if name in out or name not in screens:
                continue
            screen = screens[name]
            try:
                quiet = screen is not None and not screen(trade, books, self.instruments, self.funding_map, now)
            except Exception:
                quiet = False  # a failing screen: the full evaluation logs the strategy's error
            if not quiet:
                out = {name} if out is _NOBODY else out | {name}
        return out

    def _new_state(self, base: str) -> _BaseScreen:
        """The incremental screen of `base`, built from every book of it as the store holds them now."""
        keyed = self._keys_by_base.get(base, [])
        state = _BaseScreen(base, [key for _, key in keyed], [[_factors(t, inst) for inst, _ in keyed] for t in self._tops])
        books = self.store.books
        for i, (_, key) in enumerate(keyed):
            self._slots[key] = (state, i)
            state.refresh(i, books.get(key))
            if self._quick is not None:
                self._quick[key] = (state, i, *state.factors[0][i], state.sells[0], state.buys[0])
        if self._use_tops and keyed:
            try:
                tops = _Tops(list(state.factors[0]))
            except (TypeError, ValueError):
                tops = None  # factors outside C's exact range: this base keeps the Python lists
            if tops is not None:
                for i, (_, key) in enumerate(keyed):
                    tops.bind(i, books.get(key))
                state.tops = tops
        self._states[base] = state
        return state

    def _rebind(self) -> None:
        """A book object was added or replaced in the store: every C screen reads the books as they are now."""
        books = self._books
        for state in self._states.values():
            if state.tops is not None:
                for i, key in enumerate(state.keys):
                    state.tops.bind(i, books.get(key))
        self._generation = self.store.generation

    def prime(self) -> None:
        """Build every base's incremental screen now (otherwise built at its first scan)."""
        if self._tops is not None:
            for base in self._keys_by_base:
                if base not in self._states:
                    self._new_state(base)

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
            if len(changed) == 1:
                changed = tuple(changed)  # one book: scan's single-key fast path
            decisions = self.scan(changed, open_trades_fn())
            if decisions:
                await on_decisions(decisions)


def _factors(strategy, instrument: Instrument) -> tuple[int, int]:
    """A TopScreen's factors for one book; (0, 0) lets every update through when they cannot be
    computed (then `evaluate` runs, and logs the strategy's error if it has one)."""
    try:
        return strategy.top_factors(instrument)
    except Exception:
        return 0, 0


def _busy(trades: Sequence[OpenTrade]) -> frozenset[Key]:
    """The venue/symbols the trades hold: no strategy's entry uses them (see TopScreen)."""
    return frozenset((leg.venue, leg.symbol) for trade in trades for leg in trade.legs)


_NOBODY: frozenset[str] = frozenset()  # Scanner._exiting: no strategy may exit a trade here

# Larger than any best_ask x buy factor: the buy product of a book without asks (never passes).
_NO_ASK = 1 << 512


class _BaseScreen:
    """Incremental entry screen of one base: per book, best_bid x sell and best_ask x buy for each
    TopScreen strategy, as of the last time the book was reported changed (or first seen), and the
    funding updates the FundingScreens last judged.

    Exact and conservative: a book's products change only when the book does, and every book
    change reaches `Scanner.scan` in `changed` (the store's dirty set); books that are not usable
    stay in, which only ever lets more through (a TopScreen or FundingScreen over every book is at
    least as permissive as over the usable ones). Funding is read on every check, since funding
    updates do not wake the scanner, and re-judged only when an update object was replaced.
    """

    __slots__ = ("base", "keys", "factors", "sells", "buys", "seen", "verdict", "version", "hi", "hi_i", "lo",
                 "lo_i", "stale", "tops")

    def __init__(self, base: str, keys: list[Key], factors: list[list[tuple[int, int]]]) -> None:
        self.base = base
        self.keys = keys
        self.factors = factors  # [strategy][book] -> (sell, buy)
        self.sells = [[0] * len(keys) for _ in factors]
        self.buys = [[_NO_ASK] * len(keys) for _ in factors]
        self.seen: list | None = None
        self.verdict = False
        self.version = -1  # FundingMap.version when `verdict` was judged (-1: never)
        # The first TopScreen's max(sells) / min(buys) and where they are (Scanner.scan's hot path
        # keeps them; `stale` when the products changed without them).
        self.hi = 0
        self.hi_i = 0
        self.lo = _NO_ASK
        self.lo_i = 0
        self.stale = False
        # The first TopScreen's products in C (accel Tops), when the scanner made one: then its verdicts come
        # from there (top_may_enter), and the hot path refreshes only those (the lists here may lag).
        self.tops = None
        self.extremes()

    def refresh(self, i: int, book) -> None:
        """Book `i` changed: recompute its products from its best bid and ask."""
        bid = ask = None
        if book is not None:
            keys = book.bid_keys
            if keys:
                bid = keys[-1]
            keys = book.ask_keys
            if keys:
                ask = keys[0]
        for factors, sells, buys in zip(self.factors, self.sells, self.buys):
            sell, buy = factors[i]
            sells[i] = 0 if bid is None else bid * sell
            buys[i] = _NO_ASK if ask is None else ask * buy
        if self.tops is not None:
            self.tops.bind(i, book)
        self.extremes()

    def extremes(self) -> None:
        """Recompute hi/lo (and where they are) from the first TopScreen's products."""
        self.stale = False
        if self.sells and self.keys:
            sells, buys = self.sells[0], self.buys[0]
            self.hi = max(sells)
            self.hi_i = sells.index(self.hi)
            self.lo = min(buys)
            self.lo_i = buys.index(self.lo)

    def may_enter(self, funding: Mapping[Key, FundingUpdate], funds: list, free: list[int] | None = None) -> bool:
        """False only when no strategy could enter on this base (then `evaluate` is skipped);
        with `free` (the indices of the books no open trade of the base holds) over those only."""
        for j in range(len(self.sells)):
            if self.top_may_enter(j, free):
                return True
        return self.funding_may_enter(funding, funds)

    def top_may_enter(self, j: int, free: list[int] | None = None) -> bool:
        """TopScreen `j`'s verdict: some book's sell product reaches another's buy product, over
        the `free` books when given (a strategy's entries never use a held venue/symbol)."""
        if j == 0 and self.tops is not None:
            return self.tops.crossing if free is None else self.tops.crossing_among(free)
        sells, buys = self.sells[j], self.buys[j]
        if free is None:
            return max(sells) >= min(buys)
        hi, lo = -1, _NO_ASK
        for i in free:
            if sells[i] > hi:
                hi = sells[i]
            if buys[i] < lo:
                lo = buys[i]
        return hi >= lo  # never with no free book (hi < 0)

    def funding_may_enter(self, funding: Mapping[Key, FundingUpdate], funds: list) -> bool:
        """The FundingScreens' verdict, re-judged only when one of the base's updates was replaced."""
        if funds:
            if type(funding) is FundingMap:
                version = funding.version
                if version == self.version:
                    return self.verdict  # a FundingMap with no write since the last judgement
                self.version = version
            updates = list(map(funding.get, self.keys))
            if updates != self.seen:
                self.seen = updates
                try:
                    self.verdict = any(screen(updates) for screen in funds)
                except Exception:
                    self.verdict = True  # a failing screen: the full evaluation logs the strategy's error
            return self.verdict
        return False

