"""OKX book checksum in pure Python: the CRC32 input string over a book's top 25 levels as sent, and
the check of a keep_raw book against the venue's checksum without the C accelerator
(perpbot.venues.okx.parse picks between it and the C checksum)."""

from __future__ import annotations

import zlib

from perpbot.book.l2 import L2Book

CHECKSUM_DEPTH = 25


def checksum_string(book: L2Book, depth: int = CHECKSUM_DEPTH) -> str:
    """bid1px:bid1sz:ask1px:ask1sz:... over the top `depth` levels, strings as received;
    when one side runs out the rest of the longer side follows."""
    return ":".join(_checksum_fragments(book.raw_fragments(True, depth), book.raw_fragments(False, depth)))


def _checksum_fragments(bids: list[str], asks: list[str]) -> list[str]:
    """Interleave best-first bid/ask "px:sz" fragments; the longer side's rest follows."""
    n_bids = len(bids)
    n_asks = len(asks)
    if n_bids == n_asks:
        # Slice assignment interleaves at C speed; the common full-depth case.
        levels = bids + asks
        levels[0::2] = bids
        levels[1::2] = asks
        return levels
    both = n_bids if n_bids < n_asks else n_asks
    levels = [""] * (both * 2)
    levels[0::2] = bids[:both]
    levels[1::2] = asks[:both]
    if n_bids > both:
        levels += bids[both:]
    else:
        levels += asks[both:]
    return levels


def crc32_signed(text: str) -> int:
    value = zlib.crc32(text.encode())
    return value - (1 << 32) if value & 0x80000000 else value


_BID_TOP = slice(None, -CHECKSUM_DEPTH - 1, -1)  # best CHECKSUM_DEPTH bids, best first
_ASK_TOP = slice(CHECKSUM_DEPTH)
# Scratch list for the interleaved top levels (filled and joined at once: nothing awaits in between).
_CRC_PARTS = [""] * (2 * CHECKSUM_DEPTH)


def _verify_checksum_py(book: L2Book, checksum: int) -> bool:
    """_verify_checksum of a keep_raw book in pure Python (without the C accelerator)."""
    # checksum_string inlined: the book's index-aligned fragments give the top 25 per
    # side as two slices.
    bids = book.bid_frags
    asks = book.ask_frags
    if len(bids) >= CHECKSUM_DEPTH and len(asks) >= CHECKSUM_DEPTH:
        # Both sides full (the usual case): interleave into one reused list, no new list.
        levels = _CRC_PARTS
        levels[0::2] = bids[_BID_TOP]
        levels[1::2] = asks[_ASK_TOP]
    else:
        levels = _checksum_fragments(bids[_BID_TOP], asks[_ASK_TOP])
    value = zlib.crc32(":".join(levels).encode())
    return (value - 0x100000000 if value & 0x80000000 else value) == checksum
