"""OKX v5 private WebSocket (wss://ws.okx.com:8443/ws/v5/private): frames -> PrivateEvents, and
the login / subscribe frames. Pure: no I/O; credentials come in as arguments and never leave
the frame they sign.

Channels: `orders` (OrderUpdate, plus a VenueFill when the push carries a fill), `positions`
(PositionUpdate), `account` (BalanceUpdate per currency), `balance_and_position` (both).
Units and signs follow perpbot.core.private_events: order and fill quantities stay in contracts,
positions become signed base units through ctx.contract_size, fees are flipped to positive-is-cost.

Wire reference: https://www.okx.com/docs-v5/en/#order-book-trading-trade-ws-order-channel,
#trading-account-websocket-positions-channel, #trading-account-websocket-account-channel,
#trading-account-websocket-balance-and-position-channel, #overview-websocket-login.
Recorded shapes: ../shared/fixtures/okx/private_ws_frames.json (account, orders). The login
reply, the positions and balance_and_position pushes are built from the docs (not recorded).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from decimal import Decimal
from typing import Literal
import orjson

from perpbot.core.events import ParseError
from perpbot.core.margin import LegMargin
from perpbot.core.orders import Side
from perpbot.core.private_events import (
    BalanceUpdate,
    MarginEvent,
    OrderUpdate,
    PositionUpdate,
    PrivateContext,
    PrivateEvent,
    PrivateOrderStatus,
    StreamControl,
    VenueFill,
)
from perpbot.venues._wire import decimal_field, decode, field, int_field, optional_decimal, side_field

VENUE = "okx"
PRIVATE_WS_URL = "wss://ws.okx.com:8443/ws/v5/private"
LOGIN_PATH = "/users/self/verify"
INST_TYPE = "SWAP"

_STATUS: dict[str, PrivateOrderStatus] = {
    "live": "open",
    "partially_filled": "partially_filled",
    "filled": "filled",
    "canceled": "canceled",
    "mmp_canceled": "canceled",  # market-maker protection pulled the order
}
# Login failures arrive as {"event":"error","code":...}: the docs' error table for WS login
# (60004 bad timestamp, 60005 bad apiKey, 60006 expired timestamp, 60007 bad sign, 60009 login
# failure, 60024 wrong passphrase, 60030 repeated login, 60031 unknown key, 63999 internal).
_LOGIN_CODES = frozenset({"60004", "60005", "60006", "60007", "60009", "60024", "60030", "60031", "63999"})
_LIQUIDATION_CATEGORIES = {"full_liquidation": "liquidation", "partial_liquidation": "liquidation", "adl": "adl"}


# ---------------------------------------------------------------------------------------------
# Builders


def login_sign(secret: str, timestamp: str) -> str:
    """base64(HMAC-SHA256(secret, timestamp + "GET" + "/users/self/verify"))."""
    digest = hmac.new(secret.encode(), f"{timestamp}GET{LOGIN_PATH}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def login_frame(api_key: str, secret: str, passphrase: str, now_s: float) -> str:
    """The `login` op. OKX wants the timestamp in whole epoch seconds, as a string."""
    timestamp = str(int(now_s))
    arg = {"apiKey": api_key, "passphrase": passphrase, "timestamp": timestamp, "sign": login_sign(secret, timestamp)}
    return orjson.dumps({"op": "login", "args": [arg]}).decode()


def subscribe_frame(symbols: Iterable[str]) -> str:
    """orders + positions per native SWAP symbol (every SWAP when `symbols` is empty), and account."""
    wanted = list(symbols)
    args: list[dict[str, str]] = []
    for channel in ("orders", "positions"):
        if wanted:
            args.extend({"channel": channel, "instType": INST_TYPE, "instId": s} for s in wanted)
        else:
            args.append({"channel": channel, "instType": INST_TYPE})
    args.append({"channel": "account"})
    return orjson.dumps({"op": "subscribe", "args": args}).decode()


# ---------------------------------------------------------------------------------------------
# Parser


def parse_private(frame: str | bytes, recv_ts: float, ctx: PrivateContext) -> list[PrivateEvent]:
    """One private frame -> events. Raises ParseError on anything malformed."""
    if frame == "pong" or frame == b"pong":  # the keepalive answer is bare text, not JSON
        return [StreamControl(VENUE, "pong", "pong", recv_ts)]
    message = decode(VENUE, frame)
    if type(message) is not dict:
        raise ParseError(VENUE, "frame is not a JSON object")
    event = message.get("event")
    if event is not None:
        return _control(message, event, recv_ts)
    arg = field(VENUE, message, "arg", dict)
    data = field(VENUE, message, "data", list)
    channel = field(VENUE, arg, "channel", str)
    out: list[PrivateEvent] = []
    if channel == "orders":
        for item in data:
            out.extend(_order(item, recv_ts))
    elif channel == "positions":
        for item in data:
            out.append(_position(item, recv_ts, ctx))
    elif channel == "account":
        for item in data:
            out.extend(_account(item, recv_ts))
    elif channel == "balance_and_position":
        for item in data:
            out.extend(_balance_and_position(item, recv_ts, ctx))
    # Any other channel is well-formed but not ours: no events.
    return out


def _control(message: dict, event: object, recv_ts: float) -> list[PrivateEvent]:
    # Docs shapes: {"event":"login","code":"0","msg":"","connId":"..."};
    # {"event":"subscribe","arg":{...},"connId":"..."}; {"event":"error","code":"60009","msg":"Login failed."}.
    if type(event) is not str:
        raise ParseError(VENUE, "event is not a string")
    code = str(message.get("code", ""))
    msg = str(message.get("msg", ""))
    if event == "login":
        ok = code in ("", "0")
        return [StreamControl(VENUE, "login_ok" if ok else "login_failed", f"{code} {msg}".strip(), recv_ts)]
    if event == "subscribe":
        arg = message.get("arg")
        detail = f"{arg.get('channel')}:{arg.get('instType', '')}:{arg.get('instId', '')}" if type(arg) is dict else ""
        return [StreamControl(VENUE, "subscribed", detail, recv_ts)]
    if event == "error":
        if code in _LOGIN_CODES:
            return [StreamControl(VENUE, "login_failed", f"{code} {msg}".strip(), recv_ts)]
        return [StreamControl(VENUE, "error", f"{code} {msg}".strip(), recv_ts)]
    if event == "channel-conn-count-error":
        return [StreamControl(VENUE, "subscribe_failed", f"{event} {code} {msg}".strip(), recv_ts)]
    if event == "notice":  # e.g. 64008: the service will be upgraded, reconnect
        return [StreamControl(VENUE, "error", f"notice {code} {msg}".strip(), recv_ts)]
    # unsubscribe acks, channel-conn-count: informational, nothing to act on.
    return []


def _opt_decimal(obj: dict, key: str, symbol: str | None) -> Decimal | None:
    return optional_decimal(VENUE, obj, key, symbol)


def _side(item: dict, symbol: str) -> Side:
    return side_field(VENUE, item, "side", "buy", "sell", symbol)


def _neg(value: Decimal | None) -> Decimal | None:
    # OKX prints fees negative-as-cost (a positive value is a rebate): flip to positive-is-cost.
    return None if value is None else Decimal(0) - value  # 0 - x, not -x: no "-0" for a zero fee


def _order(item: object, recv_ts: float) -> list[PrivateEvent]:
    if type(item) is not dict:
        raise ParseError(VENUE, "orders data element is not an object")
    symbol = field(VENUE, item, "instId", str)
    state = field(VENUE, item, "state", str, symbol)
    status = _STATUS.get(state)
    if status is None:
        raise ParseError(VENUE, f"unknown order state {state!r}", symbol)
    side = _side(item, symbol)
    order_id = field(VENUE, item, "ordId", str, symbol)
    client_id = item.get("clOrdId") or None
    filled = _opt_decimal(item, "accFillSz", symbol) or Decimal(0)
    avg = _opt_decimal(item, "avgPx", symbol)
    ts = int_field(VENUE, item, "uTime", symbol)
    fee_ccy = item.get("feeCcy") or None
    reason_text = item.get("cancelSourceReason") or item.get("cancelSource")
    reason = str(reason_text) if reason_text else None
    out: list[PrivateEvent] = [OrderUpdate(
        VENUE, symbol, client_id, order_id, status, side, decimal_field(VENUE, item, "sz", symbol), filled,
        avg if avg else None, _neg(_opt_decimal(item, "fee", symbol)), fee_ccy, reason, ts, recv_ts,
    )]
    fill = _fill(item, symbol, side, order_id, client_id, filled, recv_ts)
    if fill is not None:
        out.append(fill)
        kind = _LIQUIDATION_CATEGORIES.get(str(item.get("category", "")))
        if kind == "liquidation":
            out.append(MarginEvent(VENUE, symbol, "liquidation", f"{item['category']} order {order_id} trade {fill.trade_id}", fill.ts_ms, recv_ts))
        elif kind == "adl":
            out.append(MarginEvent(VENUE, symbol, "adl", f"adl order {order_id} trade {fill.trade_id}", fill.ts_ms, recv_ts))
    return out


def _fill(item: dict, symbol: str, side: Side, order_id: str, client_id: str | None, filled: Decimal,
          recv_ts: float) -> VenueFill | None:
    """The fill an `orders` push carries, if any: tradeId set and fillSz > 0."""
    trade_id = item.get("tradeId") or ""
    size = _opt_decimal(item, "fillSz", symbol)
    if not trade_id or size is None or size <= 0:
        return None
    price = decimal_field(VENUE, item, "fillPx", symbol)
    fee = _opt_decimal(item, "fillFee", symbol)
    if fee is None:
        # The docs list fillFee on every fill push; the recorded client fixture lacks it. When this
        # fill is the order's first (accFillSz == fillSz) the cumulative `fee` is this fill's fee.
        if filled != size:
            raise ParseError(VENUE, "fill without fillFee on a later fill of the order", symbol)
        fee = _opt_decimal(item, "fee", symbol) or Decimal(0)
    fee_ccy = item.get("fillFeeCcy") or item.get("feeCcy") or ""
    if not fee_ccy:
        raise ParseError(VENUE, "fill without a fee currency", symbol)
    exec_type = item.get("execType")
    liquidity: Literal["maker", "taker"] | None = "taker" if exec_type == "T" else "maker" if exec_type == "M" else None
    fill_time = item.get("fillTime")
    ts = int_field(VENUE, item, "fillTime" if fill_time not in (None, "") else "uTime", symbol)
    return VenueFill(VENUE, symbol, str(trade_id), client_id, order_id, side, size, price, Decimal(0) - fee, str(fee_ccy),
                     liquidity, ts, recv_ts)


def _position(item: object, recv_ts: float, ctx: PrivateContext) -> PrivateEvent:
    # Built from the docs (no recorded push): instId, posSide (net | long | short), pos (contracts,
    # signed in net mode), avgPx, uTime.
    if type(item) is not dict:
        raise ParseError(VENUE, "position element is not an object")
    symbol = field(VENUE, item, "instId", str)
    pos_side = item.get("posSide", "net")
    ts = int_field(VENUE, item, "uTime", symbol)
    if pos_side not in ("net", ""):
        # long/short (hedge) mode: one leg cannot be told as the signed net size PositionUpdate
        # carries without the other leg. perpbot runs net mode; say so loudly instead of guessing.
        return StreamControl(VENUE, "error", f"hedge-mode position leg {symbol} {pos_side}: perpbot needs net mode", recv_ts)
    contracts = _opt_decimal(item, "pos", symbol) or Decimal(0)
    avg = _opt_decimal(item, "avgPx", symbol)
    size = contracts * ctx.contract_size(symbol)
    return PositionUpdate(VENUE, symbol, size, avg if contracts and avg else None, ts, recv_ts,
                          _position_margin(item, symbol, size, ts))


def _position_margin(item: dict, symbol: str, size: Decimal, ts: int) -> LegMargin | None:
    """The `positions` push's margin fields (docs: liqPx, mmr = maintenance margin, mgnRatio, adl 1-5,
    mgnMode, lever, markPx); None for balance_and_position's posData, which carries none of them."""
    if "liqPx" not in item:
        return None
    liquidation = _opt_decimal(item, "liqPx", symbol)
    adl = item.get("adl")
    return LegMargin(
        VENUE, symbol, size, _opt_decimal(item, "markPx", symbol), liquidation if liquidation else None,
        _opt_decimal(item, "mmr", symbol), _opt_decimal(item, "mgnRatio", symbol),
        int(adl) if isinstance(adl, str) and adl.isdigit() else None, item.get("mgnMode") or None,
        _opt_decimal(item, "lever", symbol), ts,
    )


