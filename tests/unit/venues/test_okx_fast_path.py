"""OKX books fast path (okx.parse.apply_books_frame, what the feed supervisor runs first) against the
generic path (parse + apply_update): identical books and identical invalidation reasons, frame by frame,
on every recorded OKX fixture frame, on the bench's generated stream, and on faulted streams."""

from __future__ import annotations

import copy
import importlib.util
import json
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from perpbot.book.l2 import L2Book
from perpbot.book.sync import apply_update
from perpbot.core.events import BookUpdate, ParseError
from perpbot.settings import FeedSettings
from perpbot.venues.okx import parse as okx
from perpbot.venues.okx.feed import OkxFeedAdapter

ROOT = Path(__file__).resolve().parents[3]


def _bench_book():
    spec = importlib.util.spec_from_file_location("bench_book_for_tests", ROOT / "bench" / "bench_book.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _messages(path: Path) -> list:
    data = json.loads(path.read_text())
    rows = data if isinstance(data, list) else [data]
    return [row["msg"] if isinstance(row, dict) and "msg" in row and "dir" in row else row for row in rows]


def _all_fixture_frames(fixtures: Path) -> list[bytes]:
    frames = []
    for path in sorted((fixtures / "okx").glob("*.json")):
        frames += [orjson.dumps(msg) for msg in _messages(path) if isinstance(msg, (dict, list))]
    return frames


def _replay_frames(fixtures: Path, inst: str, with_seq: bool) -> list[bytes]:
    """The recorded 2022 capture of one instrument; optionally numbered with seqId/prevSeqId as OKX does now."""
    rows = json.loads((fixtures / "okx" / f"books_checksum_replay_{inst}_2022-05-13.json").read_text())
    out = []
    for n, row in enumerate(r for r in rows if "action" in r.get("msg", {})):
        msg = copy.deepcopy(row["msg"])
        if with_seq:
            msg["data"][0]["seqId"] = 1000 + n
            msg["data"][0]["prevSeqId"] = 999 + n if n else -1
        out.append(orjson.dumps(msg))
    return out


def _state(book: L2Book) -> tuple:
    return (
        tuple(book.bids.items()), tuple(book.asks.items()), tuple(book.bid_keys), tuple(book.ask_keys),
        tuple(book.bid_frags), tuple(book.ask_frags), book.valid, book.invalid_reason, book.seq,
        book.exchange_ts_ms, book.recv_ts, book.updates, book.invalidations, book.awaiting_first_delta,
    )


class _Pipeline:
    """Books keyed like BookStore.books; `fast` runs the supervisor's order (fast path, else generic)."""

    def __init__(self, fast: bool, keep_raw: bool, contract: Decimal) -> None:
        self.fast = fast
        self.keep_raw = keep_raw
        self.contract = contract
        self.books: dict[tuple[str, str], L2Book] = {}
        self.rules = okx.Rules()
        self.fast_frames = 0

    def feed(self, frame: bytes, recv_ts: float) -> list[str]:
        if self.fast:
            done = okx.apply_books_frame(frame, recv_ts, self.books)
            if done is not None:
                self.fast_frames += 1
                book, ts_ms, reason = done
                assert ts_ms == book.exchange_ts_ms or reason is not None and reason.startswith("malformed")
                return [] if reason is None else [reason]
        try:
            events = okx.parse(frame, recv_ts)
        except ParseError as exc:
            return [f"parse error: {exc.reason}"]
        reasons = []
        for event in events:
            if type(event) is BookUpdate:
                key = ("okx", event.symbol)
                book = self.books.get(key)
                if book is None:
                    book = self.books[key] = L2Book("okx", event.symbol, self.contract, self.keep_raw)
                reason = apply_update(book, event, self.rules)
                if reason is not None:
                    reasons.append(reason)
        return reasons


def _without_checksums(frames: list[bytes]) -> list[bytes]:
    """Checksums sent as 0 (OKX today): what a book without raw strings (books5 mode) can take."""
    out = []
    for frame in frames:
        msg = orjson.loads(frame)
        if isinstance(msg, dict) and isinstance(msg.get("data"), list):
            for item in msg["data"]:
                if isinstance(item, dict) and "checksum" in item:
                    item["checksum"] = 0
        out.append(orjson.dumps(msg))
    return out


def _compare(frames: list[bytes], keep_raw: bool = True, contract: Decimal = Decimal(1)) -> tuple[int, list[str]]:
    """Feed both pipelines frame by frame; returns (frames taken by the fast path, all reasons)."""
    if not keep_raw:
        frames = _without_checksums(frames)
    generic = _Pipeline(False, keep_raw, contract)
    fast = _Pipeline(True, keep_raw, contract)
    seen = []
    for n, frame in enumerate(frames):
        expected = generic.feed(frame, 1000.0 + n)
        assert fast.feed(frame, 1000.0 + n) == expected, f"frame {n}"
        assert generic.books.keys() == fast.books.keys(), f"frame {n}"
        for key, book in generic.books.items():
            assert _state(fast.books[key]) == _state(book), f"frame {n} {key}"
        seen += expected
    return fast.fast_frames, seen


def test_every_recorded_okx_fixture_frame_gives_identical_books_and_reasons(shared_fixtures):
    frames = _all_fixture_frames(shared_fixtures)
    assert len(frames) > 700
    for keep_raw in (True, False):
        # Files fed back to back (a capture's books land on a book another file left behind):
        # checksum failures and parse errors occur, and must occur identically on both paths.
        taken, reasons = _compare(frames, keep_raw)
        assert taken > 250  # the 2022 captures' updates (no seqId: the exchange ts stands in)
        assert reasons


@pytest.mark.parametrize("inst, contract", [("BTC-USDT", Decimal(1)), ("BTC-USDT", Decimal(10)),
                                            ("BTC-USD-220527", Decimal("0.01")), ("UNI-USD-SWAP", Decimal("0.01"))])
def test_recorded_streams_with_seq_ids_identical_on_both_paths(shared_fixtures, inst, contract):
    frames = _replay_frames(shared_fixtures, inst, with_seq=True)
    for keep_raw in (True, False):
        taken, reasons = _compare(frames, keep_raw, contract)
        assert taken == len(frames) - 1 and reasons == []


def test_generated_bench_stream_identical_on_both_paths():
    bench_book = _bench_book()
    for with_checksum, keep_raw in ((False, False), (False, True), (True, True)):
        frames = [raw for _, raw in bench_book.generated_frames(with_checksum, updates=400)]
        taken, reasons = _compare(frames, keep_raw)
        assert taken == 400 and reasons == []


def _faulted(frames: list[bytes], index: int, fault: str) -> list[bytes]:
    out = list(frames)
    msg = orjson.loads(out[index])
    item = msg["data"][0]
    side = item["bids"] if item["bids"] else item["asks"]
    if fault == "gap":
        del out[index]
        return out
    if fault == "checksum":
        item["checksum"] = (item["checksum"] + 1) or 7
    elif fault == "malformed price":
        side.append(["1e5", "1", "0", "1"])
    elif fault == "malformed size":
        side.insert(0, [side[0][0], "-3", "0", "1"])
    elif fault == "off-grid size":  # 1e-9 contracts x 0.01 is off the 1e-9 grid
        side.append([side[0][0], "0.000000001", "0", "1"])
    elif fault == "crossed":
        best_ask = min(Decimal(a[0]) for a in orjson.loads(out[0])["data"][0]["asks"])
        item["bids"].append([str(best_ask + 1000), "5", "0", "1"])
    elif fault == "short level":
        side.append(["100.5"])
    elif fault == "two items":
        msg["data"].append(copy.deepcopy(item))
    elif fault == "ts not digits":
        item["ts"] = "17e11"
    elif fault == "duplicate seq":
        item["prevSeqId"] = item["seqId"] = orjson.loads(out[index - 1])["data"][0]["seqId"]
    out[index] = orjson.dumps(msg)
    return out


@pytest.mark.parametrize("fault", ["gap", "checksum", "malformed price", "malformed size", "off-grid size",
                                   "crossed", "short level", "two items", "ts not digits", "duplicate seq"])
def test_faulted_streams_give_identical_invalidation_reasons(shared_fixtures, fault):
    frames = _replay_frames(shared_fixtures, "UNI-USD-SWAP", with_seq=True)[:60]
    faulted = _faulted(frames, 30, fault)
    contract = Decimal("0.01")
    _, reasons = _compare(faulted, True, contract)
    assert reasons, f"{fault} must invalidate or be refused"
    if fault != "checksum":  # without raw strings the checksums are sent as 0
        _, reasons = _compare(faulted, False, contract)
        assert reasons, f"{fault} must invalidate or be refused"


def test_fast_path_declines_what_it_does_not_own():
    book = L2Book("okx", "X", keep_raw=True)
    books = {("okx", "X"): book}
    update = orjson.dumps({"arg": {"channel": "books", "instId": "X"}, "action": "update",
                           "data": [{"bids": [["1.5", "2", "0", "1"]], "asks": [], "ts": "5", "seqId": 2, "prevSeqId": 1}]})
    assert okx.apply_books_frame(update, 0.0, books) is None  # no snapshot yet
    assert okx.apply_books_frame(update.replace(b'"update"', b'"snapshot"'), 0.0, books) is None
    assert okx.apply_books_frame(b"pong", 0.0, books) is None
    assert okx.apply_books_frame(update.replace(b'"X"', b'"Y"'), 0.0, books) is None  # unknown book
    book.seq = 7
    assert okx.apply_books_frame(update, 0.0, books) is None  # a gap: the generic path names it
    assert book.bids == {} and book.updates == 0  # nothing touched
    book.seq = 1
    assert okx.apply_books_frame(update, 0.0, books) == (book, 5, None)
    assert book.bids == {1_500_000_000: 2_000_000_000} and book.seq == 2 and book.valid


def test_the_okx_feed_adapter_offers_the_fast_path_to_the_supervisor():
    adapter = OkxFeedAdapter(FeedSettings())
    assert adapter.apply_books_frame is okx.apply_books_frame
