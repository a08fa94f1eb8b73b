"""The L2 book's optional C level loops (perpbot/book/_levels.c) as loaded for this process, and the
pure-Python reading of a span table (perpbot/book/_spans.h) that L2Book.apply_spans falls back on.

The switch itself (perpbot.book.l2._levels, set_accelerated) stays in perpbot.book.l2: the book's
hot path reads it as a module global there.
"""

from __future__ import annotations

from typing import Any

from perpbot.core.accelerators import load_accelerator


# The per-level loops in C (perpbot/book/_levels.c, built at install when a compiler is there):
# the same objects, the same order of operations, the same errors as the Python loops of L2Book,
# which run when it is absent or PERPBOT_PURE_PYTHON=1 (tests/unit/book/test_accel.py compares them).
def _load_levels() -> Any:
    return load_accelerator("perpbot.book._levels")


def levels_of_spans(text: str | bytes, spans: bytes) -> tuple[list[list[str]], list[list[str]]]:
    """A span table (perpbot/book/_spans.h: native uint32 n_bids, n_asks, then px offset, px length,
    sz offset, sz length per level, bids first) over `text` as the [px, sz] string levels it stands
    for: what L2Book.apply_spans applies without the C loops. ValueError on a table that does not fit."""
    if type(text) is not bytes and not (type(text) is str and text.isascii()):
        raise TypeError("spans index a bytes object or an ASCII str")
    if type(spans) is not bytes:
        raise TypeError("a span table is bytes (see _spans.h)")
    if len(spans) < 8 or len(spans) % 4:
        raise ValueError("span table length does not match its counts")
    table = memoryview(spans).cast("I")
    n_bids, n_asks = table[0], table[1]
    if len(table) != 2 + 4 * (n_bids + n_asks):
        raise ValueError("span table length does not match its counts")
    size = len(text)
    levels: list[list[str]] = []
    for at in range(2, len(table), 4):
        px, px_len, sz, sz_len = table[at : at + 4]
        if px + px_len > size or sz + sz_len > size:
            raise ValueError("a span lies outside the text")
        if isinstance(text, bytes):
            levels.append([text[px : px + px_len].decode(), text[sz : sz + sz_len].decode()])
        else:
            levels.append([text[px : px + px_len], text[sz : sz + sz_len]])
    return levels[:n_bids], levels[n_bids:]
