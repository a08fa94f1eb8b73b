"""The C parser of OKX books updates (perpbot/venues/okx/_books.c: peek, whose span table the book
applies: L2Book.apply_spans) against msgspec's typed decode, which the fast path used alone before:
on real frames and on frames mutated at random (whitespace, key order, types, extra keys, escapes,
bytes flipped), whatever the C parser accepts msgspec accepts too, with the same fields, and applying
its levels leaves the very book (and error) that applying msgspec's level lists leaves. Whatever it
declines goes to msgspec, as without the accelerator. The parser keeps nothing between calls: peeks of
several frames applied in any order give what each frame alone gives."""

from __future__ import annotations

import copy
import json
import os
import random
import sys
import threading
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perpbot.book.l2 import L2Book, levels_of_spans
from perpbot.venues.okx import parse as okx

pytestmark = pytest.mark.skipif(os.environ.get("PERPBOT_PURE_PYTHON") == "1", reason="C accelerators disabled")
peek = okx._peek  # the C parser (None only where the guard above skips)

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


def _apply_both(frame, spans: bytes, keep_raw: bool, contract: str):
    """(state, error) after apply_spans of the peeked frame's span table and after apply_levels of
    msgspec's lists."""
    results = []
    typed = okx._decode_books(frame)
    for via_c in (True, False):
        book = _book(keep_raw, contract)
        error = None
        try:
            if via_c:
                book.apply_spans(frame, spans)
            else:
                book.apply_levels_py(typed.data[0].bids, typed.data[0].asks)
        except Exception as exc:  # noqa: BLE001 - compared
            error = (type(exc), str(exc))
        results.append((_state(book), error))
    return results


def _check(frame) -> bool:
    """The differential oracle; returns whether the C parser accepted the frame."""
    peeked = peek(frame)
    if peeked is None:
        return False
    *fields, spans = peeked
    typed = okx._decode_books(frame)  # must not raise: C accepts only what msgspec accepts
    assert typed.event is None and typed.action == "update" and typed.arg.channel == "books"
    assert len(typed.data) == 1
    item = typed.data[0]
    assert item.ts.isascii() and item.ts.isdigit() and len(item.ts) <= 18
    assert tuple(fields) == (typed.arg.instId, int(item.ts), item.seqId, item.prevSeqId, item.checksum)
    # The span table stands for the first two strings of each level, as msgspec decoded them.
    assert levels_of_spans(frame, spans) == ([lvl[:2] for lvl in item.bids], [lvl[:2] for lvl in item.asks])
    for keep_raw in (True, False):
        for contract in ("1", "0.01"):
            via_c, via_py = _apply_both(frame, spans, keep_raw, contract)
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
    assert peek(json.dumps(declined)) is None
    assert peek(json.dumps(declined).encode() + b" x") is None


def test_trailing_text_escapes_and_duplicates_are_declined():
    text = json.dumps(BASE)
    assert peek(text + "}") is None
    assert peek(text.replace('"30100.5"', '"30100\\u002e5"')) is None
    assert peek(text.replace('"action": "update"', '"action": "update", "action": "update"')) is None
    assert peek(text.replace('124', '0124')) is None
    assert peek(text.replace('124', '124.0')) is None


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



# ------------------------------------------------------------------ reentrancy: nothing kept between calls
def _updates(rng: random.Random, symbol: str, n: int) -> list[bytes]:
    """A seqId chain of plain updates on the _book snapshot (bids below 30100, asks above: never crossed)."""
    frames = []
    for k in range(n):
        def side(low: float) -> list[list[str]]:
            return [[f"{low + rng.randint(0, 20) / 2:.1f}", rng.choice(["0", "1", "2.5", "7", "0.03"]), "0", "1"]
                    for _ in range(rng.randint(0, 4))]
        item = {"asks": side(30100.5), "bids": side(30089.5), "ts": str(1700000000000 + k), "checksum": 0,
                "seqId": 124 + k, "prevSeqId": 123 + k}
        frames.append(json.dumps({"arg": {"channel": "books", "instId": symbol}, "action": "update",
                                  "data": [item]}).encode())
    return frames


def test_peeks_of_several_frames_apply_in_any_order_as_each_frame_alone():
    # Two books' streams: sequentially (peek, apply, next frame) and with every frame of both streams
    # peeked before any is applied, the second stream's first; the same fields and the same books.
    rng = random.Random(3)
    streams = {"BTC-USDT-SWAP": _updates(rng, "BTC-USDT-SWAP", 60), "ETH-USDT-SWAP": _updates(rng, "ETH-USDT-SWAP", 60)}
    setups = {"BTC-USDT-SWAP": (True, "1"), "ETH-USDT-SWAP": (False, "0.01")}
    sequential = {symbol: _book(*setup) for symbol, setup in setups.items()}
    fields_sequential = {symbol: [] for symbol in streams}
    for k in range(60):
        for symbol, frames in streams.items():
            *fields, spans = peek(frames[k])
            fields_sequential[symbol].append(fields)
            sequential[symbol].apply_spans(frames[k], spans)
    peeked = {symbol: [peek(frame) for frame in frames] for symbol, frames in reversed(streams.items())}
    interleaved = {symbol: _book(*setup) for symbol, setup in setups.items()}
    for symbol in streams:
        for frame, (*fields, spans) in zip(streams[symbol], peeked[symbol]):
            interleaved[symbol].apply_spans(frame, spans)
        assert [fields for *fields, _ in peeked[symbol]] == fields_sequential[symbol]
        assert _state(interleaved[symbol]) == _state(sequential[symbol])
        assert interleaved[symbol].bid_keys != _book(*setups[symbol]).bid_keys  # the streams changed them


def test_peek_keeps_no_reference_to_the_frame_it_read():
    frame = json.dumps(BASE).encode() + b" "  # an object of this test's own
    before = sys.getrefcount(frame)
    assert peek(frame) is not None
    assert sys.getrefcount(frame) == before


def test_threads_on_the_fast_path_at_once_never_fall_back_and_end_as_one_thread(monkeypatch):
    # Four threads feed four books through apply_books_frame with the interpreter switching threads as
    # often as it can: every frame the C parser accepts is applied by it (a parser holding one frame
    # at a time would lose some to another thread's peek and fall back), and each book ends as the
    # same stream fed alone leaves it.
    rng = random.Random(5)
    symbols = [f"S{i}-USDT-SWAP" for i in range(4)]
    streams = {symbol: _updates(rng, symbol, 150) for symbol in symbols}
    declined = []
    real = okx._apply_peeked

    def counting(frame, recv_ts, books):
        done = real(frame, recv_ts, books)
        if done is False:
            declined.append(frame)
        return done

    def feed(symbol: str, book: L2Book, results: list) -> None:
        books = {("okx", symbol): book}
        for frame in streams[symbol]:
            results.append(okx.apply_books_frame(frame, 1.0, books))

    alone = {symbol: _book(True, "1") for symbol in symbols}
    alone_results = {symbol: [] for symbol in symbols}
    for symbol in symbols:
        feed(symbol, alone[symbol], alone_results[symbol])
    monkeypatch.setattr(okx, "_apply_peeked", counting)
    together = {symbol: _book(True, "1") for symbol in symbols}
    together_results = {symbol: [] for symbol in symbols}
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=feed, args=(s, together[s], together_results[s])) for s in symbols]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert declined == []
    for symbol in symbols:
        assert _state(together[symbol]) == _state(alone[symbol])
        assert [(r[1], r[2]) for r in together_results[symbol]] == [(r[1], r[2]) for r in alone_results[symbol]]
        assert all(r is not None and r[2] is None for r in together_results[symbol])
