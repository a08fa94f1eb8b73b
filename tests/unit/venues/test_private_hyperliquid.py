"""Hyperliquid user channels: every frame of ../shared/fixtures/hyperliquid/private_ws_frames.json
parsed (the recorded liquidation fill -> VenueFill + MarginEvent), the recorded /info objects
(userFunding deltas, clearinghouseState) pushed through their WS channels, the docs-built frames
(orderUpdates, userFills snapshot, userEvents variants, controls), malformed frames refused, and
the subscribe frames."""

from __future__ import annotations

import copy
import json
from decimal import Decimal

import orjson
import pytest

from perpbot.core.events import ParseError
from perpbot.core.private_events import (
    BalanceUpdate,
    FundingEvent,
    MarginEvent,
    OrderUpdate,
    PositionUpdate,
    PrivateContext,
    StreamControl,
    VenueFill,
)
from perpbot.venues.hyperliquid.private import parse_private, subscribe_frames
from testkit import with_changes

CTX = PrivateContext("hyperliquid", {}, quote="USDC")
USER = "0x5e9ee1089755c3435139848e47e6635505d5a13a"


def _fixture(shared_fixtures, name: str) -> dict:
    return json.loads((shared_fixtures / "hyperliquid" / name).read_text())


def _cassette(shared_fixtures, name: str):
    (body,) = [c["response_body"] for c in _fixture(shared_fixtures, "recorded_sdk_cassettes_info_responses.json")["cassettes"]
               if c["name"] == name]
    return body


def _parse(obj: object, recv_ts: float = 1781528066.5) -> list:
    return parse_private(orjson.dumps(obj), recv_ts, CTX)


def _liquidation_fill(shared_fixtures) -> dict:
    (frame,) = [f["frame"] for f in _fixture(shared_fixtures, "private_ws_frames.json")["frames"]
                if f["channel"].startswith("user (userEvents)")]
    return copy.deepcopy(frame["data"]["fills"][0])


def test_every_fixture_frame_parses_to_the_expected_events(shared_fixtures):
    frames = _fixture(shared_fixtures, "private_ws_frames.json")["frames"]
    assert len(frames) == 2
    for entry in frames:
        events = _parse(entry["frame"])
        if entry["channel"].startswith("post"):
            assert events == []  # an order action's answer: order entry's, not the stream's
            continue
        fill, margin = events
        assert isinstance(fill, VenueFill) and isinstance(margin, MarginEvent)
        assert (fill.symbol, fill.trade_id, fill.venue_order_id, fill.client_order_id) == (
            "BTC", "745210434703679", "55030848197", "0xe8d5fd7ebbb4c3cff4d1803472a11463")
        assert (fill.side, fill.qty, fill.price, fill.fee, fill.fee_currency) == (
            "sell", Decimal("0.001"), Decimal("66653.0"), Decimal("0.009997"), "USDC")
        assert (fill.liquidity, fill.ts_ms, fill.snapshot) == ("maker", 1781528065899, False)  # crossed false
        assert (margin.symbol, margin.kind, margin.ts_ms) == ("BTC", "liquidation", 1781528065899)
        assert "liquidatedUser=0x360878d351f05975e25f1807a27895e1e5e004fb" in margin.detail
        assert "method=market" in margin.detail


def test_user_fills_channel_and_snapshot(shared_fixtures):
    fill = _liquidation_fill(shared_fixtures)
    del fill["liquidation"]
    taker = dict(fill, tid=745210434703680, crossed=True, side="B", cloid=None, fee="-0.0001")
    (snap_a, snap_b) = _parse({"channel": "userFills", "data": {"user": USER, "isSnapshot": True, "fills": [fill, taker]}})
    assert snap_a.snapshot and snap_b.snapshot
    assert (snap_b.side, snap_b.liquidity, snap_b.client_order_id, snap_b.fee) == ("buy", "taker", None, Decimal("-0.0001"))
    (live,) = _parse({"channel": "userFills", "data": {"user": USER, "fills": [fill]}})
    assert not live.snapshot and live.key == ("hyperliquid", "BTC", "745210434703679")
    # A replayed liquidation fill (snapshot) is history: no fresh MarginEvent.
    liq = _liquidation_fill(shared_fixtures)
    assert [type(e) for e in _parse({"channel": "userFills", "data": {"user": USER, "isSnapshot": True, "fills": [liq]}})] == [VenueFill]


def test_recorded_2023_fills_without_tid_are_refused(shared_fixtures):
    # The 2023 /info fills predate `tid` (and feeToken); the WS docs list tid on every fill, and a
    # fill without its trade id could not be deduplicated.
    old = _cassette(shared_fixtures, "test_get_user_fills")[:3]
    with pytest.raises(ParseError, match="tid"):
        _parse({"channel": "userFills", "data": {"user": USER, "fills": old}})


