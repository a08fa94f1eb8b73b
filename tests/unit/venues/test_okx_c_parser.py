"""The C parser of OKX books updates (perpbot/book/_accel.c: okx_peek / okx_apply) against msgspec's
typed decode, which the fast path used alone before: on real frames and on frames mutated at
random (whitespace, key order, types, extra keys, escapes, bytes flipped), whatever the C parser
accepts msgspec accepts too, with the same fields, and applying its levels leaves the very book
(and error) that applying msgspec's level lists leaves. Whatever it declines goes to msgspec, as
without the accelerator."""

from __future__ import annotations

import copy
import json
import random
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perpbot.book import l2
from perpbot.book.l2 import L2Book
from perpbot.venues.okx import parse as okx

BASE = {
    "arg": {"channel": "books", "instId": "BTC-USDT-SWAP"},
    "action": "update",
    "data": [{
        "asks": [["30100.5", "12", "0", "3"], ["30101", "0", "0", "0"], ["30102.25", "7.5", "0", "1"]],
        "bids": [["30099.5", "4", "0", "2"], ["30098", "0", "0", "0"]],
        "ts": "1700000000123", "checksum": -12345, "seqId": 124, "prevSeqId": 123,
    }],
}
SNAPSHOT_LEVELS = (
    [[f"{30099.5 - i:.1f}", str(1 + i % 5), "0", "1"] for i in range(30)],
    [[f"{30100.5 + i:.1f}", str(1 + i % 7), "0", "1"] for i in range(30)],
)
ODD_VALUES = [None, 1.5, "12", -1, 2**64, 2**63, -(2**63), True, [], {}, "", "1e5", "\u00e9", "a\\\"b", 0]
MUTATION_BYTES = list(b'{}[]":,0123456789.-e \n\\') + [0xC3, 0xA9, 0x00]


def _book(keep_raw: bool, contract: str) -> L2Book:
    book = L2Book("okx", "BTC-USDT-SWAP", Decimal(contract), keep_raw=keep_raw)
    book.replace(*SNAPSHOT_LEVELS)
    book.seq = 123
    book.valid = True
    return book


def _state(book: L2Book) -> tuple:
    return (dict(book.bids), list(book.bid_keys), list(book.bid_frags), dict(book.asks), list(book.ask_keys),
            list(book.ask_frags))


def _apply_both(frame, peek, keep_raw: bool, contract: str):
    """(state, error) after okx_apply of the peeked frame and after apply_levels of msgspec's lists."""
    results = []
    typed = okx._decode_books(frame)
    for via_c in (True, False):
        book = _book(keep_raw, contract)
        error = None
        try:
            if via_c:
                bid_side, ask_side = book._sides_raw if keep_raw else book._sides_plain
                okx._okx_apply(frame, bid_side, ask_side, book._px, book._sz, l2._price_miss, book._szmiss,
                               book._contract)
            else:
                book.apply_levels_py(typed.data[0].bids, typed.data[0].asks)
        except Exception as exc:  # noqa: BLE001 - compared
            error = (type(exc), str(exc))
        results.append((_state(book), error))
        if via_c:
            okx._okx_peek(frame)  # okx_apply consumes the peek: peek again for the second run's check
    return results


def _check(frame) -> bool:
    """The differential oracle; returns whether the C parser accepted the frame."""
    peek = okx._okx_peek(frame)
    if peek is None:
        return False
    typed = okx._decode_books(frame)  # must not raise: C accepts only what msgspec accepts
    assert typed.event is None and typed.action == "update" and typed.arg.channel == "books"
    assert len(typed.data) == 1
    item = typed.data[0]
    assert item.ts.isascii() and item.ts.isdigit() and len(item.ts) <= 18
    assert peek == (typed.arg.instId, int(item.ts), item.seqId, item.prevSeqId, item.checksum)
    for keep_raw in (True, False):
        for contract in ("1", "0.01"):
            via_c, via_py = _apply_both(frame, peek, keep_raw, contract)
            assert via_c == via_py
    return True


def _variants(message: dict, rng: random.Random) -> list:
    text = json.dumps(message)
    spaced = json.dumps(message, indent=rng.choice([None, 1, 2]), separators=rng.choice([(",", ":"), (", ", ": ")]))
    shuffled = dict(rng.sample(list(message.items()), len(message)))
    return [text, text.encode(), spaced, json.dumps(shuffled).encode(), json.dumps(message, separators=(",", ":")).encode()]


def test_real_shapes_are_accepted_and_agree():
    rng = random.Random(1)
    accepted = 0
    for frame in _variants(BASE, rng):
        accepted += _check(frame)
    assert accepted == 5


