"""Fuzzing support: recorded venue frames, hypothesis profiles, and mutators for frames and streams.

Profiles (select with HYPOTHESIS_PROFILE, default "ci"):
  ci    every fuzz test together feeds ~10^4 inputs to the parsers, well under 60 s;
  long  100x the parser examples (10x for the control API): >= 10^6 frame inputs (`HYPOTHESIS_PROFILE=long python -m pytest tests/fuzz`).
The count is per test: `examples(n)` returns n in ci and 100*n in long mode.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from perpbot.book.l2 import L2Book
from perpbot.book.sync import apply_update
from perpbot.core.events import BookUpdate, ParseError
from perpbot.settings import FeedSettings
from perpbot.venues.registry import feed_adapter

FIXTURES = (Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures").resolve()
VENUES = ("okx", "binance", "bybit", "hyperliquid")

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
# Frames handed to a venue parser in this process, counted so a run can report how many inputs it fed
# (tests/fuzz/conftest.py prints the total and writes it to $FUZZ_REPORT when set).
# "frames": generated or mutated frames fed one at a time; "streams"/"stream_frames": whole recorded
# streams replayed with one fault each, and the frames those replays fed; "fast_frames": frames a venue
# fast path (okx.apply_books_frame) took instead of parse + apply_update.
INPUTS = {"frames": 0, "streams": 0, "stream_frames": 0, "fast_frames": 0}


def fuzz_settings(n: int, long_factor: int = 100) -> settings:
    """Settings for one fuzz test: n examples in ci, long_factor*n in long mode; no deadline (CI jitter)."""
    return settings(
        max_examples=n * (long_factor if PROFILE == "long" else 1),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
        database=None,  # reproducible from the seed printed on failure; nothing written to the repo
    )


# -- recorded frames -------------------------------------------------------------------
def _messages(path: Path) -> list[Any]:
    data = json.loads(path.read_text())
    if isinstance(data, dict):
        return [data]
    out = []
    for item in data:
        if isinstance(item, dict) and "dir" in item and "recv_ts" in item:
            if item["dir"] in ("recv", "rest") and "msg" in item:
                out.append(item["msg"])
        else:
            out.append(item)
    return out


def recorded_frames(venue: str) -> list[bytes]:
    """Every recorded message of a venue (WS frames and REST bodies) as JSON bytes."""
    frames = []
    for path in sorted((FIXTURES / venue).glob("*.json")):
        for msg in _messages(path):
            if isinstance(msg, (dict, list)):
                frames.append(orjson.dumps(msg))
    assert frames, f"no recorded frames for {venue} under {FIXTURES}"
    return frames


# -- the path under test ---------------------------------------------------------------
class BySymbol:
    """A symbol-keyed dict of books seen as BookStore.books ((venue, symbol) keys) by the fast paths."""

    def __init__(self, books: dict[str, L2Book], venue: str) -> None:
        self.books = books
        self.venue = venue

    def get(self, key: tuple[str, str]) -> L2Book | None:
        return self.books.get(key[1]) if key[0] == self.venue else None


def new_book(venue: str, symbol: str) -> L2Book:
    return L2Book(venue, symbol, keep_raw=feed_adapter(venue, FeedSettings()).keep_raw)


def feed_frame(adapter: Any, books: dict[str, L2Book], frame: bytes) -> list[str]:
    """parse -> apply_update for one frame, like the supervisor; returns invalidation reasons.

    A ParseError propagates (the caller asserts that it is the only thing that can).
    Books are created on first sight of a symbol (a fuzzed symbol gets a fresh book).
    """
    reasons = []
    INPUTS["frames"] += 1
    fast = getattr(adapter, "apply_books_frame", None)
    if fast is not None:  # the supervisor's order: the venue fast path first, parse only if it declines
        done = fast(frame, 1.0, BySymbol(books, adapter.venue))
        if done is not None:
            INPUTS["fast_frames"] += 1
            return [] if done[2] is None else [done[2]]
    for event in adapter.parse(frame, 1.0):
        if type(event) is BookUpdate:
            book = books.get(event.symbol)
            if book is None:
                book = books[event.symbol] = L2Book(adapter.venue, event.symbol, keep_raw=adapter.keep_raw)
            reason = apply_update(book, event, adapter.rules)
            if reason is not None:
                reasons.append(reason)
    return reasons


def assert_book_sane(book: L2Book) -> None:
    """What any VALID book must satisfy whatever frames produced it."""
    if not book.valid:
        return
    assert book.invalid_reason is None
    assert book.seq is not None
    assert sorted(book.bids) == book.bid_keys and sorted(book.asks) == book.ask_keys
    assert all(p >= 0 and s > 0 for p, s in book.bids.items()), "valid book with a non-positive level"
    assert all(p >= 0 and s > 0 for p, s in book.asks.items()), "valid book with a non-positive level"
    if book.bid_keys and book.ask_keys:
        assert book.bid_keys[-1] < book.ask_keys[0], "valid book is crossed"


def fingerprint(book: L2Book) -> tuple:
    return (tuple(book.bids.items()), tuple(book.asks.items()))


def top_fingerprint(book: L2Book, depth: int = 25) -> tuple:
    top = (tuple(book.top(True, depth)), tuple(book.top(False, depth)))
    if not book.keep_raw:
        return top
    return top + (tuple(book.raw_fragments(True, depth)), tuple(book.raw_fragments(False, depth)))


def dumps(value: Any) -> bytes:
    """JSON bytes; the stdlib encoder, because orjson refuses integers beyond 64 bits."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