def test_recorded_funding_deltas_through_userFundings(shared_fixtures):
    deltas = _cassette(shared_fixtures, "test_user_funding_history_with_end_time")
    fundings = [{"time": d["time"], **{k: v for k, v in d["delta"].items() if k != "type"}} for d in deltas]
    events = _parse({"channel": "userFundings", "data": {"user": USER, "isSnapshot": True, "fundings": fundings}})
    assert len(events) == 13 and all(isinstance(e, FundingEvent) for e in events)
    by_coin = {e.symbol: e for e in events}
    # A long paying positive funding (AVAX szi +100.86, rate +0.0001) shows usdc < 0; a short
    # receiving it (ARB szi -6091, rate +0.0001) usdc > 0: usdc is already + received.
    assert by_coin["AVAX"].amount == Decimal("-0.572915")
    assert by_coin["ARB"] == FundingEvent("hyperliquid", "ARB", "ARB:1681948800000", Decimal("2.694388"),
                                          1681948800000, 1781528066.5)
    assert len({e.payment_id for e in events}) == 13


def test_user_events_funding_gets_the_same_payment_id_as_userFundings():
    funding = {"coin": "ETH", "usdc": "3.414774", "szi": "-5.8509", "fundingRate": "0.0001", "nSamples": None}
    # userEvents' funding has no time: pushed a few seconds after the hour it settles.
    (event,) = _parse({"channel": "user", "data": {"funding": funding}}, recv_ts=1681948803.2)
    (same,) = _parse({"channel": "userFundings", "data": {"user": USER, "fundings": [dict(funding, time=1681948800000)]}})
    assert event.payment_id == same.payment_id == "ETH:1681948800000"
    assert event.amount == Decimal("3.414774") and event.ts_ms == 1681948803200


def test_user_events_liquidation_and_non_user_cancel():
    liquidation = {"lid": 12345, "liquidator": "0x" + "1" * 40, "liquidated_user": USER,
                   "liquidated_ntl_pos": "1500.5", "liquidated_account_value": "60.25"}
    (event,) = _parse({"channel": "user", "data": {"liquidation": liquidation}}, recv_ts=1700000000.0)
    assert isinstance(event, MarginEvent)
    assert (event.symbol, event.kind, event.ts_ms) == (None, "liquidation", 1700000000000)
    assert "lid=12345" in event.detail and f"liquidated_user={USER}" in event.detail
    # [{coin, oid}] is too little for an OrderUpdate; orderUpdates carries the same cancel in full.
    assert _parse({"channel": "user", "data": {"nonUserCancel": [{"coin": "BTC", "oid": 91490942}]}}) == []
    with pytest.raises(ParseError):
        _parse({"channel": "user", "data": {"nonUserCancel": [{"coin": "BTC"}]}})


def _order(status: str, sz: str, orig: str = "0.5", cloid: str | None = "0x" + "ab" * 16) -> dict:
    # Shape from the docs (WsOrder: {order: {coin, side, limitPx, sz, oid, timestamp, origSz, cloid}, status, statusTimestamp}).
    order = {"coin": "ETH", "side": "A", "limitPx": "3000.5", "sz": sz, "oid": 141682155424,
             "timestamp": 1755863118217, "origSz": orig}
    if cloid is not None:
        order["cloid"] = cloid
    return {"order": order, "status": status, "statusTimestamp": 1755863118300}


def test_order_updates_remaining_size_and_statuses():
    events = _parse({"channel": "orderUpdates", "data": [
        _order("open", "0.5"), _order("open", "0.2"), _order("filled", "0.0"),
        _order("canceled", "0.5", cloid=None), _order("marginCanceled", "0.3"),
        _order("iocCancelRejected", "0.5"), _order("rejected", "0.5"), _order("triggered", "0.5"),
        _order("scheduledCancel", "0.5"),
    ]})
    assert all(isinstance(e, OrderUpdate) for e in events)
    assert [e.status for e in events] == [
        "open", "partially_filled", "filled", "canceled", "canceled", "rejected", "rejected", "open", "canceled"]
    first = events[0]
    assert (first.symbol, first.side, first.venue_order_id, first.client_order_id) == (
        "ETH", "sell", "141682155424", "0x" + "ab" * 16)
    assert (first.qty, first.filled_qty, first.avg_price, first.fee, first.fee_currency, first.ts_ms) == (
        Decimal("0.5"), Decimal(0), None, None, None, 1755863118300)
    assert events[1].filled_qty == Decimal("0.3") and events[2].filled_qty == Decimal("0.5")
    assert events[3].client_order_id is None
    assert (events[4].filled_qty, events[4].reason) == (Decimal("0.2"), "marginCanceled")
    assert events[5].reason == "iocCancelRejected"
    # Rejected after a part fill reads as canceled with filled_qty > 0 (private_events' convention).
    (partial,) = _parse({"channel": "orderUpdates", "data": [_order("perpMarginRejected", "0.1")]})
    assert (partial.status, partial.filled_qty) == ("canceled", Decimal("0.4"))


