"""OKX parser and book rules over the real 2022 checksummed books stream and the docs sequence chain."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from perpbot.book.l2 import L2Book
from perpbot.book.sync import apply_update
from perpbot.core.events import BookUpdate, FundingUpdate, ParseError, Pong, SubscribeAck, VenueError
from perpbot.core.numbers import to_scaled
from perpbot.settings import FeedSettings
from perpbot.venues.okx.feed import OkxFeedAdapter
from perpbot.venues.okx.parse import Rules, checksum_string, crc32_signed, parse


def _replay_files(fixtures: Path) -> list[Path]:
    files = sorted((fixtures / "okx").glob("books_checksum_replay_*.json"))
    assert len(files) == 3
    return files


def _frames(path: Path) -> list[tuple[bytes, float]]:
    return [(orjson.dumps(row["msg"]), row["recv_ts"]) for row in json.loads(path.read_text()) if row["dir"] == "recv"]


def _books(frame: bytes, ts: float) -> list[BookUpdate]:
    return [event for event in parse(frame, ts) if isinstance(event, BookUpdate)]


def test_okx_all_290_recorded_checksums_verify_through_rules_and_apply_update(shared_fixtures):
    verified = 0
    for path in _replay_files(shared_fixtures):
        book = None
        for frame, ts in _frames(path):
            for update in _books(frame, ts):
                book = book or L2Book("okx", update.symbol, keep_raw=True)
                assert update.checksum is not None and update.checksum != 0
                assert apply_update(book, update, Rules()) is None
                assert book.valid
                verified += 1
        assert book is not None and not book.is_crossed()
    assert verified == 290


def test_okx_checksum_mismatch_after_mutating_one_size_invalidates_the_book(shared_fixtures):
    frames = _frames(_replay_files(shared_fixtures)[1])
    book = L2Book("okx", "BTC-USDT", keep_raw=True)
    rules = Rules()
    first, second = _books(*frames[1])[0], _books(*frames[2])[0]
    assert apply_update(book, first, rules) is None and book.valid
    # Same size with a different string form (trailing zero) also changes the CRC: strings count.
    level = second.bids[0] if second.bids else second.asks[0]
    level[1] = str(Decimal(level[1]) + Decimal("0.001")) if level[1] != "0" else "0.5"
    assert apply_update(book, second, rules) == "checksum"
    assert not book.valid and book.invalid_reason == "checksum" and book.seq is None


def test_okx_worked_checksum_examples_match_the_computed_values(shared_fixtures):
    examples = json.loads((shared_fixtures / "okx" / "checksum_worked_examples.json").read_text())
    checked = 0
    for example in examples:
        if "bids" not in example or "crc32_signed_computed" not in example:
            continue
        book = L2Book("okx", "X", keep_raw=True)
        book.replace(example["bids"], example["asks"])
        assert checksum_string(book) == example["check_string"]
        assert crc32_signed(example["check_string"]) == example["crc32_signed_computed"]
        checked += 1
    assert checked >= 3


def _frame(action: str, seq: int, prev: int, bids=(), asks=(), checksum: int = 0) -> bytes:
    return orjson.dumps(
        {
            "arg": {"channel": "books", "instId": "BTC-USDT-SWAP"},
            "action": action,
            "data": [
                {"asks": [list(a) for a in asks], "bids": [list(b) for b in bids], "ts": "1597026383085",
                 "checksum": checksum, "prevSeqId": prev, "seqId": seq}
            ],
        }
    )


def test_okx_docs_sequence_chain_with_keepalive_and_reset_applies():
    book = L2Book("okx", "BTC-USDT-SWAP", Decimal("0.01"), keep_raw=True)
    rules = Rules()
    chain = [
        _frame("snapshot", 10, -1, bids=[("100.1", "5", "0", "1")], asks=[("100.2", "7", "0", "1")]),
        _frame("update", 15, 10, bids=[("100.0", "3", "0", "1")]),
        _frame("update", 15, 15),  # no change for 60 s: empty keep-alive
        _frame("update", 3, 15, asks=[("100.3", "1", "0", "1")]),  # reset after maintenance
        _frame("update", 5, 3, bids=[("100.1", "0", "0", "0")]),
    ]
    for frame in chain:
        (update,) = parse(frame, 1.0)
        assert update.checksum is None  # checksum 0 means absent
        assert apply_update(book, update, rules) is None
        assert book.valid
    assert book.seq == 5
    assert book.best_bid() == to_scaled("100.0")
    # sizes are kept in base units: 3 contracts x 0.01 BTC
    assert book.bids[to_scaled("100.0")] == to_scaled("0.03")


def test_okx_seqid_gap_invalidates_the_book():
    book = L2Book("okx", "BTC-USDT-SWAP", keep_raw=True)
    rules = Rules()
    apply_update(book, parse(_frame("snapshot", 10, -1, bids=[("1", "1", "0", "1")], asks=[("2", "1", "0", "1")]), 1.0)[0], rules)
    assert book.valid
    reason = apply_update(book, parse(_frame("update", 20, 12), 1.0)[0], rules)
    assert reason is not None and "gap" in reason
    assert not book.valid and book.seq is None


def test_okx_nonzero_checksum_on_a_synthetic_book_is_checked_not_ignored():
    book = L2Book("okx", "BTC-USDT-SWAP", keep_raw=True)
    frame = _frame("snapshot", 1, -1, bids=[("3366.1", "7", "0", "3")], asks=[("3366.8", "9", "10", "3")], checksum=12345)
    assert apply_update(book, parse(frame, 1.0)[0], Rules()) == "checksum"
    assert not book.valid


def test_okx_books5_push_is_a_snapshot_with_seqid(shared_fixtures):
    rows = json.loads((shared_fixtures / "okx" / "recorded_ccxt_books5_BTC-USDT-SWAP_2026-08-12.json").read_text())
    events = [e for row in rows for e in parse(orjson.dumps(row), 2.0)]
    assert isinstance(events[0], SubscribeAck) and "books5" in events[0].detail
    books = [e for e in events if isinstance(e, BookUpdate)]
    assert [b.seq for b in books] == [333794734980, 333794734996]
    assert all(b.snapshot and b.checksum is None and b.exchange_ts_ms > 0 for b in books)
    book = L2Book("okx", "BTC-USDT-SWAP", Decimal("0.01"))
    for update in books:
        assert apply_update(book, update, Rules()) is None
    assert book.best_bid() == to_scaled("63921.4") and book.best_ask() == to_scaled("63921.5")
    assert book.asks[to_scaled("63921.5")] == to_scaled("7.9041")  # 790.41 contracts x 0.01


def test_okx_funding_rate_push_gives_interval_from_funding_times(shared_fixtures):
    rows = json.loads((shared_fixtures / "okx" / "doc_funding-rate_example_via_JKorf.json").read_text())
    (funding,) = parse(orjson.dumps(rows[2]), 3.0)
    assert isinstance(funding, FundingUpdate)
    assert funding.rate == Decimal("0.0001875391284828")
    assert funding.interval_hours == 8.0
    assert funding.next_funding_ms == 1700726400000
    assert funding.exchange_ts_ms == 1700724675402


def test_okx_pong_acks_and_errors_become_events(shared_fixtures):
    assert isinstance(parse("pong", 5.0)[0], Pong)
    rows = json.loads((shared_fixtures / "okx" / "doc_subscribe_request_response_error.json").read_text())
    assert isinstance(parse(orjson.dumps(rows[1]), 1.0)[0], SubscribeAck)
    (error,) = parse(orjson.dumps(rows[2]), 1.0)
    assert isinstance(error, VenueError) and error.code == "60012"


@pytest.mark.parametrize(
    "frame",
    [
        b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot","data":[{"asks":[["1","2"',
        b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot","data":[{"asks":[[1.5,"2","0","1"]],"bids":[],"ts":"1"}]}',
        b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot","data":[{"asks":[],"bids":[],"ts":"x"}]}',
        b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot","data":[{"bids":[],"ts":"1"}]}',
        b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"replace","data":[]}',
        b'{"arg":{"channel":"books"},"action":"snapshot","data":[]}',
        b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[],"bids":[],"ts":"1","seqId":"7","prevSeqId":6}]}',
        b'{"arg":{"channel":"funding-rate","instId":"BTC-USDT-SWAP"},"data":[{"fundingRate":0.0001,"fundingTime":"1","ts":"1"}]}',
        b'[1,2]',
        b'ping?',
    ],
)
def test_okx_malformed_frames_raise_parse_error(frame):
    with pytest.raises(ParseError):
        parse(frame, 1.0)


def test_okx_non_numeric_level_never_produces_a_valid_book():
    book = L2Book("okx", "BTC-USDT-SWAP", keep_raw=True)
    frame = _frame("snapshot", 1, -1, bids=[("abc", "1", "0", "1")], asks=[("2", "1", "0", "1")])
    assert apply_update(book, parse(frame, 1.0)[0], Rules()).startswith("malformed")
    assert not book.valid


def test_okx_adapter_subscribes_book_and_funding_and_resyncs_by_resubscribing():
    adapter = OkxFeedAdapter(FeedSettings())
    (spec,) = adapter.connections("wss://ws.okx.com:8443/ws/v5/public", ["BTC-USDT-SWAP", "ETH-USDT-SWAP"])
    args = orjson.loads(spec.subscribe_frames[0])["args"]
    assert {"channel": "books", "instId": "ETH-USDT-SWAP"} in args
    assert {"channel": "funding-rate", "instId": "BTC-USDT-SWAP"} in args
    assert spec.symbols == ["BTC-USDT-SWAP", "ETH-USDT-SWAP"]
    assert adapter.keep_raw and adapter.ping_frame() == "ping" and adapter.ping_interval_s == 20
    unsub, sub = (orjson.loads(f) for f in adapter.resync_frames("BTC-USDT-SWAP"))
    assert unsub["op"] == "unsubscribe" and sub["op"] == "subscribe"
    assert sub["args"] == [{"channel": "books", "instId": "BTC-USDT-SWAP"}]
    books5 = OkxFeedAdapter(FeedSettings(okx_book_channel="books5"))
    assert not books5.keep_raw and "books5" in books5.resync_frames("BTC-USDT-SWAP")[1]
