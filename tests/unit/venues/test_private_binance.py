"""Binance USD-M user data stream: every frame of ../shared/fixtures/binance/private_ws_frames.json
parsed (bare and {"stream","data"}-wrapped), the docs-built events (a TRADE execution, FUNDING_FEE,
MARGIN_CALL, listenKeyExpired), malformed frames refused, and the listenKey plumbing."""

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
from perpbot.venues.binance.private import (
    KEEPALIVE_INTERVAL_S,
    LISTEN_KEY_TTL_S,
    listen_key_path,
    parse_listen_key,
    parse_private,
    stream_url,
)
from testkit import private_ws_frames

CTX = PrivateContext("binance", {})


def _frames(shared_fixtures) -> list[dict]:
    return private_ws_frames(shared_fixtures, "binance")


def _parse(obj: object, recv_ts: float = 9.0) -> list:
    return parse_private(orjson.dumps(obj), recv_ts, CTX)


def _by_channel(shared_fixtures, prefix: str) -> dict:
    (frame,) = [f["frame"] for f in _frames(shared_fixtures) if f["channel"].startswith(prefix)]
    return frame


def test_every_fixture_frame_parses_to_the_expected_events(shared_fixtures):
    frames = _frames(shared_fixtures)
    assert len(frames) == 6
    for entry in frames:
        events = _parse(entry["frame"])
        channel = entry["channel"]
        if "ACCOUNT_UPDATE" in channel:
            balance, net, long_leg, short_leg = events
            assert balance == BalanceUpdate("binance", "USDT", None, None, Decimal("122624.12345678"), 1564745798939, 9.0)
            assert net == PositionUpdate("binance", "BTCUSDT", Decimal(0), None, 1564745798939, 9.0)
            # Hedge-mode legs (ps LONG/SHORT) cannot be a net size: surfaced as errors, not guessed.
            for leg, side in ((long_leg, "LONG"), (short_leg, "SHORT")):
                assert isinstance(leg, StreamControl) and leg.kind == "error" and side in leg.detail
        elif "ORDER_TRADE_UPDATE" in channel:
            (order,) = events  # x == NEW: no fill
            assert isinstance(order, OrderUpdate)
            assert (order.symbol, order.client_order_id, order.venue_order_id, order.status, order.side) == (
                "BTCUSDT", "TEST", "8886774", "open", "buy")
            assert (order.qty, order.filled_qty, order.avg_price, order.fee, order.ts_ms) == (
                Decimal("0.001"), Decimal(0), None, None, 1568879465651)
        elif "TRADE_LITE" in channel:
            (fill,) = events
            assert isinstance(fill, VenueFill)
            assert (fill.symbol, fill.trade_id, fill.venue_order_id, fill.client_order_id) == (
                "ETHUSDT", "4467432841", "8389765739703625592", "O-20240930-081155-001-000-29")
            assert (fill.side, fill.qty, fill.price, fill.liquidity, fill.ts_ms) == (
                "buy", Decimal("0.037"), Decimal("2631.90"), "taker", 1727683915920)
            assert (fill.fee, fill.fee_currency) == (Decimal(0), "USDT")  # TRADE_LITE carries no commission
        elif "ALGO_UPDATE" in channel:
            assert events == []  # conditional (algo) orders: not perpbot's; the wrapper parsed fine
        else:  # pragma: no cover - a new fixture frame needs its own assertions
            raise AssertionError(f"unexpected fixture frame {channel}")


def test_wrapped_and_bare_frames_parse_alike(shared_fixtures):
    for prefix in ("user data stream: ACCOUNT_UPDATE", "user data stream: ORDER_TRADE_UPDATE", "user data stream: TRADE_LITE"):
        bare = _by_channel(shared_fixtures, prefix)
        assert _parse({"stream": "abc123listenkey", "data": bare}) == _parse(bare)


def _trade_update(shared_fixtures, **order: object) -> dict:
    """The fixture's ORDER_TRADE_UPDATE turned into a fill (x TRADE), fields as the docs define them."""
    frame = copy.deepcopy(_by_channel(shared_fixtures, "user data stream: ORDER_TRADE_UPDATE"))
    frame["o"].update({"o": "LIMIT", "x": "TRADE", "X": "PARTIALLY_FILLED", "q": "0.010", "l": "0.004",
                       "L": "7100.50", "z": "0.004", "ap": "7100.50", "n": "0.00568040", "N": "USDT",
                       "t": 4467432841, "m": True, "T": 1568879465700})
    frame["o"].update(order)
    return frame


