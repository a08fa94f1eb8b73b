"""Fuzz the four venue parsers + apply_update with random bytes, random JSON and mutated recorded frames."""

from __future__ import annotations

import copy

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from perpbot.core.events import ParseError
from perpbot.settings import FeedSettings
from perpbot.venues.binance.parse import parse_snapshot
from perpbot.venues.registry import feed_adapter

from fuzz_mutations import (
    VENUES, assert_book_sane, dumps, feed_frame, fuzz_settings, json_values, mutated_frame,
    parse_only_raises_parse_error, recorded_frames, top_fingerprint,
)

FRAMES = {venue: recorded_frames(venue) for venue in VENUES}


def _stream_states(venue: str) -> list[tuple[dict, bytes, dict]]:
    """(books before frame k, genuine frame k, books after frame k) along the recorded frames."""
    adapter = feed_adapter(venue, FeedSettings())
    books: dict = {}
    states = []
    for frame in FRAMES[venue]:
        before = copy.deepcopy(books)
        try:
            feed_frame(adapter, books, frame)
        except ParseError:
            continue
        states.append((before, frame, copy.deepcopy(books)))
    return states


STATES = {venue: _stream_states(venue) for venue in VENUES}


@pytest.mark.parametrize("venue", VENUES)
@fuzz_settings(600)
@given(frame=st.one_of(st.binary(max_size=300), st.text(max_size=200)))
def test_random_bytes_and_text_only_ever_raise_parse_error(venue, frame):
    adapter = feed_adapter(venue, FeedSettings())
    books: dict = {}
    parse_only_raises_parse_error(adapter, books, frame)
    for book in books.values():
        assert_book_sane(book)


@pytest.mark.parametrize("venue", VENUES)
@fuzz_settings(600)
@given(value=json_values())
def test_random_json_documents_only_ever_raise_parse_error(venue, value):
    adapter = feed_adapter(venue, FeedSettings())
    books: dict = {}
    parse_only_raises_parse_error(adapter, books, dumps(value))


def _carries_checksum(frame: bytes) -> bool:
    """True when some data item of an OKX frame carries a real (non-zero) CRC32."""
    message = orjson.loads(frame)
    return any(isinstance(item, dict) and item.get("checksum") not in (None, 0) for item in message.get("data", ()))


@pytest.mark.parametrize("venue", VENUES)
@fuzz_settings(1000)
@given(data=st.data())
def test_mutated_recorded_frame_on_a_synced_book_raises_only_parse_error_and_leaves_a_sane_book(venue, data):
    states = STATES[venue]
    index = data.draw(st.integers(0, len(states) - 1))
    before, genuine, after = states[index]
    books = copy.deepcopy(before)
    frame = data.draw(mutated_frame([genuine]))
    adapter = feed_adapter(venue, FeedSettings())
    parse_only_raises_parse_error(adapter, books, frame)
    for book in books.values():
        assert_book_sane(book)
    if venue == "okx" and _carries_checksum(genuine):
        # Checksummed: a valid book's top 25 (what the CRC covers) is the state before or
        # after the genuine frame, never anything else. (A books5 snapshot, or a books frame
        # with checksum 0, carries nothing that could tell a dropped or altered level from a
        # genuine one; the long fuzz run found exactly that with a books5 frame missing a level.)
        for symbol, book in books.items():
            if book.valid and symbol in after:
                allowed = {top_fingerprint(after[symbol])}
                if symbol in before:
                    allowed.add(top_fingerprint(before[symbol]))
                assert top_fingerprint(book) in allowed, f"valid OKX book with wrong top levels after {frame[:200]!r}"


@fuzz_settings(500)
@given(data=st.data())
def test_mutated_binance_rest_snapshot_raises_only_parse_error(data):
    bodies = [f for f in FRAMES["binance"] if b"lastUpdateId" in f]
    assert bodies
    body = data.draw(mutated_frame(bodies))
    try:
        update = parse_snapshot(body, "SUSHIUSDT", 1.0)
    except ParseError:
        return
    assert update.snapshot and isinstance(update.seq, int)


def test_okx_superscript_digit_timestamp_is_a_parse_error_not_a_crash():
    # Regression: "²".isdigit() is True but int("²") raises a bare ValueError.
    frame = orjson.dumps({"arg": {"channel": "books", "instId": "X"}, "action": "snapshot",
                          "data": [{"bids": [], "asks": [], "ts": "\u00b2"}]})
    with pytest.raises(ParseError):
        feed_adapter("okx", FeedSettings()).parse(frame, 1.0)