def _account(item: object, recv_ts: float) -> list[PrivateEvent]:
    if type(item) is not dict:
        raise ParseError(VENUE, "account element is not an object")
    details = field(VENUE, item, "details", list)
    frame_ts = int_field(VENUE, item, "uTime")
    out: list[PrivateEvent] = []
    for detail in details:
        if type(detail) is not dict:
            raise ParseError(VENUE, "account detail is not an object")
        ccy = field(VENUE, detail, "ccy", str)
        available = _opt_decimal(detail, "availEq", ccy)
        if available is None:  # availEq is "" outside the multi-currency margin modes
            available = _opt_decimal(detail, "availBal", ccy)
        ts = int_field(VENUE, detail, "uTime", ccy) if detail.get("uTime") not in (None, "") else frame_ts
        out.append(BalanceUpdate(VENUE, ccy, _opt_decimal(detail, "eq", ccy), available,
                                 _opt_decimal(detail, "cashBal", ccy), ts, recv_ts))
    return out


def _list(item: dict, key: str) -> list:
    """An optional list field: absent (or "") is empty, anything else but a list is malformed."""
    value = item.get(key, [])
    if value == "":
        return []
    if type(value) is not list:
        raise ParseError(VENUE, f"{key} is not a list")
    return value


def _balance_and_position(item: object, recv_ts: float, ctx: PrivateContext) -> list[PrivateEvent]:
    # Built from the docs (no recorded push): {pTime, eventType, balData: [{ccy, cashBal, uTime}],
    # posData: [{instId, posSide, pos, avgPx, uTime, ...}], trades: [...]}. Cash balance only:
    # equity and availability come from the `account` channel.
    if type(item) is not dict:
        raise ParseError(VENUE, "balance_and_position element is not an object")
    push_ts = int_field(VENUE, item, "pTime")
    out: list[PrivateEvent] = []
    for bal in _list(item, "balData"):
        if type(bal) is not dict:
            raise ParseError(VENUE, "balData element is not an object")
        ccy = field(VENUE, bal, "ccy", str)
        ts = int_field(VENUE, bal, "uTime", ccy) if bal.get("uTime") not in (None, "") else push_ts
        out.append(BalanceUpdate(VENUE, ccy, None, None, decimal_field(VENUE, bal, "cashBal", ccy), ts, recv_ts))
    for pos in _list(item, "posData"):
        if type(pos) is dict and pos.get("uTime") in (None, ""):
            pos = {**pos, "uTime": str(push_ts)}
        out.append(_position(pos, recv_ts, ctx))
    return out