def test_recorded_clearinghouse_state_through_its_channel(shared_fixtures):
    state = _cassette(shared_fixtures, "test_get_user_state")
    events = _parse({"channel": "clearinghouseState", "data": {"dex": "", "user": USER, "clearinghouseState": state}},
                    recv_ts=1700000000.25)
    positions = [e for e in events if isinstance(e, PositionUpdate)]
    (balance,) = [e for e in events if isinstance(e, BalanceUpdate)]
    assert len(positions) == 12
    btc = next(p for p in positions if p.symbol == "BTC")
    assert (btc.size, btc.entry_price, btc.ts_ms) == (Decimal("-0.00785"), Decimal("26951.0"), 1700000000250)
    assert balance == BalanceUpdate("hyperliquid", "USDC", Decimal("1182.312496"), Decimal("1010.57173"), None,
                                    1700000000250, 1700000000.25)
    # webData2 carries the same object under data.clearinghouseState.
    web = _parse({"channel": "webData2", "data": {"clearinghouseState": dict(state, time=1700000001000), "user": USER}})
    assert len(web) == 13 and web[0].ts_ms == 1700000001000


def test_a_traded_coin_missing_from_the_state_is_pushed_flat(shared_fixtures):
    """clearinghouseState lists open positions only: a coin the bot trades that is not listed (liquidated,
    deleveraged, closed) is a PositionUpdate of size 0, as the other venues push a closed position."""
    state = _cassette(shared_fixtures, "test_get_user_state")
    traded = PrivateContext("hyperliquid", {"BTC": Decimal(1), "NOTLISTED": Decimal(1)})
    frame = {"channel": "clearinghouseState", "data": {"dex": "", "user": USER, "clearinghouseState": state}}
    events = parse_private(orjson.dumps(frame), 1700000000.25, traded)
    positions = {e.symbol: e.size for e in events if isinstance(e, PositionUpdate)}
    assert positions["BTC"] == Decimal("-0.00785") and positions["NOTLISTED"] == 0
    assert len(positions) == 13  # the 12 listed and the traded coin not listed
    emptied = dict(state, assetPositions=[])
    frame["data"]["clearinghouseState"] = emptied
    flat = [e for e in parse_private(orjson.dumps(frame), 1700000000.25, traded) if isinstance(e, PositionUpdate)]
    assert {(e.symbol, e.size, e.entry_price, e.margin) for e in flat} == {("BTC", 0, None, None),
                                                                          ("NOTLISTED", 0, None, None)}


def test_controls_and_other_channels(shared_fixtures):
    ack = _fixture(shared_fixtures, "doc_ws_examples.json")["subscribe_trades_ack"]
    assert _parse(ack) == [StreamControl("hyperliquid", "subscribed", "trades", 1781528066.5)]
    assert _parse(_fixture(shared_fixtures, "doc_ws_examples.json")["pong_response"])[0].kind == "pong"
    (error,) = _parse({"channel": "error", "data": "Invalid subscription {\"type\":\"userFillz\"}"})
    assert error.kind == "error" and "Invalid subscription" in error.detail
    assert _parse({"channel": "l2Book", "data": {"coin": "BTC", "levels": [[], []], "time": 1}}) == []
    assert _parse({"channel": "user", "data": {"twapHistory": []}}) == []


@pytest.mark.parametrize("frame", [
    b"not json", b"[]", b"{}", b'{"channel": 5}', b'{"channel":"orderUpdates","data":{}}',
    b'{"channel":"userFills","data":[]}', b'{"channel":"userFills","data":{"fills":{}}}',
    b'{"channel":"userFundings","data":{"fundings":[{"coin":"BTC","usdc":"1"}]}}',
    b'{"channel":"clearinghouseState","data":{"clearinghouseState":{"assetPositions":[]}}}',
    b'{"channel":"user","data":{"funding":{"coin":"BTC","usdc":1.5}}}',
])
def test_malformed_frames_raise(frame):
    with pytest.raises(ParseError):
        parse_private(frame, 1.0, CTX)


@pytest.mark.parametrize("change", [
    {"tid": "745210434703679"}, {"side": "S"}, {"px": "x"}, {"crossed": "no"}, {"oid": None}, {"cloid": 5},
    {"liquidation": "yes"}, {"time": "later"},
])
def test_malformed_fill_fields_raise(shared_fixtures, change):
    fill = _liquidation_fill(shared_fixtures)
    with_changes(fill, change)
    with pytest.raises(ParseError):
        _parse({"channel": "userFills", "data": {"user": USER, "fills": [fill]}})


def test_malformed_order_update_raises():
    bad = _order("open", "0.5")
    bad["status"] = "paused"
    with pytest.raises(ParseError):
        _parse({"channel": "orderUpdates", "data": [bad]})
    with pytest.raises(ParseError):
        _parse({"channel": "orderUpdates", "data": [{"order": {"coin": "ETH"}, "status": "open", "statusTimestamp": 1}]})


def test_subscribe_frames():
    frames = [json.loads(f) for f in subscribe_frames("0x5E9EE1089755C3435139848E47E6635505D5A13A")]
    assert frames == [{"method": "subscribe", "subscription": {"type": kind, "user": USER}}
                      for kind in ("orderUpdates", "userFills", "userFundings", "userEvents", "clearinghouseState")]
    for bad in ("", "0x123", USER[2:], USER + "0", "0x" + "g" * 40):
        with pytest.raises(ValueError):
            subscribe_frames(bad)
