"""Wire string -> scaled int caches shared by every L2Book (perpbot.book.l2): prices in one cache,
sizes in one cache per contract size, each filled by its cache-miss function and bounded."""

from __future__ import annotations

from perpbot.core.numbers import ONE, to_scaled

# Wire string -> scaled int caches (to_scaled only on a miss; a dict hit is ~4x cheaper than
# parsing). Invalid text raises and is never cached.
# Prices: one cache shared by every book, sized for 400 books x ~1,000 live price strings
# (it was 131,072 entries, which 400 books overflowed: cleared wholesale again and again).
# Per-book caches were measured too: slower at 400 books (memory locality), so shared it is.
# Sizes share one cache per contract size holding the *base-unit* size (contract applied,
# exactness checked once, on the miss): no per-level divmod.
_PRICE_CACHE: dict[str, int] = {}
_PRICE_CACHE_MAX = 1 << 19  # ~60 MB worst case; cleared wholesale when full
_SIZE_CACHE_MAX = 1 << 17  # per contract size
_SIZE_CACHES: dict[int | None, dict[str, int]] = {}


def set_cache_bounds(prices: int, sizes: int) -> tuple[int, int]:
    """Changes the wire-text cache bounds (prices: shared; sizes: per contract size), empties
    caches already above them and returns the previous bounds. Production keeps the defaults;
    the soak lowers them so that the caches fill during its warm-up and the RSS it then measures
    is the steady state."""
    global _PRICE_CACHE_MAX, _SIZE_CACHE_MAX
    if prices < 1 or sizes < 1:
        raise ValueError("cache bounds must be positive")
    previous = (_PRICE_CACHE_MAX, _SIZE_CACHE_MAX)
    _PRICE_CACHE_MAX = prices
    _SIZE_CACHE_MAX = sizes
    if len(_PRICE_CACHE) > prices:
        _PRICE_CACHE.clear()
    for cache in _SIZE_CACHES.values():
        if len(cache) > sizes:
            cache.clear()
    return previous


def _size_cache(contract: int | None) -> dict[str, int]:
    cache = _SIZE_CACHES.get(contract)
    if cache is None:
        cache = _SIZE_CACHES[contract] = {}
    return cache


def _price_miss(text: str) -> int:
    """to_scaled for a price not in the shared cache; remembers it."""
    value = to_scaled(text)
    if len(_PRICE_CACHE) >= _PRICE_CACHE_MAX:
        _PRICE_CACHE.clear()
    _PRICE_CACHE[text] = value
    return value


_SIZE_MISSES: dict[int | None, object] = {}


def _size_miss_for(contract: int | None):
    """The cache-miss function of one contract size's size cache (one per contract size, shared by
    its books, so the C loop gets a plain function and a book holds no cycle through a bound method)."""
    miss = _SIZE_MISSES.get(contract)
    if miss is None:
        cache = _size_cache(contract)

        def miss(text: str) -> int:
            """Base-unit scaled size of a size string not in the cache; remembers it."""
            value = to_scaled(text)
            if contract is not None and value:
                value, rest = divmod(value * contract, ONE)
                if rest:
                    raise ValueError(f"size {text} x contract is off the 1e-9 grid")
            if len(cache) >= _SIZE_CACHE_MAX:
                cache.clear()
            cache[text] = value
            return value

        _SIZE_MISSES[contract] = miss
    return miss
