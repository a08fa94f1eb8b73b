"""The C accelerators against the pure-Python code they replace: the book's level loops
(perpbot/book/_levels.c) leave, for any stream of levels, good or corrupt, given as lists or as a span
table, identical books (dicts, sorted keys, raw fragments) and raise the same exception with the same
message; the OKX checksum (perpbot/venues/okx/_books.c) is the same integer."""

from __future__ import annotations

import os
import struct
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perpbot.book import l2
from perpbot.book.l2 import L2Book
from perpbot.core.numbers import to_scaled
from perpbot.venues.okx import parse as okx

# With PERPBOT_PURE_PYTHON=1 there is no C to compare: the book tests run the Python loops alone.
pytestmark = pytest.mark.skipif(os.environ.get("PERPBOT_PURE_PYTHON") == "1", reason="C accelerators disabled")
_levels = l2._levels  # the book's own C module (None only where the guard above skips)
_books = okx._books

NUMBERISH = st.text(alphabet="0123456789.-+e_ \u0661", max_size=24)
DECIMALS = st.builds(
    lambda whole, frac, zeros: f"{whole}.{frac}{'0' * zeros}" if frac is not None else str(whole),
    st.integers(min_value=0, max_value=10**12), st.one_of(st.none(), st.text(alphabet="0123456789", max_size=12)),
    st.integers(min_value=0, max_value=12),
)


@settings(max_examples=2000, deadline=None)
@given(st.one_of(NUMBERISH, DECIMALS, st.integers(min_value=0, max_value=10**25).map(str)))
def test_the_c_number_parser_agrees_with_to_scaled_or_defers_to_it(text):
    parsed = _levels.scaled(text)
    try:
        expected = to_scaled(text)
    except ValueError:
        assert parsed is None  # C never accepts what to_scaled refuses; Python raises the error
        return
    assert parsed is None or parsed == expected
    if parsed is None:  # C defers only on values beyond 62 bits
        assert expected >= 1 << 62


def test_the_accelerator_is_built_and_in_use():
    # The test install (scripts/test.sh) has a C compiler: a failed build must fail here, not
    # silently leave the suite testing only the pure-Python loops.
    assert l2.ACCELERATED and okx.ACCELERATED and okx._crc is not None and okx._peek is not None

GOOD_PRICE = st.one_of(
    st.integers(min_value=1, max_value=300).map(lambda t: f"{t / 10:.1f}"),
    st.sampled_from(["0.0000000010", "12.3400000000", "9223372036.854775807", "99999999999", "007.50", ".5", "5."]),
)
GOOD_SIZE = st.one_of(st.just("0"), st.integers(min_value=1, max_value=5_000).map(lambda n: f"{n / 1000:.3f}"))
# Text the wire could carry after corruption: signs, exponents, too many places, non-ASCII digits.
BAD_TEXT = st.sampled_from(["-1", "1e5", "abc", "", "1.0000000001", "\u0661", "0x10", " 5", "1_0"])
ODD_ITEM = st.one_of(st.integers(), st.none(), st.lists(st.just("1"), max_size=1))
TEXT = st.one_of(GOOD_PRICE, GOOD_PRICE, GOOD_PRICE, BAD_TEXT, ODD_ITEM)
SIZE_TEXT = st.one_of(GOOD_SIZE, GOOD_SIZE, GOOD_SIZE, BAD_TEXT, ODD_ITEM)
LEVEL = st.one_of(
    st.tuples(GOOD_PRICE, GOOD_SIZE).map(list),
    st.tuples(GOOD_PRICE, GOOD_SIZE).map(list),
    st.tuples(TEXT, SIZE_TEXT).map(list),
    st.tuples(GOOD_PRICE, GOOD_SIZE),  # a tuple level
    st.tuples(GOOD_PRICE, GOOD_SIZE, st.just("0"), st.just("4")).map(list),  # OKX's 4-field levels
    st.lists(GOOD_PRICE, max_size=1),  # too short
)
SIDE = st.lists(LEVEL, max_size=10)
STREAM = st.lists(st.tuples(SIDE, SIDE), min_size=1, max_size=20)


def _state(book: L2Book) -> tuple:
    return dict(book.bids), list(book.bid_keys), list(book.bid_frags), dict(book.asks), list(book.ask_keys), list(book.ask_frags)


def _apply(book: L2Book, bids, asks, accelerated: bool):
    try:
        if accelerated:
            book.apply_levels(bids, asks)
        else:
            book.apply_levels_py(bids, asks)
    except Exception as exc:  # noqa: BLE001 - the exception itself is compared
        return type(exc), str(exc)
    return None


