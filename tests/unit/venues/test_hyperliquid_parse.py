"""Hyperliquid parser over recorded l2Book snapshots and activeAssetCtx funding pushes."""

from __future__ import annotations

import json
from decimal import Decimal

import orjson
import pytest

from perpbot.book.l2 import L2Book
from perpbot.book.sync import apply_update
from perpbot.core.events import BookUpdate, FundingUpdate, ParseError, Pong, SubscribeAck, VenueError
from perpbot.core.numbers import to_scaled
from perpbot.settings import FeedSettings
from perpbot.venues.hyperliquid.feed import HyperliquidFeedAdapter
from perpbot.venues.hyperliquid.parse import Rules, parse


def test_hyperliquid_recorded_l2book_parses_to_the_right_levels(shared_fixtures):
    rows = json.loads((shared_fixtures / "hyperliquid" / "recorded_ccxt_l2Book_BTC_2026-08-12.json").read_text())
    events = [e for row in rows for e in parse(orjson.dumps(row), 1.0)]
    assert isinstance(events[0], SubscribeAck) and "l2Book:BTC" in events[0].detail
    books = [e for e in events if isinstance(e, BookUpdate)]
    assert len(books) == 2 and all(b.snapshot for b in books)
    assert books[0].seq == books[0].exchange_ts_ms == 1786539643751
    book = L2Book("hyperliquid", "BTC")
    rules = Rules()
    for update, row in zip(books, rows[1:]):
        assert apply_update(book, update, rules) is None and book.valid
        bids, asks = row["data"]["levels"]
        assert len(book.bids) == len(bids) == 20 and len(book.asks) == len(asks) == 20
        assert book.best_bid() == to_scaled(bids[0]["px"]) and book.best_ask() == to_scaled(asks[0]["px"])
        for level in bids[:3] + asks[-3:]:
            side = book.bids if level in bids else book.asks
            assert side[to_scaled(level["px"])] == to_scaled(level["sz"])
    assert book.updates == 2


def test_hyperliquid_first_recorded_snapshot_best_bid_by_value(shared_fixtures):
    rows = json.loads((shared_fixtures / "hyperliquid" / "recorded_ccxt_l2Book_BTC_2026-08-12.json").read_text())
    book = L2Book("hyperliquid", "BTC")
    assert apply_update(book, parse(orjson.dumps(rows[1]), 1.0)[0], Rules()) is None
    assert book.best_bid() == to_scaled("64094") and book.bids[to_scaled("64094.0")] == to_scaled("12.29409")
    assert book.best_ask() == to_scaled("64095") and book.asks[to_scaled("64095.0")] == to_scaled("2.37411")


def test_hyperliquid_active_asset_ctx_is_hourly_funding_with_mark(shared_fixtures):
    rows = json.loads((shared_fixtures / "hyperliquid" / "recorded_ccxt_activeAssetCtx_BTC_2026-08-12.json").read_text())
    (funding,) = parse(orjson.dumps(rows[1]), 1786540000.5)
    assert isinstance(funding, FundingUpdate)
    assert funding.rate == Decimal("0.0000125") and funding.interval_hours == 1.0
    assert funding.hourly_rate == Decimal("0.0000125")
    assert funding.mark_price == Decimal("64040.0")
    assert funding.next_funding_ms == 1786543200000  # next whole hour after receipt


def test_hyperliquid_pong_greeting_and_error():
    assert isinstance(parse('{"channel":"pong"}', 2.0)[0], Pong)
    assert parse("Websocket connection established.", 2.0) == []
    (error,) = parse('{"channel":"error","data":"Invalid subscription"}', 2.0)
    assert isinstance(error, VenueError) and "Invalid" in error.message


@pytest.mark.parametrize(
    "frame",
    [
        b'{"channel":"l2Book","data":{"coin":"BTC","time":1,"levels":[[{"px":"1","sz":"1","n":1}]',
        b'{"channel":"l2Book","data":{"coin":"BTC","time":1,"levels":[[{"px":1.0,"sz":"1","n":1}],[]]}}',
        b'{"channel":"l2Book","data":{"coin":"BTC","time":"1","levels":[[],[]]}}',
        b'{"channel":"l2Book","data":{"coin":"BTC","time":1,"levels":[[]]}}',
        b'{"channel":"l2Book","data":{"time":1,"levels":[[],[]]}}',
        b'{"channel":"activeAssetCtx","data":{"coin":"BTC","ctx":{"funding":0.0000125,"markPx":"1"}}}',
        b'{"channel":"activeAssetCtx","data":{"coin":"BTC","ctx":{"markPx":"1"}}}',
        b'{"data":{}}',
        b"Websocket connection",
    ],
)
def test_hyperliquid_malformed_frames_raise_parse_error(frame):
    with pytest.raises(ParseError):
        parse(frame, 1.0)


def test_hyperliquid_adapter_subscribes_book_and_funding_per_coin():
    adapter = HyperliquidFeedAdapter(FeedSettings())
    (spec,) = adapter.connections("wss://api.hyperliquid.xyz/ws", ["BTC", "ETH"])
    frames = [orjson.loads(f) for f in spec.subscribe_frames]
    assert {"method": "subscribe", "subscription": {"type": "l2Book", "coin": "ETH"}} in frames
    assert {"method": "subscribe", "subscription": {"type": "activeAssetCtx", "coin": "BTC"}} in frames
    assert orjson.loads(adapter.ping_frame()) == {"method": "ping"} and adapter.ping_interval_s == 50
    unsub, sub = (orjson.loads(f) for f in adapter.resync_frames("BTC"))
    assert unsub["method"] == "unsubscribe" and sub["subscription"] == {"type": "l2Book", "coin": "BTC"}
