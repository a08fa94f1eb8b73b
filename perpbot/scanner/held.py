"""The open trades as the scanner sees them: by base, the books they leave free, and who may exit them now."""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set

from perpbot.book.l2 import L2Book
from perpbot.core.events import FundingUpdate
from perpbot.core.instruments import Instrument
from perpbot.scanner.protocol import ExitScreen, Key, OpenTrade, held_keys

_NOBODY: frozenset[str] = frozenset()  # HeldTrades.exiting: no strategy may exit a trade here


class HeldTrades:
    """The open trades by base, indexed once per tuple of trades; per held base the indices of its books
    no trade holds (entries never reuse a held venue/symbol); and which strategies' ExitScreens let one of
    a base's trades be closed now."""

    def __init__(self, exit_screens: Mapping[str, ExitScreen | None], books: Mapping[Key, L2Book],
                 instruments: Mapping[Key, Instrument], funding: Mapping[Key, FundingUpdate]) -> None:
        # Per strategy name: its ExitScreen, or None (its held bases are always evaluated).
        self.exit_screens = dict(exit_screens)
        self.books = books
        self.instruments = instruments
        self.funding = funding
        self.seen: tuple[OpenTrade, ...] | None = None  # the open-trades tuple `index` was built from
        self.index: dict[str, list[OpenTrade]] = {}
        self._free: dict[str, list[int]] = {}  # per held base: its books no trade holds (free_of)

    def by_base(self, open_trades: Sequence[OpenTrade]) -> dict[str, list[OpenTrade]]:
        """The open trades by base. A tuple (what the bot hands over: a new one whenever the trades
        change) is indexed once and the index kept while the same tuple comes back; any other
        sequence may be mutated between scans, so it is indexed every time."""
        if open_trades is self.seen:
            return self.index
        index: dict[str, list[OpenTrade]] = {}
        for trade in open_trades:
            trades = index.get(trade.base)
            if trades is None:
                index[trade.base] = [trade]
            else:
                trades.append(trade)
        # A new index: the free books computed for the previous one no longer hold.
        self._free = {}
        if isinstance(open_trades, tuple):  # immutable: the same object is the same trades
            self.seen, self.index = open_trades, index
        else:
            self.seen, self.index = None, {}
        return index

    def free_of(self, base: str, keys: Sequence[Key], trades: Sequence[OpenTrade]) -> list[int]:
        """The indices of the `keys` (a base's books) that none of `trades` (that base's) holds; kept
        with the index of the open trades it was computed for."""
        free = self._free.get(base)
        if free is None:
            busy = held_keys(trades)
            free = [i for i, key in enumerate(keys) if key not in busy]
            if self.seen is not None:
                self._free[base] = free
        return free

    def exiting(self, trades: Sequence[OpenTrade], now: float) -> Set[str]:
        """The names of the strategies that may exit one of `trades` (a held base's) now: every
        owner without an ExitScreen, or whose may_exit says yes (or fails). Trades of a strategy
        the scanner does not run are nobody's to exit."""
        screens = self.exit_screens
        out: Set[str] = _NOBODY
        for trade in trades:
            name = trade.strategy
            if name in out or name not in screens:
                continue
            screen = screens[name]
            try:
                quiet = screen is not None and not screen(trade, self.books, self.instruments, self.funding, now)
            except Exception:
                quiet = False  # a failing screen: the full evaluation logs the strategy's error
            if not quiet:
                out = {name} if out is _NOBODY else out | {name}
        return out
