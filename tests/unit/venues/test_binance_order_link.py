"""Binance USD-M's order link (WebSocket API /ws-fapi/v1): `order.place` / `order.cancel` carry exactly the
order the gate approved in the REST order's parameters, signed per request as the docs sign (their own
worked example reproduced); answers with RESULT fills, rateLimits and the venue's codes become typed values."""

from __future__ import annotations

import hashlib
import hmac
import json
from decimal import Decimal
from urllib.parse import urlencode

import pytest

from perpbot.core import errors
from perpbot.core.events import ParseError
from perpbot.core.order_entry import OrderAnswer
from perpbot.core.orders import OrderRequest
from perpbot.settings import VenueSettings
from perpbot.venues.binance.order_link import BinanceOrderLink, RateLimit, sign

NOW_S = 1_702_555_533.821
# The Binance WebSocket API docs' HMAC example ("Request security", SIGNED request example (HMAC)): these
# params, this secret, this signature. The USD-M WebSocket API signs the same way.
DOC_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
DOC_PARAMS = {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.01000000",
              "price": "52000.00", "newOrderRespType": "ACK", "recvWindow": 100, "timestamp": 1645423376532,
              "apiKey": "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"}
DOC_SIGNATURE = "cc15477742bd704c29492d96c7ead9414dfd8e0ec4a00f947bb5bb454ddbd08a"
# The USD-M docs' order.place answer example (WebSocket API "New Order (TRADE)").
DOC_RATE_LIMITS = [
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300, "count": 1},
    {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200, "count": 1},
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400, "count": 1},
]
DOC_ANSWER = {
    "id": "3f7df6e3-2df4-44b9-9919-d2f38f90a99a", "status": 200,
    "result": {"orderId": 325078477, "symbol": "BTCUSDT", "status": "NEW", "clientOrderId": "iCXL1BywlBaf2sesNUrVl3",
               "price": "43187.00", "avgPrice": "0.00", "origQty": "0.100", "executedQty": "0.000", "cumQty": "0.000",
               "cumQuote": "0.00000", "timeInForce": "GTC", "type": "LIMIT", "reduceOnly": False,
               "closePosition": False, "side": "BUY", "positionSide": "BOTH", "stopPrice": "0.00",
               "workingType": "CONTRACT_PRICE", "priceProtect": False, "origType": "LIMIT", "priceMatch": "NONE",
               "selfTradePreventionMode": "NONE", "goodTillDate": 0, "updateTime": 1702555534435},
    "rateLimits": DOC_RATE_LIMITS,
}


def link() -> BinanceOrderLink:
    return BinanceOrderLink("ws://127.0.0.1:1/ws-fapi/v1", VenueSettings(api_key="k", api_secret="s"),
                            clock=lambda: NOW_S)


def request(**changes) -> OrderRequest:
    fields = dict(venue="binance", symbol="BTCUSDT", side="buy", qty=Decimal("0.0100"), price=Decimal("65000.10"),
                  client_order_id="abc-123_x", reduce_only=False)
    fields.update(changes)
    return OrderRequest(**fields)


def test_the_signature_reproduces_the_docs_worked_example():
    assert sign(DOC_SECRET, DOC_PARAMS) == DOC_SIGNATURE


def test_an_ioc_order_is_the_approved_order_in_the_rest_parameters_signed_and_with_no_broker_prefix():
    frame = json.loads(link().place_frame("7", request()))
    params = frame.pop("params")
    assert frame == {"id": "7", "method": "order.place"}
    signature = params.pop("signature")
    assert params == {
        "symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "IOC", "quantity": "0.01",
        "price": "65000.1", "newClientOrderId": "abc-123_x", "newOrderRespType": "RESULT", "apiKey": "k",
        "timestamp": 1702555533821}
    payload = "&".join(f"{k}={params[k]}" for k in sorted(params))
    assert signature == hmac.new(b"s", payload.encode(), hashlib.sha256).hexdigest()


def test_reserved_characters_are_signed_percent_encoded_as_binances_sdk_signs_them():
    params = json.loads(link().place_frame("7", request(client_order_id="pb:1/a")))["params"]
    assert params["newClientOrderId"] == "pb:1/a"  # sent as it is
    unsigned = {k: v for k, v in params.items() if k != "signature"}
    payload = urlencode(sorted(unsigned.items()))
    assert "newClientOrderId=pb%3A1%2Fa" in payload
    assert params["signature"] == hmac.new(b"s", payload.encode(), hashlib.sha256).hexdigest()


def test_reduce_only_gtc_and_a_sell_are_carried():
    params = json.loads(link().place_frame("8", request(reduce_only=True, time_in_force="GTC", side="sell")))["params"]
    assert params["reduceOnly"] == "true" and params["timeInForce"] == "GTC" and params["side"] == "SELL"
    assert "reduceOnly" not in json.loads(link().place_frame("9", request()))["params"]