@pytest.mark.parametrize("ts", ["9" * 5000, "9" * 19, "1" * 4301], ids=["5000-digits", "19-digits", "4301-digits"])
@pytest.mark.parametrize("action", ["snapshot", "update"])
def test_okx_timestamp_beyond_64_bits_is_a_parse_error_on_every_path(ts, action):
    # Regression (long fuzz run): a 5,000-digit ts passed isdigit() and int() raised a bare
    # ValueError past Python's int-string limit, on the typed, fast and generic paths alike.
    adapter = feed_adapter("okx", FeedSettings())
    books: dict = {}
    snapshot = orjson.dumps({"arg": {"channel": "books", "instId": "X"}, "action": "snapshot",
                             "data": [{"bids": [["99", "1", "0", "1"]], "asks": [["101", "1", "0", "1"]],
                                       "ts": "1", "seqId": 1, "prevSeqId": -1, "checksum": 0}]})
    feed_frame(adapter, books, snapshot)
    assert books["X"].valid
    frame = orjson.dumps({"arg": {"channel": "books", "instId": "X"}, "action": action,
                          "data": [{"bids": [["100", "1", "0", "1"]], "asks": [], "ts": ts, "seqId": 2,
                                    "prevSeqId": 1, "checksum": 0}]})
    with pytest.raises(ParseError):
        feed_frame(adapter, books, frame)
    with pytest.raises(ParseError):
        adapter.parse(frame, 1.0)
    assert books["X"].best_bid() == 99 * 10**9  # the corrupt frame changed nothing


@pytest.mark.parametrize("hours", ["1" * 400, str(2**64), "169"])
def test_bybit_funding_interval_beyond_range_is_a_parse_error_not_an_overflow(hours):
    # Regression (long fuzz run): a 400-digit fundingIntervalHour reached float() -> OverflowError.
    frame = orjson.dumps({"topic": "tickers.BTCUSDT", "type": "snapshot", "ts": 1, "cs": 1,
                          "data": {"symbol": "BTCUSDT", "fundingIntervalHour": hours, "fundingRate": "0.0001"}})
    with pytest.raises(ParseError):
        feed_adapter("bybit", FeedSettings()).parse(frame, 1.0)


@pytest.mark.parametrize("venue,frame", [
    ("okx", {"arg": {"channel": "funding-rate", "instId": "X"}, "data": [
        {"instId": "X", "fundingRate": "0.0001", "fundingTime": "1", "nextFundingTime": "9" * 400, "ts": "1"}]}),
    ("binance", {"e": "depthUpdate", "s": "X", "b": [], "a": [], "u": "9" * 30, "pu": 1, "U": 1, "E": 1}),
], ids=["okx-next-funding-time", "binance-update-id"])
def test_integer_fields_beyond_64_bits_are_parse_errors(venue, frame):
    with pytest.raises(ParseError):
        feed_adapter(venue, FeedSettings()).parse(orjson.dumps(frame), 1.0)


@pytest.mark.parametrize("size", ["-5", "+5", " 5", "1_0", "\u0661", "5e0"])
def test_bybit_snapshot_with_a_non_plain_size_never_makes_a_valid_book(size):
    # Regression: to_scaled went through int(), which accepts signs, spaces, "_" and
    # non-ASCII digits, so a negative size could sit in a valid book.
    adapter = feed_adapter("bybit", FeedSettings())
    books: dict = {}
    frame = orjson.dumps({"topic": "orderbook.50.X", "type": "snapshot", "ts": 1,
                          "data": {"s": "X", "b": [["100", size]], "a": [["101", "1"]], "u": 5}})
    reasons = feed_frame(adapter, books, frame)
    assert reasons and reasons[0].startswith("malformed")
    assert not books["X"].valid


@pytest.mark.parametrize("seq", [" 12", "+12", "1_2", "\u0661\u0662"])
def test_binance_sequence_field_as_a_non_plain_digit_string_is_a_parse_error(seq):
    frame = orjson.dumps({"e": "depthUpdate", "s": "X", "b": [], "a": [], "u": seq, "pu": 1, "U": 1, "E": 1})
    with pytest.raises(ParseError):
        feed_adapter("binance", FeedSettings()).parse(frame, 1.0)


@pytest.mark.parametrize("venue", VENUES)
def test_frame_that_is_not_utf8_is_a_parse_error_for_every_venue(venue):
    # Regression: OKX's typed msgspec fast path let UnicodeDecodeError escape.
    frame = b'{"event":"\xf3ubscribe","arg":{"channel":"books","instId":"BTC-USD-220527"}}'
    with pytest.raises(ParseError):
        feed_adapter(venue, FeedSettings()).parse(frame, 1.0)
