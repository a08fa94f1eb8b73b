"""Bybit v5 private WS: every frame of ../shared/fixtures/bybit/private_ws_frames.json (server
frames parsed, client frames matched by the builders' output), docs-built variants (Funding
execution, BustTrade, failed auth/subscribe, pongs), malformed frames refused, and the auth
signature against an independent HMAC of the documented "GET/realtime" + expires."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from decimal import Decimal

import orjson
import pytest

from perpbot.core.events import ParseError
from perpbot.core.margin import LegMargin
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
from perpbot.venues.bybit.private import auth_frame, auth_signature, parse_private, subscribe_frame
from testkit import private_ws_frames, with_changes

CTX = PrivateContext("bybit", {})


def _frames(shared_fixtures) -> list[dict]:
    return private_ws_frames(shared_fixtures, "bybit")


def _parse(obj: object, recv_ts: float = 3.0) -> list:
    return parse_private(orjson.dumps(obj), recv_ts, CTX)


def _push(shared_fixtures, channel: str, kind: str = "doc-example") -> dict:
    (frame,) = [f["frame"] for f in _frames(shared_fixtures) if f["channel"] == channel and f["kind"] == kind]
    return copy.deepcopy(frame)


def _check_client_frame(channel: str, frame: dict) -> None:
    """Client->server doc frames: what our builders send has the same shape."""
    if channel.startswith("auth"):
        ours = json.loads(auth_frame("api_key", "secret", frame["args"][1]))
        assert ours["op"] == frame["op"] == "auth"
        assert [type(a) for a in ours["args"]] == [type(a) for a in frame["args"]] == [str, int, str]
        assert ours["args"][1] == frame["args"][1]
    elif "subscribe request" in channel:
        ours = json.loads(subscribe_frame())
        assert ours["op"] == frame["op"] == "subscribe" and set(frame["args"]) <= set(ours["args"])
    else:
        assert channel.startswith("order.create")  # WS-trade order entry: not this module's frame


def test_every_fixture_frame_is_handled(shared_fixtures):
    frames = _frames(shared_fixtures)
    assert len(frames) == 15
    seen: dict[str, list] = {}
    for entry in frames:
        if entry["direction"] == "client->server":
            _check_client_frame(entry["channel"], entry["frame"])
            continue
        seen[f"{entry['channel']}|{entry['kind']}"] = _parse(entry["frame"])
    assert seen["auth (private stream) - success reply|doc-example"] == [StreamControl("bybit", "login_ok", "", 3.0)]
    assert seen["auth (WS trade /v5/trade) - reply|doc-example"][0].kind == "login_ok"
    assert seen["order.create (WS trade) - reply|doc-example"] == []  # order entry's answer

    (order,) = seen["order - push|doc-example"]
    assert isinstance(order, OrderUpdate)
    assert (order.symbol, order.venue_order_id, order.client_order_id, order.status, order.side) == (
        "ETH-30DEC22-1400-C", "5cf98598-39a7-459e-97bf-76ca765ee020", None, "filled", "sell")
    assert (order.qty, order.filled_qty, order.avg_price, order.fee, order.reason, order.ts_ms) == (
        Decimal("1"), Decimal("1"), Decimal("75"), Decimal("0.358635"), None, 1672364262457)

    (fill,) = seen["execution - push|doc-example"]
    assert isinstance(fill, VenueFill)
    assert (fill.symbol, fill.trade_id, fill.venue_order_id, fill.side) == (
        "BTCUSDT", "0ab1bdf7-4219-438b-b30a-32ec863018f7", "9aac161b-8ed6-450d-9cab-c5cc67c21784", "sell")
    assert (fill.qty, fill.price, fill.fee, fill.fee_currency, fill.liquidity, fill.ts_ms) == (
        Decimal("0.5"), Decimal("95900.1"), Decimal("26.3725275"), "USDT", "taker", 1746270400353)

    # The docs' position example is a hedge-mode leg (positionIdx 2): surfaced, not guessed.
    (leg,) = seen["position - push|doc-example"]
    assert isinstance(leg, StreamControl) and leg.kind == "error" and "positionIdx=2" in leg.detail
    (position,) = seen["position - push|client-fixture"]
    # With its margin state: liqPrice, positionMM, adlRankIndicator, tradeMode 0 (cross), leverage, markPrice.
    margin = LegMargin("bybit", "ETHUSDT", Decimal("-0.01"), Decimal("3641.33"), Decimal("51764.83003276"),
                       Decimal("0.20281586"), None, 2, "cross", Decimal("30"), 1762199125472)
    assert position == PositionUpdate("bybit", "ETHUSDT", Decimal("-0.01"), Decimal("3641.075"), 1762199125472, 3.0,
                                      margin)
    assert margin.distance_pct == Decimal("1321.5912")  # a short 0.01 ETH with the account's collateral behind it

    (balance,) = seen["wallet - push|doc-example"]
    assert balance == BalanceUpdate("bybit", "BTC", Decimal("0.00102964"), Decimal("0.00102964"),
                                    Decimal("0.00102964"), 1700034722104, 3.0)


def test_funding_execution_is_a_funding_event_paid_when_execFee_positive(shared_fixtures):
    # Built from the docs: execType "Funding" ("USDT Perpetual ... has Funding feed"); execFee is
    # opposite in sign to the transaction log's funding (+ received), so a positive execFee was paid.
    frame = _push(shared_fixtures, "execution - push")
    item = frame["data"][0]
    item.update({"execType": "Funding", "execFee": "0.0213", "execId": "f-1", "execTime": "1746288000000",
                 "orderId": "", "execQty": "0.5", "execPrice": "95900.1"})
    (event,) = _parse(frame)
    assert event == FundingEvent("bybit", "BTCUSDT", "f-1", Decimal("-0.0213"), 1746288000000, 3.0)
    item["execFee"] = "-0.5"
    assert _parse(frame)[0].amount == Decimal("0.5")


def test_forced_executions_add_margin_events(shared_fixtures):
    frame = _push(shared_fixtures, "execution - push")
    frame["data"][0]["execType"] = "BustTrade"
    fill, margin = _parse(frame)
    assert isinstance(fill, VenueFill) and isinstance(margin, MarginEvent) and margin.kind == "liquidation"
    frame["data"][0]["execType"] = "AdlTrade"
    assert _parse(frame)[1].kind == "adl"
    frame["data"][0]["execType"] = "UNKNOWN"
    assert _parse(frame) == []


def test_order_statuses_and_reasons(shared_fixtures):
    frame = _push(shared_fixtures, "order - push")
    item = frame["data"][0]
    item.update({"category": "linear", "symbol": "BTCUSDT", "orderStatus": "Cancelled", "cumExecQty": "0",
                 "avgPrice": "", "cumExecFee": "0", "cancelType": "CancelByUser", "orderLinkId": "pb-1",
                 "feeCurrency": ""})
    (order,) = _parse(frame)
    assert (order.status, order.reason, order.avg_price, order.client_order_id, order.fee_currency) == (
        "canceled", "CancelByUser", None, "pb-1", "USDT")
    item.update({"orderStatus": "Rejected", "rejectReason": "EC_PostOnlyWillTakeLiquidity"})
    assert (_parse(frame)[0].status, _parse(frame)[0].reason) == ("rejected", "EC_PostOnlyWillTakeLiquidity")
    for state, status in (("New", "open"), ("PartiallyFilled", "partially_filled"), ("Untriggered", "open"),
                          ("Deactivated", "canceled")):
        item.update({"orderStatus": state, "rejectReason": "EC_NoError"})
        assert _parse(frame)[0].status == status


def test_one_way_long_position_and_categorised_topic(shared_fixtures):
    frame = _push(shared_fixtures, "position - push", "client-fixture")
    frame["topic"] = "position.linear"
    frame["data"][0].update({"side": "Buy", "size": "0.25"})
    assert _parse(frame)[0].size == Decimal("0.25")
    frame["data"][0].update({"side": "", "size": "0"})
    flat = _parse(frame)[0]
    assert (flat.size, flat.entry_price) == (Decimal(0), None)


@pytest.mark.parametrize(("frame", "kind"), [
    ({"success": False, "ret_msg": "Params Error", "op": "auth", "conn_id": "c"}, "login_failed"),
    ({"retCode": 10004, "retMsg": "Invalid sign", "op": "auth", "connId": "c"}, "login_failed"),
    ({"success": True, "ret_msg": "", "op": "subscribe", "conn_id": "c"}, "subscribed"),
    ({"success": False, "ret_msg": "error:handler not found,topic:orderx", "op": "subscribe", "conn_id": "c"}, "subscribe_failed"),
    ({"success": True, "ret_msg": "pong", "conn_id": "c", "req_id": "", "op": "ping"}, "pong"),
    ({"req_id": "", "op": "pong", "args": ["1675418560633"], "conn_id": "c"}, "pong"),
    ({"success": False, "ret_msg": "Request not authorized", "op": "unknown", "conn_id": "c"}, "error"),
])
def test_control_frames(frame, kind):
    (event,) = _parse(frame)
    assert isinstance(event, StreamControl) and event.kind == kind


def test_unknown_topics_and_quiet_acks():
    assert _parse({"topic": "greeks", "creationTime": 1, "data": [{}]}) == []
    assert _parse({"success": True, "ret_msg": "", "op": "unsubscribe", "conn_id": "c"}) == []


@pytest.mark.parametrize("frame", [
    b"not json", b"[1]", b"{}", b'{"topic": 5}', b'{"op": 5}', b'{"topic":"order","data":{}}',
    b'{"topic":"order","data":[1]}', b'{"topic":"wallet","data":[{"coin":[]}]}',
    b'{"success":"yes","op":"auth"}',
])
def test_malformed_frames_raise(frame):
    with pytest.raises(ParseError):
        parse_private(frame, 1.0, CTX)


@pytest.mark.parametrize(("channel", "change"), [
    ("order - push", {"orderStatus": "Weird"}), ("order - push", {"side": "Up"}), ("order - push", {"qty": "one"}),
    ("order - push", {"updatedTime": "later"}), ("execution - push", {"execPrice": "x"}),
    ("execution - push", {"execId": 5}), ("execution - push", {"execFee": 0.1}),
    ("position - push", {"positionIdx": 0, "side": "Long"}), ("position - push", {"positionIdx": 0, "size": None}),
    ("wallet - push", {"coin": [{"equity": "1"}]}),
])
def test_malformed_fields_raise(shared_fixtures, channel, change):
    frame = _push(shared_fixtures, channel)
    with_changes(frame["data"][0], change)
    with pytest.raises(ParseError):
        _parse(frame)


def test_auth_signature_matches_the_documented_formula():
    secret, expires = "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", 1662350400000
    expected = hmac.new(secret.encode(), b"GET/realtime1662350400000", hashlib.sha256).hexdigest()
    assert auth_signature(secret, expires) == expected
    assert json.loads(auth_frame("api_key", secret, expires)) == {"op": "auth", "args": ["api_key", expires, expected]}


def test_subscribe_frame_topics():
    assert json.loads(subscribe_frame()) == {"op": "subscribe", "args": ["order", "execution", "position", "wallet"]}