def test_trade_execution_gives_order_and_fill_with_commission(shared_fixtures):
    order, fill = _parse(_trade_update(shared_fixtures))
    assert (order.status, order.filled_qty, order.avg_price, order.fee) == (
        "partially_filled", Decimal("0.004"), Decimal("7100.50"), None)
    assert (fill.trade_id, fill.qty, fill.price, fill.fee, fill.fee_currency, fill.liquidity) == (
        "4467432841", Decimal("0.004"), Decimal("7100.50"), Decimal("0.00568040"), "USDT", "maker")
    assert fill.ts_ms == 1568879465700 and fill.client_order_id == "TEST"
    # No commission pushed (the docs: n/N omitted when none): fee 0 in the account quote.
    frame = _trade_update(shared_fixtures)
    del frame["o"]["n"], frame["o"]["N"]
    assert _parse(frame)[1].fee == Decimal(0)


def test_trade_lite_duplicates_the_trade_by_key(shared_fixtures):
    lite = copy.deepcopy(_by_channel(shared_fixtures, "user data stream: TRADE_LITE"))
    (lite_fill,) = _parse(lite)
    full = _trade_update(shared_fixtures, s="ETHUSDT", t=lite["t"])
    full_fill = _parse(full)[1]
    assert lite_fill.key == full_fill.key == ("binance", "ETHUSDT", "4467432841")


def test_liquidation_and_adl_executions_add_margin_events(shared_fixtures):
    liq = _parse(_trade_update(shared_fixtures, c="autoclose-1568879465651", x="TRADE", X="FILLED"))
    assert [type(e) for e in liq] == [OrderUpdate, VenueFill, MarginEvent] and liq[2].kind == "liquidation"
    calc = _parse(_trade_update(shared_fixtures, c="", x="CALCULATED", X="FILLED"))
    assert calc[2].kind == "liquidation" and calc[0].client_order_id is None
    adl = _parse(_trade_update(shared_fixtures, c="adl_autoclose", X="FILLED"))
    assert adl[2].kind == "adl"


@pytest.mark.parametrize(("state", "status"), [
    ("NEW", "open"), ("FILLED", "filled"), ("CANCELED", "canceled"), ("EXPIRED", "expired"),
    ("EXPIRED_IN_MATCH", "expired"),
])
def test_status_mapping(shared_fixtures, state, status):
    frame = copy.deepcopy(_by_channel(shared_fixtures, "user data stream: ORDER_TRADE_UPDATE"))
    frame["o"]["X"] = state
    assert _parse(frame)[0].status == status


def test_funding_fee_account_update_from_docs():
    # Built from the docs' prose (no example printed): crossed funding -> B only; isolated -> B + that P.
    cross = {"e": "ACCOUNT_UPDATE", "E": 1700000000123, "T": 1700000000120,
             "a": {"m": "FUNDING_FEE", "B": [{"a": "USDT", "wb": "1000.5", "cw": "1000.5", "bc": "-0.125"}]}}
    balance, funding = _parse(cross)
    assert balance.wallet == Decimal("1000.5")
    assert funding == FundingEvent("binance", "", "1700000000123:USDT:", Decimal("-0.125"), 1700000000123, 9.0)
    isolated = copy.deepcopy(cross)
    isolated["a"]["B"][0]["bc"] = "0.25"
    isolated["a"]["P"] = [{"s": "ETHUSDT", "pa": "-1.5", "ep": "3000.1", "cr": "0", "up": "1", "mt": "isolated",
                           "iw": "100", "ps": "BOTH"}]
    balance, position, funding = _parse(isolated)
    assert position == PositionUpdate("binance", "ETHUSDT", Decimal("-1.5"), Decimal("3000.1"), 1700000000123, 9.0)
    assert (funding.symbol, funding.payment_id, funding.amount) == ("ETHUSDT", "1700000000123:USDT:ETHUSDT", Decimal("0.25"))
    # An ORDER-reason update with a balance change is not funding.
    order_reason = copy.deepcopy(cross)
    order_reason["a"]["m"] = "ORDER"
    assert [type(e) for e in _parse(order_reason)] == [BalanceUpdate]


