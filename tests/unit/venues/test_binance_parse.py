"""Binance USD-M parser and snapshot/bridge/pu rules over the four recorded 2021 depth sync scenarios."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from perpbot.book.l2 import L2Book
from perpbot.book.sync import apply_update
from perpbot.core.events import FundingUpdate, ParseError, SubscribeAck, VenueError
from perpbot.core.numbers import to_scaled
from perpbot.settings import FeedSettings
from perpbot.venues.binance.feed import BinanceFeedAdapter
from perpbot.venues.binance.parse import Rules, parse, parse_snapshot


def _scenarios(fixtures: Path) -> list[Path]:
    files = sorted((fixtures / "binance").glob("depth_sync_scenario_*.json"))
    assert len(files) == 4
    return files


def _symbol(path: Path) -> str:
    return path.name.split("_")[3]


def _independent_best(rows: list[dict]) -> tuple[Decimal, Decimal]:
    """The documented procedure written out plainly with Decimal dicts, no shared code."""
    bids: dict[Decimal, Decimal] = {}
    asks: dict[Decimal, Decimal] = {}
    last = None
    for row in rows:
        msg = row["msg"]
        if row["dir"] == "rest":
            bids = {Decimal(p): Decimal(q) for p, q in msg["bids"]}
            asks = {Decimal(p): Decimal(q) for p, q in msg["asks"]}
            last = msg["lastUpdateId"]
            continue
        if last is None:
            continue
        event = msg["data"]
        if event["u"] < last:
            continue
        last = event["u"]
        for side, levels in ((bids, event["b"]), (asks, event["a"])):
            for p, q in levels:
                if Decimal(q) == 0:
                    side.pop(Decimal(p), None)
                else:
                    side[Decimal(p)] = Decimal(q)
    return max(bids), min(asks)


def _replay(path: Path, skip_index: int | None = None) -> tuple[L2Book, list[str], int]:
    rows = json.loads(path.read_text())
    book = L2Book("binance", _symbol(path))
    rules = Rules()
    reasons: list[str] = []
    applied_after_sync = 0
    deltas_seen = 0
    for row in rows:
        if row["dir"] == "rest":
            update = parse_snapshot(orjson.dumps(row["msg"]), book.symbol, row["recv_ts"])
            # What the supervisor does: mark before applying the REST snapshot.
            book.awaiting_first_delta = True
            assert apply_update(book, update, rules) is None
            assert not book.valid
            continue
        if row["dir"] != "recv":
            continue
        (update,) = parse(orjson.dumps(row["msg"]), row["recv_ts"])
        if book.seq is not None and not book.awaiting_first_delta:
            deltas_seen += 1
            if deltas_seen == skip_index:
                continue  # simulate a lost frame
        updates_before = book.updates
        reason = apply_update(book, update, rules)
        if reason:
            reasons.append(reason)
        elif book.updates > updates_before and book.valid:
            applied_after_sync += 1
    return book, reasons, applied_after_sync


def test_binance_four_recorded_scenarios_sync_without_gap_and_match_independent_best_prices(shared_fixtures):
    for path in _scenarios(shared_fixtures):
        book, reasons, applied = _replay(path)
        assert reasons == [], path.name
        assert book.valid and not book.awaiting_first_delta
        assert applied > 20, path.name
        best_bid, best_ask = _independent_best(json.loads(path.read_text()))
        assert book.best_bid() == to_scaled(str(best_bid)), path.name
        assert book.best_ask() == to_scaled(str(best_ask)), path.name


def test_binance_missing_event_after_sync_is_a_pu_gap(shared_fixtures):
    for path in _scenarios(shared_fixtures):
        book, reasons, _ = _replay(path, skip_index=5)
        assert reasons and reasons[0].startswith("binance pu"), path.name
        assert not book.valid


def test_binance_first_delta_that_does_not_bridge_the_snapshot_is_a_gap():
    book = L2Book("binance", "BTCUSDT")
    rules = Rules()
    snap = parse_snapshot(b'{"lastUpdateId":100,"E":1,"T":1,"bids":[["10.0","1"]],"asks":[["11.0","1"]]}', "BTCUSDT", 1.0)
    book.awaiting_first_delta = True
    apply_update(book, snap, rules)
    old = b'{"e":"depthUpdate","E":2,"T":2,"s":"BTCUSDT","U":90,"u":99,"pu":89,"b":[["10.0","5"]],"a":[]}'
    assert apply_update(book, parse(old, 2.0)[0], rules) is None  # dropped: u < lastUpdateId
    assert book.bids[to_scaled("10.0")] == to_scaled("1") and not book.valid
    late = b'{"e":"depthUpdate","E":3,"T":3,"s":"BTCUSDT","U":105,"u":110,"pu":104,"b":[],"a":[]}'
    assert apply_update(book, parse(late, 3.0)[0], rules) == "binance first delta does not bridge snapshot"
    assert not book.valid


def test_binance_depth_update_fields_map_to_sequence_fields(shared_fixtures):
    doc = (shared_fixtures / "binance" / "doc_depthUpdate_example_usdm.json").read_bytes()
    (update,) = parse(doc, 1.0)
    assert (update.seq, update.prev_seq, update.first_seq) == (160, 149, 157)
    assert update.snapshot is False and update.bids == [["0.0024", "10"]]


def test_binance_mark_price_update_is_eight_hour_funding_unless_configured(shared_fixtures):
    doc = (shared_fixtures / "binance" / "doc_markPriceUpdate_example_usdm.json").read_bytes()
    (funding,) = parse(doc, 1.0)
    assert isinstance(funding, FundingUpdate)
    assert funding.rate == Decimal("0.00038167") and funding.interval_hours == 8.0
    assert funding.mark_price == Decimal("11794.15000000") and funding.next_funding_ms == 1562306400000
    wrapped = orjson.dumps({"stream": "btcusdt@markPrice@1s", "data": orjson.loads(doc)})
    (four_hourly,) = BinanceFeedAdapter(FeedSettings(), funding_hours={"BTCUSDT": 4}).parse(wrapped, 1.0)
    assert four_hourly.interval_hours == 4.0
    assert four_hourly.hourly_rate == Decimal("0.00038167") / Decimal("4.0")


def test_binance_subscription_result_and_error_frames():
    assert isinstance(parse(b'{"result":null,"id":1}', 1.0)[0], SubscribeAck)
    (error,) = parse(b'{"error":{"code":2,"msg":"Invalid request"},"id":1}', 1.0)
    assert isinstance(error, VenueError) and error.code == "2"


@pytest.mark.parametrize(
    "frame",
    [
        b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","s":"BTCUSDT","U":1,',
        b'{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":2,"b":[],"a":[]}',
        b'{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":"x","pu":0,"b":[],"a":[]}',
        b'{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":2,"pu":0,"b":[["1.0",2]],"a":[]}',
        b'{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":2,"pu":0,"b":{"1.0":"2"},"a":[]}',
        b'{"e":"markPriceUpdate","E":1,"s":"BTCUSDT","p":"1","r":null,"T":2}',
        b'{"stream":"x","data":[1]}',
        b'{"hello":1}',
        b'"text"',
    ],
)
def test_binance_malformed_frames_raise_parse_error(frame):
    with pytest.raises(ParseError):
        parse(frame, 1.0)


@pytest.mark.parametrize(
    "body",
    [b'{"lastUpdateId":"1","bids":[],"asks":[]}', b'{"code":-1121,"msg":"Invalid symbol."}', b'{"lastUpdateId":1,"bids":[["1"]],"asks":[]}', b"<html>"],
)
def test_binance_malformed_rest_snapshot_raises_parse_error(body):
    with pytest.raises(ParseError):
        parse_snapshot(body, "BTCUSDT", 1.0)


def test_binance_adapter_opens_public_depth_and_market_funding_connections():
    adapter = BinanceFeedAdapter(FeedSettings())
    public, market = adapter.connections("wss://fstream.binance.com", ["BTCUSDT", "ETHUSDT"])
    assert public.url == "wss://fstream.binance.com/public/stream?streams=btcusdt@depth@100ms/ethusdt@depth@100ms"
    assert market.url == "wss://fstream.binance.com/market/stream?streams=btcusdt@markPrice@1s/ethusdt@markPrice@1s"
    assert public.symbols == ["BTCUSDT", "ETHUSDT"] and market.symbols == []
    assert adapter.ping_frame() is None and adapter.ping_interval_s == 60 and adapter.rest_snapshot
    assert adapter.snapshot_url("http://127.0.0.1:9", "BTCUSDT") == "http://127.0.0.1:9/fapi/v1/depth?symbol=BTCUSDT&limit=1000"
    update = adapter.parse_snapshot(b'{"lastUpdateId":7,"E":5,"bids":[["1","2"]],"asks":[["3","4"]]}', "BTCUSDT", 1.0)
    assert update.snapshot and update.seq == 7 and update.exchange_ts_ms == 5
