"""Bybit v5 linear parser and u-continuity rules over recorded orderbook.50 and tickers frames."""

from __future__ import annotations

import json
from decimal import Decimal

import orjson
import pytest

from perpbot.book.l2 import L2Book
from perpbot.book.sync import apply_update
from perpbot.core.events import FundingUpdate, ParseError, Pong, SubscribeAck, VenueError
from perpbot.core.numbers import to_scaled
from perpbot.settings import FeedSettings
from perpbot.venues.bybit.feed import BybitFeedAdapter
from perpbot.venues.bybit.parse import Rules, parse


def _recorded(shared_fixtures) -> list[dict]:
    return json.loads((shared_fixtures / "bybit" / "recorded_ccxt_linear_orderbook50_BTCUSDT_2026-08-12.json").read_text())


def test_bybit_recorded_snapshot_and_delta_build_the_right_levels(shared_fixtures):
    snapshot_msg, delta_msg = _recorded(shared_fixtures)
    (snapshot,) = parse(orjson.dumps(snapshot_msg), 1.0)
    (delta,) = parse(orjson.dumps(delta_msg), 1.1)
    assert snapshot.snapshot and snapshot.seq == 53935309 and len(snapshot.bids) == 50 and len(snapshot.asks) == 50
    assert not delta.snapshot and delta.seq == 53935310
    book = L2Book("bybit", "BTCUSDT")
    rules = Rules()
    assert apply_update(book, snapshot, rules) is None and book.valid
    assert book.bids[to_scaled("63982.70")] == to_scaled("6.408")
    assert book.bids[to_scaled("63980.90")] == to_scaled("2.345")
    assert apply_update(book, delta, rules) is None and book.valid and book.seq == 53935310
    # Every level of the delta now reads as sent (or is gone when sent as 0).
    for side, levels in ((book.bids, delta_msg["data"]["b"]), (book.asks, delta_msg["data"]["a"])):
        for price, size in levels:
            if Decimal(size) == 0:
                assert to_scaled(price) not in side
            else:
                assert side[to_scaled(price)] == to_scaled(size)
    assert book.best_bid() < book.best_ask()


def test_bybit_skipped_u_is_a_gap(shared_fixtures):
    snapshot_msg, delta_msg = _recorded(shared_fixtures)
    book = L2Book("bybit", "BTCUSDT")
    apply_update(book, parse(orjson.dumps(snapshot_msg), 1.0)[0], Rules())
    skipped = dict(delta_msg, data=dict(delta_msg["data"], u=53935311))
    reason = apply_update(book, parse(orjson.dumps(skipped), 1.1)[0], Rules())
    assert reason == "bybit u gap: 53935311 after 53935309"
    assert not book.valid


def test_bybit_delta_with_u_1_resets_the_book(shared_fixtures):
    snapshot_msg, _ = _recorded(shared_fixtures)
    book = L2Book("bybit", "BTCUSDT")
    apply_update(book, parse(orjson.dumps(snapshot_msg), 1.0)[0], Rules())
    restart = {"topic": "orderbook.50.BTCUSDT", "type": "delta", "ts": 2,
               "data": {"s": "BTCUSDT", "b": [["50000.0", "1.5"]], "a": [["50001.0", "2"]], "u": 1, "seq": 9}}
    (update,) = parse(orjson.dumps(restart), 2.0)
    assert update.snapshot
    assert apply_update(book, update, Rules()) is None and book.valid
    assert list(book.bids.items()) == [(to_scaled("50000.0"), to_scaled("1.5"))]
    assert book.seq == 1


def test_bybit_repeated_u_is_dropped_not_a_gap(shared_fixtures):
    snapshot_msg, delta_msg = _recorded(shared_fixtures)
    book = L2Book("bybit", "BTCUSDT")
    apply_update(book, parse(orjson.dumps(snapshot_msg), 1.0)[0], Rules())
    apply_update(book, parse(orjson.dumps(delta_msg), 1.1)[0], Rules())
    assert apply_update(book, parse(orjson.dumps(delta_msg), 1.2)[0], Rules()) is None
    assert book.valid and book.seq == 53935310


