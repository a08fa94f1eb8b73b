"""Bybit's order link (WS trade /v5/trade): the `order.create` / `order.cancel` frames carry exactly the order
the gate approved, in the REST create's fields, and nothing the user did not choose (no broker Referer);
the docs' answers, the rate-limit header and the venue's retCodes become typed values."""

from __future__ import annotations

import hashlib
import hmac
import json
from decimal import Decimal

import pytest

from perpbot.core import errors
from perpbot.core.events import ParseError
from perpbot.core.order_entry import LoginAnswer, OrderAnswer, Pong
from perpbot.core.orders import OrderRequest
from perpbot.settings import VenueSettings
from perpbot.venues.bybit.order_link import BybitOrderLink, LimitStatus

from testkit import private_ws_frames

NOW_S = 1_711_001_595.207


def link() -> BybitOrderLink:
    return BybitOrderLink("ws://127.0.0.1:1/v5/trade", VenueSettings(api_key="k", api_secret="s"),
                          clock=lambda: NOW_S)


def request(**changes) -> OrderRequest:
    fields = dict(venue="bybit", symbol="BTCUSDT", side="buy", qty=Decimal("0.0010"), price=Decimal("65000.10"),
                  client_order_id="abc-123_x", reduce_only=False)
    fields.update(changes)
    return OrderRequest(**fields)


def doc_frame(frames: list[dict], channel: str) -> dict:
    return next(f["frame"] for f in frames if f["channel"] == channel)


@pytest.fixture
def frames(shared_fixtures):
    return private_ws_frames(shared_fixtures, "bybit")


def test_an_ioc_order_is_the_approved_order_in_the_rest_create_fields_with_no_referer():
    frame = json.loads(link().place_frame("7", request()))
    assert frame == {
        "reqId": "7", "header": {"X-BAPI-TIMESTAMP": "1711001595207", "X-BAPI-RECV-WINDOW": "5000"},
        "op": "order.create", "args": [{
            "category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", "qty": "0.001",
            "price": "65000.1", "timeInForce": "IOC", "orderLinkId": "abc-123_x"}]}


def test_the_frame_has_the_shape_of_the_docs_request_without_the_brokers_referer(frames):
    doc = doc_frame(frames, "order.create (WS trade) - request")
    ours = json.loads(link().place_frame("test-005", request()))
    assert set(ours) == set(doc)  # reqId, header, op, args
    assert set(ours["header"]) == set(doc["header"]) - {"Referer"}
    assert set(doc["args"][0]) - {"timeInForce"} <= set(ours["args"][0])


def test_reduce_only_gtc_and_a_sell_are_carried():
    arg = json.loads(link().place_frame("8", request(reduce_only=True, time_in_force="GTC", side="sell")))["args"][0]
    assert arg["reduceOnly"] is True and arg["timeInForce"] == "GTC" and arg["side"] == "Sell"
    assert "reduceOnly" not in json.loads(link().place_frame("9", request()))["args"][0]


def test_a_cancel_names_the_client_id_alone():
    frame = json.loads(link().cancel_frame("9", "BTCUSDT", "abc-123_x"))
    assert frame["op"] == "order.cancel" and frame["reqId"] == "9"
    assert frame["args"] == [{"category": "linear", "symbol": "BTCUSDT", "orderLinkId": "abc-123_x"}]


def test_auth_is_the_private_streams_signature_over_get_realtime_and_expiry():
    (frame,) = link().login_frames()
    body = json.loads(frame)
    key, expires, signature = body["args"]
    assert body["op"] == "auth" and key == "k" and expires == 1711001605207  # 10 s ahead
    assert signature == hmac.new(b"s", f"GET/realtime{expires}".encode(), hashlib.sha256).hexdigest()


def test_the_docs_auth_reply_logs_in_and_a_refusal_says_why(frames):
    assert link().parse(json.dumps(doc_frame(frames, "auth (WS trade /v5/trade) - reply"))) == LoginAnswer(True, "0 OK")
    refused = link().parse('{"retCode":10004,"retMsg":"Error sign","op":"auth","connId":"x"}')
    assert isinstance(refused, LoginAnswer) and not refused.ok and "10004" in refused.reason