@settings(max_examples=400, deadline=None)
@given(STREAM, st.booleans(), st.sampled_from(["1", "0.01", "10"]))
def test_c_and_python_loops_leave_identical_books_and_errors(stream, keep_raw, contract):
    fast = L2Book("t", "X", Decimal(contract), keep_raw=keep_raw)
    slow = L2Book("t", "X", Decimal(contract), keep_raw=keep_raw)
    for bids, asks in stream:
        assert _apply(fast, bids, asks, True) == _apply(slow, bids, asks, False)
        assert _state(fast) == _state(slow)
    assert fast.bid_keys == sorted(fast.bids) and fast.ask_keys == sorted(fast.asks)
    _assert_shadows_follow_the_keys(fast)


def _assert_shadows_follow_the_keys(book: L2Book) -> None:
    for shadow, keys in ((book._bid_shadow, book.bid_keys), (book._ask_shadow, book.ask_keys)):
        if shadow.usable:
            assert shadow.tolist() == keys


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["c", "py", "replace", "clear"]), SIDE, SIDE), min_size=1, max_size=25),
       st.booleans())
def test_shadows_stay_in_step_through_any_mix_of_c_python_and_bulk_changes(steps, keep_raw):
    mixed = L2Book("t", "X", keep_raw=keep_raw)
    reference = L2Book("t", "X", keep_raw=keep_raw)
    for how, bids, asks in steps:
        if how == "replace":
            outcome = []
            for book in (mixed, reference):
                try:
                    book.replace(bids, asks)
                    outcome.append(None)
                except Exception as exc:  # noqa: BLE001 - compared
                    outcome.append((type(exc), str(exc)))
            assert outcome[0] == outcome[1]
        elif how == "clear":
            mixed.clear()
            reference.clear()
        else:
            assert _apply(mixed, bids, asks, how == "c") == _apply(reference, bids, asks, False)
        assert _state(mixed) == _state(reference)
        _assert_shadows_follow_the_keys(mixed)
    # After a snapshot the shadows are in use again (unless a key is beyond 64 bits).
    mixed.replace([["1.5", "1"]], [["2.5", "1"]])
    assert mixed._bid_shadow.usable and mixed._bid_shadow.tolist() == mixed.bid_keys


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(GOOD_PRICE, GOOD_SIZE).map(list), max_size=40),
       st.lists(st.tuples(GOOD_PRICE, GOOD_SIZE).map(list), max_size=40))
def test_c_checksum_equals_the_python_checksum_string_crc(bids, asks):
    book = L2Book("okx", "X", keep_raw=True)
    book.apply_levels_py(bids, asks)
    expected = okx.crc32_signed(okx.checksum_string(book))
    assert _books.checksum(book.bid_frags, book.ask_frags, okx.CHECKSUM_DEPTH) == expected
    assert okx._verify_checksum(book, expected) is okx._verify_checksum_py(book, expected) is True
    assert okx._verify_checksum(book, expected + 1) is okx._verify_checksum_py(book, expected + 1) is False


def test_c_checksum_of_a_long_side_grows_past_its_stack_buffer():
    # 25 levels of 200-character fragments each side: ~10 KB, five times the C stack buffer.
    book = L2Book("okx", "X", keep_raw=True)
    bids = [[f"{100 + i}." + "1" * 8, "1" + "0" * 180] for i in range(30)]
    asks = [[f"{200 + i}." + "1" * 8, "2" + "0" * 180] for i in range(30)]
    book.apply_levels_py(bids, asks)
    assert _books.checksum(book.bid_frags, book.ask_frags, 25) == okx.crc32_signed(okx.checksum_string(book))


def test_the_c_loop_refuses_foreign_containers_before_touching_the_book():
    book = L2Book("t", "X")
    with pytest.raises(TypeError, match="dict \\+ list"):
        _levels.apply_levels([["1", "1"]], [], ({}, (), None, None), ({}, [], None, None), {}, {}, l2._price_miss,
                               book._szmiss, None)


def test_a_book_deep_copies_with_its_shadows():
    import copy
    import pickle

    book = L2Book("okx", "X", keep_raw=True)
    book.replace([["1.5", "1"], ["1.4", "2"]], [["1.6", "1"]])
    book.apply_levels([["1.45", "3"]], [["1.7", "1"]])
    shadow = pickle.loads(pickle.dumps(book._bid_shadow))
    assert shadow.usable and shadow.tolist() == book.bid_keys
    for twin in (copy.deepcopy(book),):
        assert _state(twin) == _state(book)
        assert twin._bid_shadow.tolist() == twin.bid_keys and twin._bid_shadow.usable
        assert twin._sides_raw[0][0] is twin.bids and twin._sides_raw[0][3] is twin._bid_shadow
        twin.apply_levels([["1.3", "1"]], [])  # the copy's own objects change, not the original's
        assert twin.bid_keys[0] < book.bid_keys[0] and twin._bid_shadow.tolist() == twin.bid_keys
    book.apply_levels_py([], [])  # an unused shadow copies as unused
    assert not copy.deepcopy(book)._bid_shadow.usable