def test_bybit_ticker_delta_keeps_last_interval_in_the_adapter(shared_fixtures):
    rows = json.loads((shared_fixtures / "bybit" / "recorded_ccxt_linear_tickers_BTCUSDT_2026-08-12.json").read_text())
    adapter = BybitFeedAdapter(FeedSettings())
    (funding,) = adapter.parse(orjson.dumps(rows[0]), 1.0)
    assert isinstance(funding, FundingUpdate)
    assert funding.rate == Decimal("0.0000544") and funding.interval_hours == 8.0
    assert funding.next_funding_ms == 1786550400000 and funding.mark_price == Decimal("63958.60")
    assert adapter.parse(orjson.dumps(rows[1]), 1.1) == []  # indexPrice only: no funding news
    rate_only = {"topic": "tickers.BTCUSDT", "type": "delta", "cs": 1, "ts": 1786540398000,
                 "data": {"symbol": "BTCUSDT", "fundingRate": "0.0001"}}
    (later,) = adapter.parse(orjson.dumps(rate_only), 1.2)
    assert later.rate == Decimal("0.0001") and later.interval_hours == 8.0 and later.next_funding_ms == 1786550400000
    # Another adapter object starts from nothing: state is per adapter, not global.
    (fresh,) = BybitFeedAdapter(FeedSettings()).parse(orjson.dumps(rate_only), 1.2)
    assert fresh.next_funding_ms is None


def test_bybit_pong_ack_and_error_frames(shared_fixtures):
    blocks = json.loads((shared_fixtures / "bybit" / "doc_connect_page_json_blocks.json").read_text())["all_json_blocks_in_page"]
    pongs = [b for b in blocks if b.get("op") in ("ping", "pong") and ("ret_msg" in b or b.get("op") == "pong")]
    assert pongs and all(isinstance(parse(orjson.dumps(b), 1.0)[0], Pong) for b in pongs)
    ack = b'{"success":true,"ret_msg":"","conn_id":"x","req_id":"","op":"subscribe"}'
    assert isinstance(parse(ack, 1.0)[0], SubscribeAck)
    (error,) = parse(b'{"success":false,"ret_msg":"error:handler not found","conn_id":"x","op":"subscribe"}', 1.0)
    assert isinstance(error, VenueError) and "handler" in error.message


@pytest.mark.parametrize(
    "frame",
    [
        b'{"topic":"orderbook.50.BTCUSDT","type":"snapshot","ts":1,"data":{"s":"BTCUSDT","b":[["1","1"]],',
        b'{"topic":"orderbook.50.BTCUSDT","type":"snapshot","ts":1,"data":{"s":"BTCUSDT","b":[],"a":[]}}',
        b'{"topic":"orderbook.50.BTCUSDT","type":"snapshot","ts":1,"data":{"s":"BTCUSDT","b":[[1,"1"]],"a":[],"u":2}}',
        b'{"topic":"orderbook.50.BTCUSDT","type":"weird","ts":1,"data":{"s":"BTCUSDT","b":[],"a":[],"u":2}}',
        b'{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":"1","data":{"s":"BTCUSDT","b":[],"a":[],"u":2}}',
        b'{"topic":"tickers.BTCUSDT","type":"snapshot","ts":1,"data":{"symbol":"BTCUSDT","fundingRate":"abc"}}',
        b'{"nothing":true}',
    ],
)
def test_bybit_malformed_frames_raise_parse_error(frame):
    with pytest.raises(ParseError):
        parse(frame, 1.0)


def test_bybit_adapter_subscribes_configured_depth_and_tickers():
    adapter = BybitFeedAdapter(FeedSettings(bybit_depth=200))
    (spec,) = adapter.connections("wss://stream.bybit.com/v5/public/linear", ["BTCUSDT", "ETHUSDT"])
    assert orjson.loads(spec.subscribe_frames[0])["args"] == [
        "orderbook.200.BTCUSDT", "tickers.BTCUSDT", "orderbook.200.ETHUSDT", "tickers.ETHUSDT"]
    assert orjson.loads(adapter.ping_frame()) == {"op": "ping"} and adapter.ping_interval_s == 20
    unsub, sub = (orjson.loads(f) for f in adapter.resync_frames("ETHUSDT"))
    assert (unsub["op"], sub["op"], sub["args"]) == ("unsubscribe", "subscribe", ["orderbook.200.ETHUSDT"])
