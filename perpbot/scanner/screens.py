"""The scanner's screen index: every base's incremental entry screens, kept per book, in C or in Python.

The one place that chooses between the C products (`Tops`, perpbot/scanner/_tops.c: where the accelerator is
built and a TopScreen's factors fit its exact range) and their Python twin (`PyTops`: the same products,
extremes and verdicts), and the one place that refreshes them: a book reported changed recomputes its
products in every TopScreen of its base; the FundingScreens are re-judged only when one of the base's
funding updates was replaced.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Protocol

from perpbot.book.l2 import L2Book
from perpbot.book.store import BookStore
from perpbot.core.events import FundingUpdate
from perpbot.core.instruments import Instrument
from perpbot.core.versioned import VersionedDict
from perpbot.scanner.protocol import FundingScreen, Key, Screens, TopScreen
from perpbot.scanner.tops import Tops

# Larger than any best_ask x buy factor: the buy product of a book without asks (never passes).
NO_ASK = 1 << 512


class Products(Protocol):
    """One base's products for one TopScreen: per book i, best_bid x sell (0 without bids or book) and
    best_ask x buy (none without asks or book), and the highest sell / lowest buy product over the books.
    `bind(i, book)` makes book i that book (an L2Book keeps its key lists for life) and refreshes it;
    `refresh(i)` recomputes book i's products from its lists; both return `crossing`: some book's sell
    product reaches some book's buy product, so a pair may pass the TopScreen."""

    @property
    def crossing(self) -> bool: ...

    def bind(self, i: int, book: L2Book | None, /) -> bool: ...

    def refresh(self, i: int, /) -> bool: ...

    def crossing_among(self, free: list[int], /) -> bool: ...

    def products(self, i: int, /) -> tuple[int, int | None]: ...


class PyTops:
    """The Python twin of the C `Tops`: the same products, extremes and verdicts (the extremes kept
    incrementally: a full max/min only when the book that held one moved away from it)."""

    __slots__ = ("_sell", "_buy", "_bids", "_asks", "_sells", "_buys", "_hi", "_hi_i", "_lo", "_lo_i")

    def __init__(self, factors: list[tuple[int, int]]) -> None:
        n = len(factors)
        self._sell = [sell for sell, _ in factors]
        self._buy = [buy for _, buy in factors]
        self._bids: list[list[int] | None] = [None] * n
        self._asks: list[list[int] | None] = [None] * n
        self._sells = [0] * n
        self._buys = [NO_ASK] * n
        self._hi = 0
        self._hi_i = 0
        self._lo = NO_ASK
        self._lo_i = 0

    @property
    def crossing(self) -> bool:
        return self._hi >= self._lo

    def bind(self, i: int, book: L2Book | None, /) -> bool:
        if book is None:
            self._bids[i] = self._asks[i] = None
        else:
            self._bids[i] = book.bid_keys
            self._asks[i] = book.ask_keys
        return self.refresh(i)

    def refresh(self, i: int, /) -> bool:
        bids, asks = self._bids[i], self._asks[i]
        sell = bids[-1] * self._sell[i] if bids else 0
        buy = asks[0] * self._buy[i] if asks else NO_ASK
        sells, buys = self._sells, self._buys
        sells[i] = sell
        buys[i] = buy
        if sell >= self._hi:
            self._hi, self._hi_i = sell, i
        elif i == self._hi_i:
            self._hi = max(sells)
            self._hi_i = sells.index(self._hi)
        if buy <= self._lo:
            self._lo, self._lo_i = buy, i
        elif i == self._lo_i:
            self._lo = min(buys)
            self._lo_i = buys.index(self._lo)
        return self._hi >= self._lo

    def crossing_among(self, free: list[int], /) -> bool:
        hi, lo = -1, NO_ASK
        sells, buys = self._sells, self._buys
        for i in free:
            if sells[i] > hi:
                hi = sells[i]
            if buys[i] < lo:
                lo = buys[i]
        return hi >= lo  # never with no free book (hi < 0)

    def products(self, i: int, /) -> tuple[int, int | None]:
        buy = self._buys[i]
        return self._sells[i], (None if buy == NO_ASK else buy)


