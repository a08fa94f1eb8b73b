"""Pure L2 order book: exact scaled-integer levels, sorted price keys, validity flag.

Prices and sizes are integers scaled by 10**9 (perpbot.core.numbers); sizes are kept in
*base-asset* units (venue units x contract size). When `keep_raw` is set (OKX books with
checksums), the level strings as received are kept too, because the venue's CRC32 is
computed over the exact strings it sent.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from decimal import Decimal

from perpbot.core.numbers import ONE, SCALE, to_scaled


_SCALED_CACHE: dict[str, int] = {}
_SCALED_GET = _SCALED_CACHE.get
_SCALED_CACHE_MAX = 1 << 17  # ~15 MB worst case; cleared wholesale when full


def _scaled_miss(text: str) -> int:
    """to_scaled for a string not in the cache; remembers it (invalid text raises, uncached)."""
    value = to_scaled(text)
    if len(_SCALED_CACHE) >= _SCALED_CACHE_MAX:
        _SCALED_CACHE.clear()
    _SCALED_CACHE[text] = value
    return value


class L2Book:
    __slots__ = (
        "venue",
        "symbol",
        "bids",
        "asks",
        "bid_keys",
        "ask_keys",
        "raw_bids",
        "raw_asks",
        "keep_raw",
        "_contract",
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
        self.raw_bids: dict[int, str] = {}  # price -> "px:sz" as received
        self.raw_asks: dict[int, str] = {}
        contract = int(contract_size.scaleb(SCALE))
        self._contract = None if contract == ONE else contract
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
        self.raw_bids.clear()
        self.raw_asks.clear()

    def invalidate(self, reason: str) -> None:
        """Mark the book untrusted; nothing downstream may read it until a fresh snapshot."""
        self.valid = False
        self.invalid_reason = reason
        self.invalidations += 1

    def apply_side(self, levels: list, is_bid: bool) -> None:
        """Apply [price, size, ...] string levels; size 0 deletes (absent levels too)."""
        book = self.bids if is_bid else self.asks
        keys = self.bid_keys if is_bid else self.ask_keys
        raw = (self.raw_bids if is_bid else self.raw_asks) if self.keep_raw else None
        contract = self._contract
        cached = _SCALED_GET
        for level in levels:
            px_text = level[0]
            sz_text = level[1]
            # Wire strings repeat (prices near the touch, round sizes): a dict hit is ~4x
            # cheaper than parsing. Misses parse exactly and are remembered.
            price = cached(px_text)
            if price is None:
                price = _scaled_miss(px_text)
            size = cached(sz_text)
            if size is None:
                size = _scaled_miss(sz_text)
            if size == 0:
                if book.pop(price, None) is not None:
                    del keys[bisect_left(keys, price)]
                    if raw is not None:
                        raw.pop(price, None)
                continue
            if contract is not None:
                size, rest = divmod(size * contract, ONE)
                if rest:
                    raise ValueError(f"size {sz_text} x contract is off the 1e-9 grid")
            if price not in book:
                insort(keys, price)
            book[price] = size
            if raw is not None:
                # One "px:sz" string per level: exactly the fragment the OKX CRC32 input
                # joins, so a checksum is one join over the top levels, no per-level work.
                raw[price] = px_text + ":" + sz_text

    def replace(self, bids: list, asks: list) -> None:
        self.clear()
        self.apply_side(bids, True)
        self.apply_side(asks, False)

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

    def top_raw(self, is_bid: bool, depth: int) -> list[tuple[str, str]]:
        """Best `depth` levels as the strings the venue sent (requires keep_raw)."""
        raw = self.raw_bids if is_bid else self.raw_asks
        keys = self.bid_keys[-depth:][::-1] if is_bid else self.ask_keys[:depth]
        return [tuple(raw[p].split(":", 1)) for p in keys]

    def raw_fragments(self, is_bid: bool, depth: int) -> list[str]:
        """Best `depth` levels as "price:size" strings as the venue sent them (requires keep_raw)."""
        if depth <= 0:  # the same (odd) slice semantics as top_raw
            return [self.raw_bids[p] for p in self.bid_keys[-depth:][::-1]] if is_bid else []
        if is_bid:
            return list(map(self.raw_bids.__getitem__, self.bid_keys[: -depth - 1 : -1]))
        return list(map(self.raw_asks.__getitem__, self.ask_keys[:depth]))

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
        if base_qty > 0:
            # Common case: the best level alone fills the size. cost / filled is then the
            # best price exactly, so float(price) / ONE is the very float the sweep gives.
            keys = self.ask_keys if is_buy else self.bid_keys
            if keys:
                price = keys[0] if is_buy else keys[-1]
                if (self.asks if is_buy else self.bids)[price] >= base_qty:
                    return float(price) / ONE
        filled, cost, _ = self.sweep(is_buy, base_qty)
        if filled < base_qty or filled == 0:
            return None
        return cost / filled / ONE