def test_bench_stream_frames_are_all_taken_by_the_c_parser_and_agree():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[3] / "bench" / "bench_book.py"
    spec = importlib.util.spec_from_file_location("bench_book_c_parser", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    frames = [raw for kind, raw in module.generated_frames(True, updates=300)]
    updates = frames[1:]
    assert sum(_check(f) for f in updates) == len(updates)


@pytest.mark.parametrize("declined", [
    {**BASE, "event": "error"},
    {**BASE, "action": "snapshot"},
    {**BASE, "arg": {"channel": "books5", "instId": "X"}},
    {**BASE, "arg": {"channel": "books", "instId": "X", "uid": "1"}},
    {**BASE, "data": BASE["data"] * 2},
    {**BASE, "data": [{**BASE["data"][0], "seqId": None}]},
    {**BASE, "data": [{**BASE["data"][0], "seqId": 2**63}]},
    {**BASE, "data": [{**BASE["data"][0], "ts": "17e11"}]},
    {**BASE, "data": [{**BASE["data"][0], "ts": "1" * 19}]},
    {**BASE, "data": [{**BASE["data"][0], "bids": [["1"]]}]},
    {**BASE, "data": [{**BASE["data"][0], "bids": [["1", 2]]}]},
    {**BASE, "data": [{**BASE["data"][0], "extra": 1}]},
    {**BASE, "arg": {"channel": "books", "instId": "BTC\u00e9"}},
])
def test_unusual_frames_are_declined_before_anything_is_touched(declined):
    assert okx._okx_peek(json.dumps(declined)) is None
    assert okx._okx_peek(json.dumps(declined).encode() + b" x") is None


def test_trailing_text_escapes_and_duplicates_are_declined():
    text = json.dumps(BASE)
    assert okx._okx_peek(text + "}") is None
    assert okx._okx_peek(text.replace('"30100.5"', '"30100\\u002e5"')) is None
    assert okx._okx_peek(text.replace('"action": "update"', '"action": "update", "action": "update"')) is None
    assert okx._okx_peek(text.replace('124', '0124')) is None
    assert okx._okx_peek(text.replace('124', '124.0')) is None


def test_apply_refuses_a_frame_it_did_not_peek():
    frame = json.dumps(BASE)
    assert okx._okx_peek(frame) is not None
    other = json.dumps(BASE)  # equal text, another object
    book = _book(False, "1")
    with pytest.raises(RuntimeError, match="not the frame"):
        okx._okx_apply(other, *book._sides_plain, book._px, book._sz, l2._price_miss, book._szmiss, None)


@settings(max_examples=1500, deadline=None)
@given(st.data())
def test_mutated_frames_never_make_the_c_parser_disagree_with_msgspec(data):
    message = json.loads(json.dumps(BASE))
    item = message["data"][0]
    for _ in range(data.draw(st.integers(0, 3))):
        where = data.draw(st.sampled_from(["top", "arg", "item", "level"]))
        value = copy.deepcopy(data.draw(st.sampled_from(ODD_VALUES)))
        if where == "top":
            message[data.draw(st.sampled_from(["arg", "action", "data", "event", "x"]))] = value
        elif where == "arg" and isinstance(message.get("arg"), dict):
            message["arg"][data.draw(st.sampled_from(["channel", "instId", "x"]))] = value
        elif where == "item":
            item[data.draw(st.sampled_from(["asks", "bids", "ts", "checksum", "seqId", "prevSeqId", "x"]))] = value
        elif isinstance(item.get("bids"), list) and item["bids"]:
            level = item["bids"][0]
            if isinstance(level, list):
                level[data.draw(st.integers(0, len(level) - 1))] = value if not isinstance(value, str) else (
                    data.draw(st.sampled_from(["-1", "1e3", "0.0000000001", "00.50", "5.", ".5", "99999999999999",
                                               "1.00000000000", "", "x", value])))
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    frame = data.draw(st.sampled_from(_variants(message, rng)))
    raw = bytearray(frame.encode() if isinstance(frame, str) else frame)
    for _ in range(data.draw(st.integers(0, 2))):
        op = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        at = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "delete" and raw:
            del raw[at]
        elif op == "insert":
            raw.insert(at, data.draw(st.sampled_from(MUTATION_BYTES)))
        elif raw:
            raw[at] = data.draw(st.sampled_from(MUTATION_BYTES))
    frame = bytes(raw)
    if data.draw(st.booleans()):
        try:
            frame = frame.decode()
        except UnicodeDecodeError:
            pass
    _check(frame)


def test_random_byte_mutations_of_real_frames_agree_and_both_outcomes_are_exercised():
    rng = random.Random(7)
    accepted = declined = 0
    sources = [v for v in _variants(BASE, rng) if isinstance(v, bytes)]
    for n in range(4000):
        raw = bytearray(rng.choice(sources))
        for _ in range(rng.randint(1, 2)):
            at = rng.randrange(len(raw))
            op = rng.random()
            if op < 0.4:
                raw[at] = rng.choice(MUTATION_BYTES)
            elif op < 0.7:
                raw.insert(at, rng.choice(MUTATION_BYTES))
            else:
                del raw[at]
        if _check(bytes(raw)):
            accepted += 1
        else:
            declined += 1
    # Mutations inside level strings or numbers keep the frame valid JSON: both sides are exercised.
    assert accepted > 200 and declined > 200, (accepted, declined)


def test_a_peek_taken_over_by_another_frame_falls_back_to_the_typed_path_untouched(monkeypatch):
    # One frame is held at a time; if something peeks another frame between okx_peek and okx_apply
    # (a second thread), okx_apply refuses before touching the book and the typed path applies it.
    frame = json.dumps(BASE)
    other = json.dumps({**BASE, "arg": {"channel": "books", "instId": "ETH-USDT-SWAP"}})
    real_peek = okx._okx_peek

    def peek_then_lose_it(f):
        result = real_peek(f)
        real_peek(other)
        return result

    monkeypatch.setattr(okx, "_okx_peek", peek_then_lose_it)
    book = _book(True, "1")
    book.apply_levels_py([], [])  # shadows unused: both books below bisect the lists
    reference = _book(True, "1")
    reference.apply_levels_py(okx._decode_books(frame).data[0].bids, okx._decode_books(frame).data[0].asks)
    done = okx.apply_books_frame(frame, 1.0, {("okx", "BTC-USDT-SWAP"): book})
    assert done is not None and done[0] is book and done[2] in (None, "checksum")
    assert _state(book) == _state(reference)