# The C products when the accelerator is built and not disabled (PERPBOT_PURE_PYTHON=1); tests set None.
CTops: Callable[[list[tuple[int, int]]], Products] | None = Tops


def make_products(factors: list[tuple[int, int]]) -> Products:
    """The Python/C choice: C where it is built and the factors fit its exact range, else the Python twin."""
    if CTops is not None:
        try:
            return CTops(factors)
        except (TypeError, ValueError):
            pass  # factors outside C's exact range (or a base without books): this base keeps Python
    return PyTops(factors)


class BaseScreen:
    """One base's incremental entry screens: per TopScreen its products, and the funding updates the
    FundingScreens last judged, with their verdict.

    Exact and conservative: a book's products change only when the book does, and every book change
    reaches `Scanner.scan` in `changed` (the store's dirty set); books that are not usable stay in, which
    only ever lets more through (a TopScreen or FundingScreen over every book is at least as permissive
    as over the usable ones). Funding is read on every check, since funding updates do not wake the
    scanner, and re-judged only when an update object was replaced.
    """

    __slots__ = ("base", "keys", "tops", "refresh", "seen", "verdict", "version")

    def __init__(self, base: str, keys: list[Key], tops: list[Products]) -> None:
        self.base = base
        self.keys = keys
        self.tops = tops  # per TopScreen, in the strategies' order
        # refresh(i) -> bool: book i changed; some TopScreen may pass. With one TopScreen (ours) its own
        # refresh, a single C call where it is in C: the scanner's hot path.
        self.refresh: Callable[[int], bool] = tops[0].refresh if len(tops) == 1 else self._refresh_all
        self.seen: list[FundingUpdate | None] | None = None
        self.verdict = False
        self.version = -1  # the FundingMap's version when `verdict` was judged (-1: never)

    def _refresh_all(self, i: int) -> bool:
        crossing = False
        for products in self.tops:
            if products.refresh(i):
                crossing = True
        return crossing

    def bind(self, i: int, book: L2Book | None) -> None:
        for products in self.tops:
            products.bind(i, book)