def test_the_docs_acknowledgement_carries_the_order_id_and_its_limit_header(frames):
    the_link = link()
    answer = the_link.parse(json.dumps(doc_frame(frames, "order.create (WS trade) - reply")))
    assert answer == OrderAnswer("test-005", venue_order_id="a4c1718e-fe53-4659-a118-1f6ecce04ad9")
    assert answer.complete is False and answer.status == "open"
    assert the_link.last_limits == LimitStatus(limit=10, remaining=9, reset_ms=1711001595208, server_ms=1711001595209)
    # The same figures under the REST response's header names, for the rate budget.
    assert the_link.usage_headers() == {"X-Bapi-Limit": "10", "X-Bapi-Limit-Status": "9",
                                        "X-Bapi-Limit-Reset-Timestamp": "1711001595208"}
    assert link().usage_headers() == {}  # nothing answered yet


def error_answer(code: int, msg: str = "why", header: dict | None = None) -> str:
    body = {"reqId": "4", "retCode": code, "retMsg": msg, "op": "order.create", "data": {}, "retExtInfo": {},
            "header": header or {"X-Bapi-Limit": "10", "X-Bapi-Limit-Status": "9",
                                 "X-Bapi-Limit-Reset-Timestamp": "1000", "Timenow": "1000"},
            "connId": "c"}
    return json.dumps(body)


@pytest.mark.parametrize(("code", "kind"), [
    (110007, errors.InsufficientFunds), (110004, errors.InsufficientFunds), (110012, errors.InsufficientFunds),
    (110017, errors.OrderRejected), (10001, errors.OrderRejected), (110072, errors.OrderRejected),
    (110001, errors.OrderNotFound), (110008, errors.OrderNotFound), (10016, errors.TemporaryError),
    (10019, errors.TemporaryError), (10002, errors.TemporaryError), (20006, errors.TemporaryError),
    (10429, errors.RateLimited), (20003, errors.RateLimited),
])
def test_a_refused_request_is_typed_by_its_retcode(code, kind):
    answer = link().parse(error_answer(code))
    assert isinstance(answer, OrderAnswer) and answer.request_id == "4"
    assert type(answer.error) is kind and str(code) in answer.error.message and "why" in answer.error.message


def test_a_rate_limit_waits_until_the_headers_reset_time():
    header = {"X-Bapi-Limit": "10", "X-Bapi-Limit-Status": "0", "X-Bapi-Limit-Reset-Timestamp": "1711001597500",
              "Traceid": "t", "Timenow": "1711001595000"}
    answer = link().parse(error_answer(10006, "Too many visits. Exceeded the API Rate Limit.", header))
    assert isinstance(answer, OrderAnswer) and isinstance(answer.error, errors.RateLimited)
    assert answer.error.retry_after_s == 2.5
    no_wait = link().parse(error_answer(10006))  # reset == now: the header names no wait
    assert isinstance(no_wait, OrderAnswer) and isinstance(no_wait.error, errors.RateLimited)
    assert no_wait.error.retry_after_s is None


def test_pongs_other_frames_and_unreadable_ones():
    pong = {"retCode": 0, "retMsg": "OK", "op": "pong", "data": ["1711002002529"], "connId": "c"}
    assert link().parse(json.dumps(pong)) == Pong()
    assert link().parse('{"op":"order.create","retCode":0,"data":{}}') is None  # no reqId: nothing to match
    with pytest.raises(ParseError):
        link().parse("{not json")
    with pytest.raises(ParseError):
        link().parse("[1]")
    with pytest.raises(ParseError):
        link().parse('{"reqId":"1","op":"order.create"}')  # no retCode


def test_credentials_are_required_and_named_not_echoed():
    with pytest.raises(ValueError, match="api_secret"):
        BybitOrderLink("ws://x/v5/trade", VenueSettings(api_key="k"))