# ------------------------------------------------------------------ levels as a span table
SPAN_TEXT = st.one_of(GOOD_PRICE, GOOD_PRICE, GOOD_SIZE, BAD_TEXT)
SPAN_LEVEL = st.tuples(SPAN_TEXT, SPAN_TEXT).map(list)
SPAN_SIDE = st.lists(SPAN_LEVEL, max_size=10)


def _span_frame(bids: list, asks: list, as_bytes: bool) -> tuple[str | bytes, bytes]:
    """A wire text holding the levels' strings and the span table over it (perpbot/book/_spans.h)."""
    text = b"{"
    spans = []
    for px, sz in [*bids, *asks]:
        px_raw, sz_raw = px.encode(), sz.encode()
        px_at = len(text) + 2
        text += b'["' + px_raw + b'","'
        sz_at = len(text)
        text += sz_raw + b'"],'
        spans += [px_at, len(px_raw), sz_at, len(sz_raw)]
    table = struct.pack(f"=II{len(spans)}I", len(bids), len(asks), *spans)
    text += b"}"
    return (text if as_bytes else text.decode()), table


def _apply_spans(book: L2Book, text, table, accelerated: bool):
    previous = l2.set_accelerated(accelerated)
    try:
        book.apply_spans(text, table)
    except Exception as exc:  # noqa: BLE001 - compared
        return type(exc), str(exc)
    finally:
        l2.set_accelerated(previous)
    return None


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(SPAN_SIDE, SPAN_SIDE), min_size=1, max_size=15), st.booleans(),
       st.sampled_from(["1", "0.01", "10"]), st.booleans())
def test_span_tables_leave_the_books_and_errors_their_string_levels_leave(stream, keep_raw, contract, as_bytes):
    # The C span loop, the pure-Python span path (levels_of_spans) and the Python loops over the same
    # strings as lists: identical books and errors, level by level.
    via_c, via_py, via_lists = (L2Book("okx", "X", Decimal(contract), keep_raw=keep_raw) for _ in range(3))
    for bids, asks in stream:
        text, table = _span_frame(bids, asks, as_bytes or any(not (px + sz).isascii() for px, sz in bids + asks))
        expected = _apply(via_lists, bids, asks, False)
        assert _apply_spans(via_c, text, table, True) == expected
        assert _apply_spans(via_py, text, table, False) == expected
        assert _state(via_c) == _state(via_py) == _state(via_lists)
        _assert_shadows_follow_the_keys(via_c)
    assert l2.levels_of_spans(*_span_frame([["1.5", "2"]], [["1.6", "0"]], True)) == ([["1.5", "2"]], [["1.6", "0"]])


@pytest.mark.parametrize("text, table, error", [
    (b'["1","2"]', struct.pack("=II4I", 1, 0, 2, 1, 6, 1), None),
    (b'["1","2"]', struct.pack("=II4I", 1, 0, 2, 1, 6, 9), (ValueError, "a span lies outside the text")),
    (b'["1","2"]', struct.pack("=II4I", 2, 0, 2, 1, 6, 1), (ValueError, "span table length does not match its counts")),
    (b'["1","2"]', struct.pack("=I", 0), (ValueError, "span table length does not match its counts")),
    (b'["1","2"]', bytearray(struct.pack("=II", 0, 0)), (TypeError, "a span table is bytes (see _spans.h)")),
    ('["\u00e9","2"]', struct.pack("=II", 0, 0), (TypeError, "spans index a bytes object or an ASCII str")),
    (bytearray(b"[]"), struct.pack("=II", 0, 0), (TypeError, "spans index a bytes object or an ASCII str")),
])
def test_a_span_table_that_does_not_fit_its_text_is_refused_before_touching_the_book(text, table, error):
    for accelerated in (True, False):
        book = L2Book("okx", "X", keep_raw=True)
        assert _apply_spans(book, text, table, accelerated) == error
        applied = ({10**9: 2 * 10**9}, [10**9], ["1:2"]) if error is None else ({}, [], [])
        assert _state(book) == (*applied, {}, [], [])
