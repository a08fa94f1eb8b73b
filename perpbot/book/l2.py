"""Pure L2 order book: exact scaled-integer levels, sorted price keys, validity flag.

Prices and sizes are integers scaled by 10**9 (perpbot.core.numbers); sizes are kept in
*base-asset* units (venue units x contract size). When `keep_raw` is set (OKX books with
checksums), the level strings as received are kept too, because the venue's CRC32 is
computed over the exact strings it sent.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, cast

from perpbot.book.l2_accel import _load_levels, levels_of_spans
from perpbot.book.l2_cache import _PRICE_CACHE, _price_miss, _size_cache, _size_miss_for
# Re-exported: callers and tests import these from perpbot.book.l2.
from perpbot.book.l2_cache import _SIZE_CACHES as _SIZE_CACHES
from perpbot.book.l2_cache import set_cache_bounds as set_cache_bounds
from perpbot.core.numbers import ONE, SCALE

# The C level loops (perpbot.book.l2_accel), or None: the Python loops below then run. A module
# global here, read by the book's hot path on every call; set_accelerated switches it.
_levels = _load_levels()
ACCELERATED = _levels is not None
_BUILT = _levels


def set_accelerated(enabled: bool) -> bool:
    """Turns this process's C level loops off (or back on, where built and not disabled by
    PERPBOT_PURE_PYTHON) and returns the previous setting: the bench's pure-Python rows. Books keep
    their shadows; the Python loops leave them unused until the next snapshot."""
    global _levels
    previous = _levels is not None
    _levels = _BUILT if enabled else None
    return previous


class L2Book:
    __slots__ = (
        "venue",
        "symbol",
        "bids",
        "asks",
        "bid_keys",
        "ask_keys",
        "bid_frags",
        "ask_frags",
        "keep_raw",
        "_contract",
        "_px",
        "_sz",
        "_szmiss",
        "_bid_shadow",
        "_ask_shadow",
        "_sides_raw",
        "_sides_plain",
        "valid",
        "invalid_reason",
        "seq",
        "awaiting_first_delta",
        "exchange_ts_ms",
        "recv_ts",
        "updates",
        "invalidations",
    )

    def __init__(
        self, venue: str, symbol: str, contract_size: Decimal = Decimal(1), keep_raw: bool = False
    ) -> None:
        self.venue = venue
        self.symbol = symbol
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.bid_keys: list[int] = []  # ascending; best bid is the last
        self.ask_keys: list[int] = []  # ascending; best ask is the first
        self.keep_raw = keep_raw
        # keep_raw only: "px:sz" as received, index-aligned with bid_keys / ask_keys.
        self.bid_frags: list[str] = []
        self.ask_frags: list[str] = []
        contract = int(contract_size.scaleb(SCALE))
        self._contract = None if contract == ONE else contract
        self._px = _PRICE_CACHE  # price text -> scaled price (shared)
        self._sz = _size_cache(self._contract)  # size text -> scaled base-unit size (shared)
        self._szmiss = _size_miss_for(self._contract)
        # The C loops' view of the two sides, built once (the dicts and lists are only ever changed
        # in place): (dict, keys, fragments or None, int64 shadow of the keys or None).
        self._bid_shadow: Any = _levels.Shadow() if _levels is not None else None
        self._ask_shadow: Any = _levels.Shadow() if _levels is not None else None
        self._sides_raw = ((self.bids, self.bid_keys, self.bid_frags, self._bid_shadow),
                           (self.asks, self.ask_keys, self.ask_frags, self._ask_shadow))
        self._sides_plain = ((self.bids, self.bid_keys, None, self._bid_shadow),
                             (self.asks, self.ask_keys, None, self._ask_shadow))
        self.valid = False
        self.invalid_reason: str | None = "no snapshot yet"
        self.seq: int | None = None
        self.awaiting_first_delta = False
        self.exchange_ts_ms = 0
        self.recv_ts = 0.0
        self.updates = 0
        self.invalidations = 0  # times this book was marked untrusted (reliability checks read it)

    # -- mutation -----------------------------------------------------------------
    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()
        self.bid_keys.clear()
        self.ask_keys.clear()
        self.bid_frags.clear()
        self.ask_frags.clear()
        self._sync_shadows()

    def _sync_shadows(self) -> None:
        """The C loops' int64 copies of the key lists rebuilt from them (after a bulk change)."""
        if self._bid_shadow is not None:
            self._bid_shadow.reset(self.bid_keys)
            self._ask_shadow.reset(self.ask_keys)

    def invalidate(self, reason: str) -> None:
        """Mark the book untrusted; nothing downstream may read it until a fresh snapshot."""
        self.valid = False
        self.invalid_reason = reason
        self.invalidations += 1

    def _price_miss(self, text: str) -> int:
        return _price_miss(text)

    def _size_miss(self, text: str) -> int:
        return self._szmiss(text)

    def apply_side(self, levels: list, is_bid: bool) -> None:
        """Apply [price, size, ...] string levels; size 0 deletes (absent levels too)."""
        if is_bid:
            self.apply_levels(levels, ())
        else:
            self.apply_levels((), levels)

    def apply_levels(self, bids: Sequence[Any], asks: Sequence[Any]) -> None:
        """apply_side for both sides in one call. The hot path of every book update: both
        sides' loops are written out (two calls cost ~15% of a 5-level update). A level
        raising ValueError leaves the levels before it applied (callers invalidate)."""
        if _levels is not None:
            bid_side, ask_side = self._sides_raw if self.keep_raw else self._sides_plain
            _levels.apply_levels(bids, asks, bid_side, ask_side, self._px, self._sz, _price_miss, self._szmiss,
                                 self._contract)
            return
        self.apply_levels_py(bids, asks)

    def apply_spans(self, text: str | bytes, spans: bytes) -> None:
        """apply_levels for levels given as a span table over the wire text they came from (what a C
        wire parser hands over, e.g. the OKX one: perpbot/book/_spans.h): the same book, the same
        errors, and the level strings never become Python objects unless a cache miss needs one."""
        if _levels is not None:
            bid_side, ask_side = self._sides_raw if self.keep_raw else self._sides_plain
            _levels.apply_spans(text, spans, bid_side, ask_side, self._px, self._sz, _price_miss, self._szmiss,
                                self._contract)
            return
        self.apply_levels_py(*levels_of_spans(text, spans))

    def apply_levels_py(self, bids: Sequence[Any], asks: Sequence[Any]) -> None:
        """apply_levels' pure-Python loops (what runs without the C accelerator)."""
        if self._bid_shadow is not None:
            # These loops do not keep the C loops' key copies: they stay unused until the next
            # snapshot rebuilds them (the C loops then bisect the lists themselves).
            self._bid_shadow.invalidate()
            self._ask_shadow.invalidate()
        prices = self._px
        sizes = self._sz
        if self.keep_raw:
            self._apply_raw(bids, self.bids, self.bid_keys, self.bid_frags)
            self._apply_raw(asks, self.asks, self.ask_keys, self.ask_frags)
            return
        # A subscript plus a rare KeyError beats a .get() call on every hit. The price is
        # parsed before the size, so a level bad in both reports the price.
        book = self.bids
        keys = self.bid_keys
        for level in bids:
            px_text = level[0]
            try:
                price = prices[px_text]
            except KeyError:
                price = self._price_miss(px_text)
            sz_text = level[1]
            try:
                size = sizes[sz_text]
            except KeyError:
                size = self._size_miss(sz_text)
            if size:
                if price not in book:
                    insort(keys, price)
                book[price] = size
            elif price in book:
                del book[price]
                del keys[bisect_left(keys, price)]
        book = self.asks
        keys = self.ask_keys
        for level in asks:
            px_text = level[0]
            try:
                price = prices[px_text]
            except KeyError:
                price = self._price_miss(px_text)
            sz_text = level[1]
            try:
                size = sizes[sz_text]
            except KeyError:
                size = self._size_miss(sz_text)
            if size:
                if price not in book:
                    insort(keys, price)
                book[price] = size
            elif price in book:
                del book[price]
                del keys[bisect_left(keys, price)]

    def _apply_raw(self, levels: Sequence[Any], book: dict[int, int], keys: list[int], frags: list[str]) -> None:
        """apply_levels for books keeping wire strings: `frags` stays index-aligned with `keys`,
        so the checksum's top levels are one slice, not 25 dict lookups per side."""
        prices = self._px
        sizes = self._sz
        for level in levels:
            px_text = level[0]
            try:
                price = prices[px_text]
            except KeyError:
                price = self._price_miss(px_text)
            sz_text = level[1]
            try:
                size = sizes[sz_text]
            except KeyError:
                size = self._size_miss(sz_text)
            if size:
                # One "px:sz" string per level: exactly the fragment the OKX CRC32 input joins.
                index = bisect_left(keys, price)
                if price in book:
                    frags[index] = f"{px_text}:{sz_text}"
                else:
                    keys.insert(index, price)
                    frags.insert(index, f"{px_text}:{sz_text}")
                book[price] = size
            elif price in book:
                del book[price]
                index = bisect_left(keys, price)
                del keys[index]
                del frags[index]

    def replace(self, bids: list, asks: list) -> None:
        """The book becomes exactly these levels: the state applying them one by one to an
        empty book gives (a later level of a price wins, size 0 drops it), built in bulk: each
        side's levels go into a dict, then one sort, instead of a bisect-insert per level."""
        try:
            self._replace_side(bids, self.bids, self.bid_keys, self.bid_frags)
            self._replace_side(asks, self.asks, self.ask_keys, self.ask_frags)
        except Exception:
            self.clear()  # never half a snapshot
            raise
        self._sync_shadows()

    def _replace_side(self, levels: list, book: dict[int, int], keys: list[int], frags: list[str]) -> None:
        prices = self._px
        sizes = self._sz
        fresh: dict[int, int] = {}
        raw: dict[int, str] | None = {} if self.keep_raw else None
        for level in levels:
            px_text = level[0]
            try:
                price = prices[px_text]
            except KeyError:
                price = self._price_miss(px_text)
            sz_text = level[1]
            try:
                size = sizes[sz_text]
            except KeyError:
                size = self._size_miss(sz_text)
            if size:
                fresh[price] = size
                if raw is not None:
                    raw[price] = f"{px_text}:{sz_text}"
            elif price in fresh:
                del fresh[price]
                if raw is not None:
                    del raw[price]
        book.clear()
        book.update(fresh)
        keys[:] = sorted(fresh)
        frags[:] = [raw[price] for price in keys] if raw is not None else ()

    # -- reads --------------------------------------------------------------------
    def best_bid(self) -> int | None:
        return self.bid_keys[-1] if self.bid_keys else None

    def best_ask(self) -> int | None:
        return self.ask_keys[0] if self.ask_keys else None

    def is_crossed(self) -> bool:
        if not self.bid_keys or not self.ask_keys:
            return False
        return self.bid_keys[-1] >= self.ask_keys[0]

    def top(self, is_bid: bool, depth: int) -> list[tuple[int, int]]:
        """Best `depth` levels of one side as (price, base size) scaled ints, best first."""
        if is_bid:
            keys = self.bid_keys[-depth:][::-1] if depth > 0 else []
            return [(p, self.bids[p]) for p in keys]
        return [(p, self.asks[p]) for p in self.ask_keys[:depth]]

    @property
    def raw_bids(self) -> dict[int, str]:
        """price -> "px:sz" as received (keep_raw books; a fresh dict, read-only use)."""
        return dict(zip(self.bid_keys, self.bid_frags))

    @property
    def raw_asks(self) -> dict[int, str]:
        """price -> "px:sz" as received (keep_raw books; a fresh dict, read-only use)."""
        return dict(zip(self.ask_keys, self.ask_frags))

    def top_raw(self, is_bid: bool, depth: int) -> list[tuple[str, str]]:
        """Best `depth` levels as the strings the venue sent (requires keep_raw)."""
        self._require_raw(is_bid)
        frags = self.bid_frags[-depth:][::-1] if is_bid else self.ask_frags[:depth]
        return cast(list[tuple[str, str]], [tuple(frag.split(":", 1)) for frag in frags])

    def _require_raw(self, is_bid: bool) -> None:
        if not self.keep_raw and (self.bid_keys if is_bid else self.ask_keys):
            raise KeyError(f"{self.venue} {self.symbol}: book does not keep raw levels")

    def raw_fragments(self, is_bid: bool, depth: int) -> list[str]:
        """Best `depth` levels as "price:size" strings as the venue sent them (requires keep_raw)."""
        self._require_raw(is_bid)
        if depth <= 0:  # the same (odd) slice semantics as top_raw
            return self.bid_frags[-depth:][::-1] if is_bid else []
        if is_bid:
            return self.bid_frags[: -depth - 1 : -1]
        return self.ask_frags[:depth]

    def sweep(self, is_buy: bool, base_qty: int) -> tuple[int, int, int]:
        """Walk the side a taker order would eat.

        Returns (filled base qty, cost = sum(price*size) in scaled^2 units, worst price).
        A buy eats asks from the best up; a sell eats bids from the best down.
        """
        filled = 0
        cost = 0
        worst = 0
        if is_buy:
            book = self.asks
            keys = self.ask_keys
            idx, step, end = 0, 1, len(keys)
        else:
            book = self.bids
            keys = self.bid_keys
            idx, step, end = len(keys) - 1, -1, -1
        remaining = base_qty
        while remaining > 0 and idx != end:
            price = keys[idx]
            take = book[price]
            if take > remaining:
                take = remaining
            cost += price * take
            filled += take
            remaining -= take
            worst = price
            idx += step
        return filled, cost, worst

    def vwap(self, is_buy: bool, base_qty: int) -> float | None:
        """Depth-weighted average price (float, in quote units) for a full fill, None if too thin."""
        # Common case: the best level alone fills the size. cost / filled is then the best
        # price exactly, so float(price) / ONE is the very float the sweep gives.
        if is_buy:
            keys = self.ask_keys
            if keys and base_qty > 0:
                price = keys[0]
                if self.asks[price] >= base_qty:
                    return float(price) / ONE
        else:
            keys = self.bid_keys
            if keys and base_qty > 0:
                price = keys[-1]
                if self.bids[price] >= base_qty:
                    return float(price) / ONE
        filled, cost, _ = self.sweep(is_buy, base_qty)
        if filled < base_qty or filled == 0:
            return None
        return cost / filled / ONE