class ScreenIndex:
    """Every base's BaseScreen (built at its base's first scan, or by `prime`), found by book key, and the
    verdicts the scanner asks of them.

    Built only when every strategy declares a TopScreen or a FundingScreen (`of`): then each book's
    products are kept between scans and refreshed only for the keys reported changed, so a quiet update
    costs one book read and a few integer compares. A book object added or replaced in the store (its
    `generation` moves) is read again by every screen (`rebind`), since the products hold its lists.
    """

    def __init__(self, store: BookStore, keys_by_base: Mapping[str, list[tuple[Instrument, Key]]],
                 top_screens: list[TopScreen], top_of: list[int | None], funding_screens: list[FundingScreen],
                 funding: Mapping[Key, FundingUpdate]) -> None:
        self.store = store
        self.books = store.books  # the store's dict itself (BookStore never replaces it)
        self.keys_by_base = keys_by_base
        self.top_screens = top_screens
        self.top_of = top_of  # per strategy: its index among the TopScreens, or None (a FundingScreen)
        self.funding_screens = funding_screens  # of the strategies without a TopScreen
        self.funding = funding
        # A FundingMap counts its writes: no write since a base was judged, the same verdict.
        self.versioned = funding if isinstance(funding, VersionedDict) else None
        self.in_c = CTops is not None  # products in C where the factors allow (make_products)
        self.slots: dict[Key, tuple[BaseScreen, int]] = {}
        self.bases: dict[str, BaseScreen] = {}
        self.generation = store.generation

    @classmethod
    def of(cls, declared: Sequence[Screens], store: BookStore,
           keys_by_base: Mapping[str, list[tuple[Instrument, Key]]],
           funding: Mapping[Key, FundingUpdate]) -> ScreenIndex | None:
        """The index over the strategies' declared screens (in the strategies' order), or None unless
        every strategy declares a TopScreen or a FundingScreen (a TopScreen is its entry screen then)."""
        if not declared or any(s.top_factors is None and s.funding_may_enter is None for s in declared):
            return None
        tops: list[TopScreen] = []
        top_of: list[int | None] = []
        funds: list[FundingScreen] = []
        for screens in declared:
            if screens.top_factors is not None:
                top_of.append(len(tops))
                tops.append(screens.top_factors)
            else:
                top_of.append(None)
                if screens.funding_may_enter is not None:
                    funds.append(screens.funding_may_enter)
        return cls(store, keys_by_base, tops, top_of, funds, funding)

    def screen(self, base: str) -> BaseScreen:
        screen = self.bases.get(base)
        return screen if screen is not None else self._build(base)

    def prime(self) -> None:
        """Build every base's screen now (otherwise built at its first scan)."""
        for base in self.keys_by_base:
            self.screen(base)

    def _build(self, base: str) -> BaseScreen:
        """The screen of `base`, from every book of it as the store holds them now."""
        keyed = self.keys_by_base.get(base, [])
        tops = [make_products([_factors(top, instrument) for instrument, _ in keyed]) for top in self.top_screens]
        screen = BaseScreen(base, [key for _, key in keyed], tops)
        for i, key in enumerate(screen.keys):
            self.slots[key] = (screen, i)
            screen.bind(i, self.books.get(key))
        self.bases[base] = screen
        return screen

    def refresh(self, changed: Collection[Key]) -> None:
        """The changed books' products in every screen built (a screen built later reads its books then)."""
        if self.store.generation != self.generation:
            self.rebind()
        slots = self.slots
        for key in changed:
            slot = slots.get(key)
            if slot is not None:
                slot[0].refresh(slot[1])

    def rebind(self) -> None:
        """A book object was added or replaced in the store: every screen reads the books as they are now."""
        books = self.books
        for screen in self.bases.values():
            for i, key in enumerate(screen.keys):
                screen.bind(i, books.get(key))
        self.generation = self.store.generation

    def may_enter(self, screen: BaseScreen, free: list[int] | None = None) -> bool:
        """False only when no strategy could enter on the base (then `evaluate` is skipped); with `free`
        (the indices of the books no open trade of the base holds) over those only."""
        for products in screen.tops:
            if products.crossing if free is None else products.crossing_among(free):
                return True
        return self.funding_may_enter(screen)

    def strategy_may_enter(self, n: int, screen: BaseScreen, free: list[int] | None) -> bool:
        """Strategy `n`'s own verdict: its TopScreen's over the `free` books when given (its entries never
        use a held venue/symbol), or the FundingScreens'."""
        j = self.top_of[n]
        if j is None:
            return self.funding_may_enter(screen)
        products = screen.tops[j]
        return products.crossing if free is None else products.crossing_among(free)

    def funding_may_enter(self, screen: BaseScreen) -> bool:
        """The FundingScreens' verdict, re-judged only when one of the base's updates was replaced."""
        funds = self.funding_screens
        if not funds:
            return False
        versioned = self.versioned
        if versioned is not None:
            if versioned.version == screen.version:
                return screen.verdict  # no write since the last judgement
            screen.version = versioned.version
        updates = list(map(self.funding.get, screen.keys))
        if updates != screen.seen:
            screen.seen = updates
            try:
                screen.verdict = any(judge(updates) for judge in funds)
            except Exception:
                screen.verdict = True  # a failing screen: the full evaluation logs the strategy's error
        return screen.verdict


def _factors(top_factors: TopScreen, instrument: Instrument) -> tuple[int, int]:
    """A TopScreen's factors for one book; (0, 0) lets every update through when they cannot be computed
    (then `evaluate` runs, and logs the strategy's error if it has one)."""
    try:
        return top_factors(instrument)
    except Exception:
        return 0, 0