# -- mutators ----------------------------------------------------------------------------
_WEIRD_NUMBERS = [
    "-1", "+1", "-0", "0", "00", "", " ", "1e5", "1E-3", "NaN", "nan", "Infinity", "-Infinity", "inf",
    "0x10", "1_000", "\u0661\u0662", "\u00b2", "1.2.3", ".", "5.", ".5", "1,5", "0.0000000001", "1" * 400,
    "9" * 5000, "1.0000000000000000000001", "\x00", "\ud7ff", "𝟙",
]
_WEIRD_INTS = [0, -1, 1, 2**31, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30, -(10**30)]


def json_values() -> st.SearchStrategy[Any]:
    """Any JSON value, including the awkward ones (huge ints, nested containers, odd strings)."""
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(), st.sampled_from(_WEIRD_INTS),
        st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20), st.sampled_from(_WEIRD_NUMBERS),
    )
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.append(prefix + (key,))
            out.extend(_paths(value, prefix + (key,)))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            out.append(prefix + (i,))
            out.extend(_paths(value, prefix + (i,)))
    return out


def _parent(obj: Any, path: tuple) -> Any:
    for key in path[:-1]:
        obj = obj[key]
    return obj


def mutate_number(draw: Callable, value: Any) -> Any:
    """A plausible-looking wrong number: sign, digits, precision, type or encoding changed."""
    if isinstance(value, bool):
        return draw(st.sampled_from([0, 1, "true", None]))
    if isinstance(value, int):
        return draw(st.one_of(
            st.sampled_from([value + 1, value - 1, -value, str(value), float(value), True, None]),
            st.sampled_from(_WEIRD_INTS), st.integers()))
    if isinstance(value, str):
        choices = [
            "-" + value, "+" + value, value + "0", value[:-1], value + "1", "0" + value, value.replace(".", ","),
            value.replace(".", "", 1), " " + value, value + " ", value * 2, "0",
        ]
        digits = [i for i, ch in enumerate(value) if ch.isdigit()]
        if digits:
            i = draw(st.sampled_from(digits))
            choices.append(value[:i] + str((int(value[i]) + draw(st.integers(1, 9))) % 10) + value[i + 1:])
        return draw(st.one_of(st.sampled_from(choices), st.sampled_from(_WEIRD_NUMBERS)))
    return draw(json_values())


@st.composite
def mutated_structure(draw: Callable, message: Any) -> bytes:
    """One structural mutation of a decoded message: delete, retype or renumber one field/element."""
    msg = copy.deepcopy(message)
    paths = _paths(msg)
    if not paths:
        return dumps(draw(json_values()))
    path = draw(st.sampled_from(paths))
    parent = _parent(msg, path)
    key = path[-1]
    action = draw(st.sampled_from(["delete", "retype", "number", "number", "number"]))
    if action == "delete":
        del parent[key]
    elif action == "retype":
        parent[key] = draw(json_values())
    else:
        parent[key] = mutate_number(draw, parent[key])
    return dumps(msg)


@st.composite
def mutated_bytes(draw: Callable, frame: bytes) -> bytes:
    """One byte-level mutation: bit flip, truncation, deletion, insertion or duplication."""
    if not frame:
        return draw(st.binary(max_size=64))
    i = draw(st.integers(0, len(frame) - 1))
    action = draw(st.sampled_from(["flip", "truncate", "delete", "insert", "duplicate"]))
    if action == "flip":
        bit = 1 << draw(st.integers(0, 7))
        return frame[:i] + bytes([frame[i] ^ bit]) + frame[i + 1:]
    if action == "truncate":
        return frame[:i]
    j = draw(st.integers(i, min(len(frame), i + 32)))
    if action == "delete":
        return frame[:i] + frame[j:]
    if action == "insert":
        return frame[:i] + draw(st.binary(min_size=1, max_size=16)) + frame[i:]
    return frame[:j] + frame[i:j] + frame[j:]


@st.composite
def mutated_frame(draw: Callable, frames: list[bytes]) -> bytes:
    """A recorded frame with one byte-level or structural mutation (or, rarely, none)."""
    frame = draw(st.sampled_from(frames))
    kind = draw(st.sampled_from(["bytes", "structure", "structure", "none"]))
    if kind == "bytes":
        return draw(mutated_bytes(frame))
    if kind == "structure":
        return draw(mutated_structure(orjson.loads(frame)))
    return frame


def parse_only_raises_parse_error(adapter: Any, books: dict[str, L2Book], frame: bytes | str) -> list[str]:
    try:
        return feed_frame(adapter, books, frame)
    except ParseError:
        return []
