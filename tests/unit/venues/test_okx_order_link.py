"""OKX's order link: the `order` / `cancel-order` frames carry exactly the order the gate approved and
nothing the user did not choose; answers and errors become typed values."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from perpbot.core import errors
from perpbot.core.events import ParseError
from perpbot.core.order_entry import LoginAnswer, OrderAnswer, Pong
from perpbot.core.orders import OrderRequest
from perpbot.settings import VenueSettings
from perpbot.venues.okx.order_link import OkxOrderLink


def link() -> OkxOrderLink:
    return OkxOrderLink("ws://127.0.0.1:1/ws/v5/private",
                        VenueSettings(api_key="k", api_secret="s", passphrase="p"))


def request(**changes) -> OrderRequest:
    fields = dict(venue="okx", symbol="BTC-USDT-SWAP", side="buy", qty=Decimal("0.10"), price=Decimal("65000.1"),
                  client_order_id="abc123", reduce_only=False)
    fields.update(changes)
    return OrderRequest(**fields)


def test_an_ioc_order_is_the_approved_order_in_okx_fields_and_names_no_tag_or_broker():
    frame = json.loads(link().place_frame("7", request()))
    assert frame == {"id": "7", "op": "order", "args": [{
        "instId": "BTC-USDT-SWAP", "tdMode": "cross", "clOrdId": "abc123", "side": "buy", "ordType": "ioc",
        "px": "65000.1", "sz": "0.1"}]}


def test_reduce_only_and_gtc_are_carried():
    arg = json.loads(link().place_frame("8", request(reduce_only=True, time_in_force="GTC", side="sell")))["args"][0]
    assert arg["reduceOnly"] == "true" and arg["ordType"] == "limit" and arg["side"] == "sell"


def test_a_cancel_names_the_client_id_alone():
    frame = json.loads(link().cancel_frame("9", "BTC-USDT-SWAP", "abc123"))
    assert frame == {"id": "9", "op": "cancel-order", "args": [{"instId": "BTC-USDT-SWAP", "clOrdId": "abc123"}]}


def test_login_uses_the_private_login_op_with_a_fresh_signature():
    (frame,) = link().login_frames()
    arg = json.loads(frame)["args"][0]
    assert json.loads(frame)["op"] == "login" and arg["apiKey"] == "k" and arg["passphrase"] == "p" and arg["sign"]


def test_an_acknowledgement_carries_the_order_id_only():
    answer = link().parse(json.dumps({"id": "7", "op": "order", "code": "0", "msg": "", "data": [
        {"clOrdId": "abc123", "ordId": "612345", "tag": "", "ts": "1", "sCode": "0", "sMsg": "Order placed"}]}))
    assert answer == OrderAnswer("7", venue_order_id="612345")


@pytest.mark.parametrize(("code", "kind"), [
    ("51008", errors.InsufficientFunds), ("51169", errors.OrderRejected), ("51121", errors.OrderRejected),
    ("51400", errors.OrderNotFound),
])
def test_a_failed_order_carries_its_scode(code, kind):
    answer = link().parse(json.dumps({"id": "7", "op": "order", "code": "1", "msg": "", "data": [
        {"clOrdId": "abc123", "ordId": "", "tag": "", "ts": "1", "sCode": code, "sMsg": "why"}]}))
    assert isinstance(answer, OrderAnswer) and type(answer.error) is kind and code in answer.error.message


def test_request_level_rate_limit_and_busy_are_typed():
    limited = link().parse(json.dumps({"id": "3", "op": "order", "code": "50011", "msg": "Rate limit reached.",
                                       "data": []}))
    busy = link().parse(json.dumps({"id": "4", "op": "order", "code": "50001", "msg": "busy", "data": []}))
    assert isinstance(limited, OrderAnswer) and isinstance(limited.error, errors.RateLimited)
    assert isinstance(busy, OrderAnswer) and isinstance(busy.error, errors.TemporaryError)


def test_login_answers_pongs_and_unreadable_frames():
    assert link().parse('{"event":"login","code":"0","msg":"","connId":"x"}') == LoginAnswer(True, "")
    refused = link().parse('{"event":"error","code":"60007","msg":"Invalid sign","connId":"x"}')
    assert isinstance(refused, LoginAnswer) and not refused.ok and "60007" in refused.reason
    answered = link().parse('{"id":"5","event":"error","code":"60012","msg":"Invalid request","connId":"x"}')
    assert isinstance(answered, OrderAnswer) and answered.request_id == "5" and answered.error is not None
    assert link().parse("pong") == Pong()
    assert link().parse('{"arg":{"channel":"orders"},"data":[]}') is None
    with pytest.raises(ParseError):
        link().parse("{not json")
