"""OKX private WS: every frame of ../shared/fixtures/okx/private_ws_frames.json parsed to the right
events, the docs-built frames (login reply, positions, balance_and_position, control events), the
malformed ones refused, and the login signature against an independent HMAC of the documented
prehash."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from decimal import Decimal

import orjson
import pytest

from perpbot.core.events import ParseError
from perpbot.core.private_events import (
    BalanceUpdate,
    MarginEvent,
    OrderUpdate,
    PositionUpdate,
    PrivateContext,
    StreamControl,
    VenueFill,
)
from perpbot.venues.okx.private import login_frame, login_sign, parse_private, subscribe_frame
from testkit import private_ws_frames, with_changes

CTX = PrivateContext("okx", {"BTC-USDT-SWAP": Decimal("0.01"), "ETH-USDT-SWAP": Decimal("0.1")})


def _frames(shared_fixtures) -> list[dict]:
    return private_ws_frames(shared_fixtures, "okx")


def _parse(obj: object, recv_ts: float = 5.0) -> list:
    return parse_private(orjson.dumps(obj), recv_ts, CTX)


def _order_push(**overrides: str) -> dict:
    """The recorded orders push with some fields changed (for the docs-described variants)."""
    item = {
        "instType": "SWAP", "instId": "BTC-USDT-SWAP", "ordId": "2497956918703120384", "clOrdId": "c1",
        "side": "sell", "posSide": "net", "sz": "5", "px": "100000", "state": "partially_filled",
        "accFillSz": "3", "avgPx": "100001.5", "fee": "-0.42", "feeCcy": "USDT", "fillSz": "2",
        "fillPx": "100002", "fillFee": "-0.28", "fillFeeCcy": "USDT", "tradeId": "77", "execType": "T",
        "fillTime": "1746947317500", "uTime": "1746947317501", "category": "normal",
    }
    item.update(overrides)
    return {"arg": {"channel": "orders", "instType": "SWAP"}, "data": [item]}


def test_every_fixture_frame_parses_to_the_expected_events(shared_fixtures):
    frames = _frames(shared_fixtures)
    assert len(frames) == 3
    results = {f["channel"]: _parse(f["frame"]) for f in frames}

    balances = results["account - push"]
    assert [type(e) for e in balances] == [BalanceUpdate] * 3
    usdt, btc, eth = balances
    assert (usdt.currency, usdt.equity, usdt.available, usdt.wallet, usdt.ts_ms) == (
        "USDT", Decimal("100.52768569797846"), Decimal("100.52768569797846"), Decimal("100.52768569797846"), 1751526647084)
    assert (btc.currency, btc.wallet) == ("BTC", Decimal("0.0000000051"))
    assert (eth.currency, eth.available) == ("ETH", Decimal("0.000000185"))

    assert results["account - push (account with no balances)"] == []

    order, fill = results["orders - push (SWAP market order filled)"]
    assert isinstance(order, OrderUpdate) and isinstance(fill, VenueFill)
    assert (order.symbol, order.client_order_id, order.venue_order_id, order.status, order.side) == (
        "BTC-USDT-SWAP", "001BTCUSDT20250106001", "2497956918703120384", "filled", "buy")
    assert (order.qty, order.filled_qty, order.avg_price) == (Decimal("0.03"), Decimal("0.03"), Decimal("103698.9"))
    # OKX prints the fee negative-as-cost ("-0.021776769"): positive cost here.
    assert (order.fee, order.fee_currency, order.final) == (Decimal("0.021776769"), "USDT", True)
    assert (fill.trade_id, fill.price, fill.qty, fill.fee, fill.fee_currency) == (
        "1518905529", Decimal("103698.9"), Decimal("0.03"), Decimal("0.021776769"), "USDT")
    assert (fill.liquidity, fill.ts_ms, fill.recv_ts, fill.snapshot) == ("maker", 1746947317402, 5.0, False)
    assert fill.key == ("okx", "BTC-USDT-SWAP", "1518905529")


def test_fill_uses_fillFee_and_flips_its_sign():
    order, fill = _parse(_order_push())
    assert (order.status, order.filled_qty, order.fee) == ("partially_filled", Decimal("3"), Decimal("0.42"))
    assert (fill.trade_id, fill.qty, fill.price, fill.fee, fill.liquidity, fill.ts_ms) == (
        "77", Decimal("2"), Decimal("100002"), Decimal("0.28"), "taker", 1746947317500)
    # A maker rebate (positive on OKX) becomes a negative fee.
    (_, rebate) = _parse(_order_push(fillFee="0.01", execType="M"))
    assert (rebate.fee, rebate.liquidity) == (Decimal("-0.01"), "maker")


def test_later_fill_without_fillFee_is_refused_not_guessed():
    push = _order_push()
    del push["data"][0]["fillFee"]
    with pytest.raises(ParseError, match="fillFee"):
        _parse(push)


def test_order_without_fill_and_states():
    (live,) = _parse(_order_push(state="live", accFillSz="0", avgPx="", fee="0", fillSz="0", tradeId="", fillPx=""))
    assert (live.status, live.filled_qty, live.avg_price, live.fee, live.final) == ("open", Decimal(0), None, Decimal(0), False)
    (canceled,) = _parse(_order_push(state="canceled", tradeId="", fillSz="0", cancelSourceReason="Order canceled by user"))
    assert (canceled.status, canceled.reason) == ("canceled", "Order canceled by user")
    (mmp,) = _parse(_order_push(state="mmp_canceled", tradeId="", fillSz="0", clOrdId=""))
    assert (mmp.status, mmp.client_order_id) == ("canceled", None)


def test_liquidation_order_adds_a_margin_event():
    events = _parse(_order_push(category="full_liquidation", clOrdId=""))
    assert [type(e) for e in events] == [OrderUpdate, VenueFill, MarginEvent]
    assert (events[2].kind, events[2].symbol) == ("liquidation", "BTC-USDT-SWAP")
    assert _parse(_order_push(category="adl"))[2].kind == "adl"


def test_positions_push_from_docs_converts_contracts_to_signed_base():
    # Built from the docs' positions channel fields (no recorded push).
    push = {"arg": {"channel": "positions", "instType": "SWAP"}, "data": [
        {"instType": "SWAP", "instId": "BTC-USDT-SWAP", "mgnMode": "cross", "posSide": "net", "pos": "-3",
         "avgPx": "100000.5", "uTime": "1746947317600"},
        {"instType": "SWAP", "instId": "ETH-USDT-SWAP", "mgnMode": "cross", "posSide": "net", "pos": "0",
         "avgPx": "", "uTime": "1746947317601"},
        {"instType": "SWAP", "instId": "ETH-USDT-SWAP", "mgnMode": "cross", "posSide": "long", "pos": "4",
         "avgPx": "3000", "uTime": "1746947317602"},
    ]}
    btc, eth, hedge = _parse(push)
    assert btc == PositionUpdate("okx", "BTC-USDT-SWAP", Decimal("-0.03"), Decimal("100000.5"), 1746947317600, 5.0)
    assert (eth.size, eth.entry_price) == (Decimal(0), None)
    # long/short mode cannot be told as a net size: said loudly, not guessed.
    assert isinstance(hedge, StreamControl) and hedge.kind == "error" and "hedge-mode" in hedge.detail


def test_balance_and_position_push_from_docs():
    push = {"arg": {"channel": "balance_and_position"}, "data": [{
        "pTime": "1597026383085", "eventType": "filled",
        "balData": [{"ccy": "USDT", "cashBal": "5000.25", "uTime": "1597026383085"}],
        "posData": [{"posId": "1", "tradeId": "9", "instId": "BTC-USDT-SWAP", "instType": "SWAP", "mgnMode": "cross",
                     "posSide": "net", "pos": "10", "ccy": "USDT", "posCcy": "", "avgPx": "99000"}],
        "trades": [{"instId": "BTC-USDT-SWAP", "tradeId": "9"}],
    }]}
    balance, position = _parse(push)
    assert balance == BalanceUpdate("okx", "USDT", None, None, Decimal("5000.25"), 1597026383085, 5.0)
    assert position == PositionUpdate("okx", "BTC-USDT-SWAP", Decimal("0.1"), Decimal("99000"), 1597026383085, 5.0)


@pytest.mark.parametrize(("frame", "kind"), [
    ({"event": "login", "code": "0", "msg": "", "connId": "a4d3ae55"}, "login_ok"),
    ({"event": "login", "code": "60009", "msg": "Login failed."}, "login_failed"),
    ({"event": "error", "code": "60009", "msg": "Login failed.", "connId": "a4d3ae55"}, "login_failed"),
    ({"event": "error", "code": "60024", "msg": "Wrong passphrase"}, "login_failed"),
    ({"event": "error", "code": "60012", "msg": "Invalid request"}, "error"),
    ({"event": "subscribe", "arg": {"channel": "orders", "instType": "SWAP"}, "connId": "a4d3ae55"}, "subscribed"),
    ({"event": "channel-conn-count-error", "channel": "orders", "connCount": "30"}, "subscribe_failed"),
])
def test_control_events(frame, kind):
    (event,) = _parse(frame, 7.0)
    assert isinstance(event, StreamControl) and (event.kind, event.recv_ts) == (kind, 7.0)


def test_pong_text_unknown_channels_and_informational_events():
    assert parse_private("pong", 1.0, CTX) == [StreamControl("okx", "pong", "pong", 1.0)]
    assert parse_private(b"pong", 1.0, CTX)[0].kind == "pong"
    assert _parse({"arg": {"channel": "liquidation-warning"}, "data": [{}]}) == []
    assert _parse({"event": "unsubscribe", "arg": {"channel": "orders"}}) == []


@pytest.mark.parametrize("frame", [
    b"not json", b"[1,2]", b'{"arg":{"channel":"orders"}}', b'{"data":[]}', b'{"arg":{"channel":"orders"},"data":{}}',
    b'{"arg":{},"data":[]}', b'{"event":5}', b'{"arg":{"channel":"orders"},"data":[5]}',
])
def test_malformed_frames_raise(frame):
    with pytest.raises(ParseError):
        parse_private(frame, 1.0, CTX)


@pytest.mark.parametrize("change", [
    {"state": "weird"}, {"side": "up"}, {"instId": None}, {"sz": "abc"}, {"fillPx": "NaN"}, {"uTime": "soon"},
    {"fillFeeCcy": "", "feeCcy": ""},
])
def test_malformed_order_fields_raise(change):
    push = _order_push()
    with_changes(push["data"][0], change)
    with pytest.raises(ParseError):
        _parse(push)


def test_malformed_account_and_position_raise():
    with pytest.raises(ParseError):
        _parse({"arg": {"channel": "account"}, "data": [{"uTime": "1", "details": [{"eq": "1"}]}]})
    with pytest.raises(ParseError):
        _parse({"arg": {"channel": "positions"}, "data": [{"instId": "BTC-USDT-SWAP", "pos": "x", "uTime": "1"}]})


def test_login_signature_matches_the_documented_formula():
    secret, timestamp = "22582BD0CFF14C41EDBF1AB98506286D", "1538054050"
    expected = base64.b64encode(
        hmac.new(secret.encode(), b"1538054050GET/users/self/verify", hashlib.sha256).digest()).decode()
    assert login_sign(secret, timestamp) == expected
    frame = json.loads(login_frame("985d5b66-57ce-40fb-b714-afc0b9787083", secret, "123456", 1538054050.975))
    assert frame == {"op": "login", "args": [{
        "apiKey": "985d5b66-57ce-40fb-b714-afc0b9787083", "passphrase": "123456",
        "timestamp": "1538054050", "sign": expected}]}


def test_subscribe_frame_channels():
    frame = json.loads(subscribe_frame(["BTC-USDT-SWAP", "ETH-USDT-SWAP"]))
    assert frame["op"] == "subscribe"
    assert frame["args"] == [
        {"channel": "orders", "instType": "SWAP", "instId": "BTC-USDT-SWAP"},
        {"channel": "orders", "instType": "SWAP", "instId": "ETH-USDT-SWAP"},
        {"channel": "positions", "instType": "SWAP", "instId": "BTC-USDT-SWAP"},
        {"channel": "positions", "instType": "SWAP", "instId": "ETH-USDT-SWAP"},
        {"channel": "account"},
    ]
    assert json.loads(subscribe_frame([]))["args"] == [
        {"channel": "orders", "instType": "SWAP"}, {"channel": "positions", "instType": "SWAP"}, {"channel": "account"}]
