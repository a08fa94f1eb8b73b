"""The Strategy protocol, the trades it may exit, and the read-only market view it evaluates."""

from __future__ import annotations

from collections.abc import Mapping
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


def index_by_base(instruments: Mapping[Key, Instrument]) -> dict[str, list[Instrument]]:
    """Instruments grouped by underlying asset, in a stable (venue, symbol) order."""
    by_base: dict[str, list[Instrument]] = {}
    for key in sorted(instruments):
        instrument = instruments[key]
        by_base.setdefault(instrument.base, []).append(instrument)
    return by_base


class FundingMap(VersionedDict):
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
        store = self.store
        books = store.books
        out = []
        if type(store) is BookStore:
            now = self.now
            stale = store.stale_after_s
            for instrument in self._by_base.get(base, ()):
                book = books.get((instrument.venue, instrument.symbol))
                # BookStore.is_usable, inlined (valid and fresh): this runs on every evaluation.
                if book is not None and book.valid and now - book.recv_ts <= stale:
                    out.append((instrument, book))
            return out
        for instrument in self._by_base.get(base, ()):
            book = books.get((instrument.venue, instrument.symbol))
            if book is not None and store.is_usable(book, self.now):
                out.append((instrument, book))
        return out

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


class Strategy(Protocol):
    """A pluggable strategy: pure, synchronous, no I/O. Returns entries and exits for one base."""

    name: str

    def evaluate(self, view: MarketView, base: str, open_trades: list[OpenTrade]) -> list[Decision]: ...


# What the scanner hands an entry screen: every usable book of one base, with its key.
Usable = list[tuple[Instrument, Key, L2Book]]


class EntryScreen(Protocol):
    """Optional, for speed: a strategy that also has `may_enter` lets the scanner skip its
    `evaluate` on bases with no open trade when `may_enter` is False.

    Contract: with no open trade on `base`, `may_enter(base, usable, funding)` must be True
    whenever `evaluate` could return any decision (a cheap necessary condition, exact on the
    integers/Decimals it compares: never a float)."""

    def may_enter(self, base: str, usable: Usable, funding: Mapping[Key, FundingUpdate]) -> bool: ...


class TopScreen(Protocol):
    """Optional, for speed (incremental screen): a strategy whose entries need, for some pair of
    the base's books, best_bid x sell >= best_ask x buy with `(sell, buy) = top_factors(instrument)`
    (exact integers applied to the books' scaled prices). The scanner keeps these products per
    book, refreshes only the books reported changed, and skips `evaluate` on bases where no pair
    passes and none of the open trades is the strategy's own. Contract: `evaluate` exits only
    trades whose `strategy` is its name, and with none of those it returns a decision only if
    such a pair exists among its usable books (usable books are a subset of all books, so a
    screen over every book is at least as permissive; other strategies' trades only remove
    candidates). Entries never use a book of a venue/symbol that an open trade on the base holds
    (whichever strategy's), so with trades open the screen looks at the other books only."""

    def top_factors(self, instrument: Instrument) -> tuple[int, int]: ...


class FundingScreen(Protocol):
    """Optional, for speed (incremental screen): a strategy whose entries depend first on the
    funding updates of the base's instruments. `funding_may_enter(updates)` (one entry per
    instrument of the base, None where there is no rate) must be True whenever `evaluate` could
    return any decision with none of its own trades (strategy == its name) open on the base, for
    any subset of those instruments' books being usable. The scanner re-runs it only when one of
    those updates was replaced."""

    def funding_may_enter(self, updates: list[FundingUpdate | None]) -> bool: ...



class ExitScreen(Protocol):
    """Optional, for speed (incremental screen, held bases): a strategy that also has `may_exit`
    lets the scanner skip its `evaluate` on a base that holds its trades when, for every one of
    them, `may_exit(trade, books, instruments, funding, now)` is False and its entry screens
    (TopScreen, FundingScreen) say no.

    Contract: `may_exit` must be True whenever `evaluate` could return a close of `trade` at
    `now` (`books` are every book of the store, usable or not, so a screen over them is at least
    as permissive as one over the usable books), and the strategy's entries obey its entry
    screens whether or not its own trades are open. Exact, like the other screens: never a float
    compare of prices."""

    def may_exit(self, trade: OpenTrade, books: Mapping[Key, L2Book], instruments: Mapping[Key, Instrument],
                 funding: Mapping[Key, FundingUpdate], now: float) -> bool: ...
