"""The Strategy protocol and the screens it declares, the trades it may exit, and the read-only market view it
evaluates."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from perpbot.book.l2 import L2Book
from perpbot.book.store import BookStore
from perpbot.core.decisions import Decision, Leg
from perpbot.core.events import FundingUpdate
from perpbot.core.instruments import Instrument
from perpbot.core.versioned import VersionedDict

Key = tuple[str, str]  # (venue, native symbol)
# What the scanner hands an entry screen: every usable book of one base, with its key.
Usable = list[tuple[Instrument, Key, L2Book]]


@dataclass(frozen=True, slots=True)
class OpenTrade:
    """A hedged trade as it was opened: the legs (venue, symbol, side, base_qty, entry ref price)."""

    trade_id: str
    strategy: str
    base: str
    legs: tuple[Leg, Leg]
    opened_at: float  # unix seconds
    entry_edge_bps: Decimal

    def venues(self) -> frozenset[str]:
        return frozenset((self.legs[0].venue, self.legs[1].venue))


def held_keys(trades: Iterable[OpenTrade]) -> set[Key]:
    """The venue/symbols the trades hold, which no entry uses (whichever strategy's trade holds them):
    positions are netted per venue and symbol, so a second trade there would cancel the first one's
    leg and make both trades' reduce-only exits impossible."""
    return {(leg.venue, leg.symbol) for trade in trades for leg in trade.legs}


def index_by_base(instruments: Mapping[Key, Instrument]) -> dict[str, list[Instrument]]:
    """Instruments grouped by underlying asset, in a stable (venue, symbol) order."""
    by_base: dict[str, list[Instrument]] = {}
    for key in sorted(instruments):
        instrument = instruments[key]
        by_base.setdefault(instrument.base, []).append(instrument)
    return by_base


class FundingMap(VersionedDict[tuple[str, str], FundingUpdate]):
    """The latest FundingUpdate per (venue, symbol): a dict that counts its writes in `version`,
    so the scanner can tell in one compare that no funding rate changed since it last looked
    (funding updates do not wake the scanner; the books do). Reads are plain dict reads."""

    __slots__ = ()


class MarketView:
    """What a strategy may see at one instant: usable books only, funding, instruments.

    Built per scan; reads the live store and funding map without copying them, so a view
    must not be kept across awaits.
    """

    __slots__ = ("store", "_funding", "instruments", "now", "_by_base")

    def __init__(
        self,
        store: BookStore,
        funding: Mapping[Key, FundingUpdate],
        instruments: Mapping[Key, Instrument],
        now: float,
        by_base: Mapping[str, list[Instrument]] | None = None,
    ) -> None:
        self.store = store
        self._funding = funding
        self.instruments = instruments
        self.now = now
        self._by_base = by_base if by_base is not None else index_by_base(instruments)

    def books_for(self, base: str) -> list[tuple[Instrument, L2Book]]:
        """Every venue's book of `base` that is valid and fresh now; others are left out."""
        books = self.store.books
        now = self.now
        stale = self.store.stale_after_s
        out = []
        for instrument in self._by_base.get(base, ()):
            book = books.get((instrument.venue, instrument.symbol))
            # BookStore.is_usable, inlined (valid and fresh): this runs on every evaluation.
            if book is not None and book.valid and now - book.recv_ts <= stale:
                out.append((instrument, book))
        return out

    def usable(self, base: str) -> Usable:
        """books_for with each book's key: what an entry screen (Screens.may_enter) is handed."""
        return [(instrument, (instrument.venue, instrument.symbol), book) for instrument, book in self.books_for(base)]

    def instruments_of(self, base: str) -> list[Instrument]:
        """Every instrument of `base`, usable book or not (in the stable (venue, symbol) order)."""
        return self._by_base.get(base, [])

    def book(self, venue: str, symbol: str) -> L2Book | None:
        """The book of one instrument if usable now, else None."""
        book = self.store.books.get((venue, symbol))
        if book is None or not self.store.is_usable(book, self.now):
            return None
        return book

    def instrument(self, venue: str, symbol: str) -> Instrument | None:
        return self.instruments.get((venue, symbol))

    def funding(self, venue: str, symbol: str) -> FundingUpdate | None:
        return self._funding.get((venue, symbol))

    def bases(self) -> list[str]:
        return list(self._by_base)


# The screens a strategy may declare (see Screens): each a cheap, exact necessary condition for its `evaluate`.
EntryScreen = Callable[[str, Usable, Mapping[Key, FundingUpdate]], bool]
TopScreen = Callable[[Instrument], tuple[int, int]]
FundingScreen = Callable[[list[FundingUpdate | None]], bool]
ExitScreen = Callable[[OpenTrade, Mapping[Key, L2Book], Mapping[Key, Instrument], Mapping[Key, FundingUpdate], float],
                      bool]


@dataclass(frozen=True, slots=True)
class Screens:
    """What a strategy declares it can screen (`Strategy.screens()`), all optional and for speed only:
    where a declared screen says no, the scanner skips `evaluate`, so each one must say yes whenever
    `evaluate` could decide something. Exact: integers or Decimals, never a float compare of prices.

    may_enter (EntryScreen), `may_enter(base, usable, funding)`: with no open trade on `base`, True
    whenever `evaluate` could return any decision (used when the strategies do not all declare one of
    the two incremental screens below).

    top_factors (TopScreen, incremental), `top_factors(instrument) -> (sell, buy)`: the strategy's
    entries need, for some pair of the base's books, best_bid x sell >= best_ask x buy (exact integers
    applied to the books' scaled prices). The scanner keeps these products per book, refreshes only
    the books reported changed, and skips `evaluate` on bases where no pair passes and none of the open
    trades is the strategy's own. Contract: `evaluate` exits only trades whose `strategy` is its name,
    and with none of those it returns a decision only if such a pair exists among its usable books
    (usable books are a subset of all books, so a screen over every book is at least as permissive;
    other strategies' trades only remove candidates). Entries never use a book of a venue/symbol that
    an open trade on the base holds (whichever strategy's), so with trades open the screen looks at the
    other books only.

    funding_may_enter (FundingScreen, incremental), `funding_may_enter(updates)`: the strategy's entries
    depend first on the funding updates of the base's instruments (one entry per instrument of the
    base, None where there is no rate); True whenever `evaluate` could return any decision with none of
    its own trades (strategy == its name) open on the base, for any subset of those instruments' books
    being usable. The scanner re-runs it only when one of those updates was replaced.

    may_exit (ExitScreen, held bases), `may_exit(trade, books, instruments, funding, now)`: True whenever
    `evaluate` could return a close of `trade` at `now` (`books` are every book of the store, usable or
    not, so a screen over them is at least as permissive as one over the usable books); the scanner
    skips the strategy's `evaluate` on a base holding its trades when this is False for every one of
    them and its entry screens say no, so its entries must obey its entry screens whether or not its own
    trades are open.
    """

    may_enter: EntryScreen | None = None
    top_factors: TopScreen | None = None
    funding_may_enter: FundingScreen | None = None
    may_exit: ExitScreen | None = None


NO_SCREENS = Screens()  # a strategy that declares none: always evaluated


class Strategy(Protocol):
    """A pluggable strategy: pure, synchronous, no I/O. Returns entries and exits for one base, and
    declares once (`screens`, read when the scanner is built) which screens let the scanner skip it."""

    name: str

    def screens(self) -> Screens: ...

    def evaluate(self, view: MarketView, base: str, open_trades: list[OpenTrade]) -> list[Decision]: ...