def test_a_cancel_names_the_client_id_alone_and_is_signed():
    params = json.loads(link().cancel_frame("9", "BTCUSDT", "abc-123_x"))["params"]
    assert set(params) == {"symbol", "origClientOrderId", "apiKey", "timestamp", "signature"}
    assert params["origClientOrderId"] == "abc-123_x"


def test_no_login_every_request_is_signed_on_its_own():
    assert link().login_frames() == [] and link().ping_frame is None


def test_the_docs_answer_is_an_acknowledgement_and_its_rate_limits_are_kept():
    the_link = link()
    answer = the_link.parse(json.dumps(DOC_ANSWER))
    assert answer == OrderAnswer("3f7df6e3-2df4-44b9-9919-d2f38f90a99a", venue_order_id="325078477", status="open",
                                 filled_qty=Decimal("0.000"), avg_price=None)
    assert the_link.last_rate_limits == (RateLimit("ORDERS", "SECOND", 10, 300, 1),
                                         RateLimit("ORDERS", "MINUTE", 1, 1200, 1),
                                         RateLimit("REQUEST_WEIGHT", "MINUTE", 1, 2400, 1))
    # The same counts under the REST response's header names, for the rate budget.
    assert the_link.usage_headers() == {"X-MBX-ORDER-COUNT-10s": "1", "X-MBX-ORDER-COUNT-1m": "1",
                                        "X-MBX-USED-WEIGHT-1m": "1"}
    assert link().usage_headers() == {}  # nothing answered yet


def result(status: str, executed: str, average: str) -> str:
    body = dict(DOC_ANSWER, id="5")
    body["result"] = dict(DOC_ANSWER["result"], status=status, executedQty=executed, avgPrice=average,
                          timeInForce="IOC")
    return json.dumps(body)


@pytest.mark.parametrize(("status", "executed", "average", "state"), [
    ("FILLED", "0.100", "43187.00", "filled"), ("EXPIRED", "0.040", "43187.50", "partially_filled"),
    ("EXPIRED", "0.000", "0.00", "expired"), ("CANCELED", "0", "0", "canceled"),
])
def test_a_result_answer_carries_the_iocs_fill_but_no_fee(status, executed, average, state):
    answer = link().parse(result(status, executed, average))
    assert isinstance(answer, OrderAnswer) and answer.status == state and answer.error is None
    assert answer.filled_qty == Decimal(executed) and answer.fee is None and answer.complete is False
    assert answer.avg_price == (Decimal(average) if Decimal(average) else None)


def error_answer(status: int, code: int, msg: str = "why", data: dict | None = None) -> str:
    error: dict = {"code": code, "msg": msg}
    if data is not None:
        error["data"] = data
    return json.dumps({"id": "4", "status": status, "error": error, "rateLimits": DOC_RATE_LIMITS})


@pytest.mark.parametrize(("status", "code", "kind"), [
    (400, -2019, errors.InsufficientFunds), (400, -2018, errors.InsufficientFunds),
    (400, -2022, errors.OrderRejected), (400, -4164, errors.OrderRejected), (400, -1022, errors.OrderRejected),
    (401, -2015, errors.OrderRejected), (400, -2011, errors.OrderNotFound), (400, -2013, errors.OrderNotFound),
    (400, -1021, errors.TemporaryError), (503, -1008, errors.TemporaryError), (503, 1, errors.TemporaryError),
    (408, -1007, errors.UnknownOutcome), (500, -1001, errors.UnknownOutcome), (400, -1015, errors.RateLimited),
])
def test_a_refused_request_is_typed_by_its_code(status, code, kind):
    answer = link().parse(error_answer(status, code))
    assert isinstance(answer, OrderAnswer) and answer.request_id == "4"
    assert type(answer.error) is kind and str(code) in answer.error.message and "why" in answer.error.message


@pytest.mark.parametrize("status", [429, 418])
def test_429_and_418_wait_until_the_venues_retry_after(status):
    answer = link().parse(error_answer(status, -1003, "Too many requests",
                                       {"serverTime": 1659142907531, "retryAfter": 1659142910031}))
    assert isinstance(answer, OrderAnswer) and isinstance(answer.error, errors.RateLimited)
    assert answer.error.retry_after_s == 2.5
    bare = link().parse(error_answer(status, -1003))
    assert isinstance(bare, OrderAnswer) and isinstance(bare.error, errors.RateLimited)
    assert bare.error.retry_after_s is None


def test_frames_for_nothing_of_ours_and_unreadable_ones():
    assert link().parse('{"id":null,"status":400,"error":{"code":-1102,"msg":"Malformed"}}') is None
    assert link().parse('{"e":"ORDER_TRADE_UPDATE"}') is None
    with pytest.raises(ParseError):
        link().parse("{not json")
    with pytest.raises(ParseError):
        link().parse('"text"')
    with pytest.raises(ParseError):
        link().parse('{"id":"1","status":200}')  # a success without its result


def test_credentials_are_required_and_named_not_echoed():
    with pytest.raises(ValueError, match="api_key"):
        BinanceOrderLink("ws://x/ws-fapi/v1", VenueSettings(api_secret="s"))
