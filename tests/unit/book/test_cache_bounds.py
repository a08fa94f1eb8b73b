"""The books' wire-text caches stay within their bounds (what keeps a weeks-long run's RSS flat)."""

from __future__ import annotations

import pytest

from perpbot.book import l2
from perpbot.book.l2 import L2Book, set_cache_bounds


def test_price_and_size_caches_never_exceed_their_bounds_and_the_book_stays_exact():
    previous = set_cache_bounds(prices=50, sizes=40)
    try:
        book = L2Book("okx", "X-USDT-SWAP")
        for i in range(1, 400):
            book.apply_side([[f"{100 + i / 100:.2f}", f"{i}.5"]], True)
            assert len(l2._PRICE_CACHE) <= 50
            assert all(len(cache) <= 40 for cache in l2._SIZE_CACHES.values())
        assert len(book.bids) == 399  # clearing a cache never loses a level or changes a value
        assert book.bids[book.best_bid()] == 399 * 10**9 + 5 * 10**8
        assert book.best_bid() == 10399 * 10**7
    finally:
        restored = set_cache_bounds(*previous)
    assert restored == (50, 40)


def test_cache_bounds_must_be_positive():
    with pytest.raises(ValueError):
        set_cache_bounds(prices=0, sizes=10)