def test_margin_call_from_docs():
    frame = {"e": "MARGIN_CALL", "E": 1587727187525, "cw": "3.16812045", "p": [
        {"s": "ETHUSDT", "ps": "LONG", "pa": "1.327", "mt": "CROSSED", "iw": "0", "mp": "187.17127",
         "up": "-1.166074", "mm": "1.614445"}]}
    (event,) = _parse(frame)
    assert isinstance(event, MarginEvent)
    assert (event.symbol, event.kind, event.ts_ms) == ("ETHUSDT", "margin_call", 1587727187525)
    assert "mm=1.614445" in event.detail and "mp=187.17127" in event.detail


def test_listen_key_expired_and_method_answers():
    # E arrives as a string on the live venue (go-binance issue #510) and as a number in the docs.
    for e_value in ("1736996475556", 1576653824250):
        (event,) = _parse({"e": "listenKeyExpired", "E": e_value, "listenKey": "WsCMN0a4"})
        assert event == StreamControl("binance", "key_expired", "listenKeyExpired", 9.0)
    assert _parse({"result": None, "id": 1})[0].kind == "subscribed"
    assert _parse({"error": {"code": 2, "msg": "Invalid request"}, "id": 1})[0].kind == "error"
    assert _parse({"e": "ACCOUNT_CONFIG_UPDATE", "E": 1, "T": 1, "ac": {"s": "BTCUSDT", "l": 25}}) == []


@pytest.mark.parametrize("frame", [
    b"not json", b"[]", b'{"E": 1}', b'{"e": 5}', b'{"e":"ORDER_TRADE_UPDATE","E":1}',
    b'{"e":"listenKeyExpired","E":"soon"}', b'{"e":"ACCOUNT_UPDATE","E":1,"a":{"m":"ORDER","B":{}}}',
    b'{"e":"ACCOUNT_UPDATE","E":1,"a":{"m":"ORDER","B":[{"a":"USDT","wb":"1"}]}}',
    b'{"e":"TRADE_LITE","E":1,"T":1,"s":"ETHUSDT","l":"1","L":"2","S":"BUY","t":1,"i":2}',
    b'{"e":"MARGIN_CALL","E":1,"p":[{"ps":"LONG"}]}', b'{"stream":"x","data":[1]}',
])
def test_malformed_frames_raise(frame):
    with pytest.raises(ParseError):
        parse_private(frame, 1.0, CTX)


@pytest.mark.parametrize("change", [{"X": "WEIRD"}, {"S": "UP"}, {"z": 1.5}, {"l": "x"}, {"m": "yes"}, {"i": None}])
def test_malformed_order_fields_raise(shared_fixtures, change):
    frame = _trade_update(shared_fixtures)
    frame["o"].update(change)
    with pytest.raises(ParseError):
        _parse(frame)


def test_listen_key_plumbing():
    assert listen_key_path() == {
        "create": ("POST", "/fapi/v1/listenKey"), "keepalive": ("PUT", "/fapi/v1/listenKey"),
        "close": ("DELETE", "/fapi/v1/listenKey")}
    key = "pqia91ma19a5s61cv6a81va65sdf19v8a65a1a5s61cv6a81va65sdf19v8a65a1"
    assert parse_listen_key(json.dumps({"listenKey": key})) == key
    assert parse_listen_key(json.dumps({"listenKey": key, "expiration": 1}).encode()) == key
    for bad in (b"{}", b'{"listenKey": ""}', b"nope", b'{"code": -1125, "msg": "This listenKey does not exist."}'):
        with pytest.raises(ParseError):
            parse_listen_key(bad)
    assert stream_url("wss://fstream.binance.com/private/", key) == f"wss://fstream.binance.com/private/ws/{key}"
    with pytest.raises(ValueError):
        stream_url("wss://fstream.binance.com/private", "")
    assert LISTEN_KEY_TTL_S == 3600 and 0 < KEEPALIVE_INTERVAL_S < LISTEN_KEY_TTL_S
