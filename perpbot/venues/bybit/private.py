"""Bybit v5 private WebSocket (wss://stream.bybit.com/v5/private): frames -> PrivateEvents, and
the auth / subscribe frames. Pure: no I/O; credentials come in as arguments.

Topics: `order` (OrderUpdate), `execution` (VenueFill; execType Funding is a FundingEvent, BustTrade
and AdlTrade add a MarginEvent), `position` (PositionUpdate, size unsigned + side -> signed),
`wallet` (BalanceUpdate per coin). Control: the auth answer, subscribe acks, pong, and the
WS-trade (/v5/trade) answers, which belong to order entry and give [] here.

Wire reference: bybit-exchange/docs docs/v5/websocket/wss-authentication.mdx and
docs/v5/websocket/private/{order,execution,position,wallet}.mdx; enums in docs/v5/enum.mdx.
Doc examples: ../shared/fixtures/bybit/private_ws_frames.json. A failed auth / subscribe answer
is built from the documented success shape with success=false (no example printed).
"""

from __future__ import annotations

import hashlib
import hmac
from decimal import Decimal
from typing import Literal

import orjson

from perpbot.core.events import ParseError
from perpbot.core.margin import LegMargin
from perpbot.core.orders import Side
from perpbot.core.private_events import (
    BalanceUpdate,
    FundingEvent,
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

VENUE = "bybit"
PRIVATE_WS_URL = "wss://stream.bybit.com/v5/private"
TOPICS = ("order", "execution", "position", "wallet")
PING_FRAME = '{"op":"ping"}'

_STATUS: dict[str, PrivateOrderStatus] = {
    "New": "open",
    "PartiallyFilled": "partially_filled",
    "Untriggered": "open",  # a conditional order waiting for its trigger
    "Triggered": "open",  # instantaneous: Untriggered -> New
    "Filled": "filled",
    "Cancelled": "canceled",  # derivatives: may carry an executed qty (IOC rest)
    "PartiallyFilledCanceled": "canceled",  # spot only
    "Deactivated": "canceled",
    "Rejected": "rejected",
}
# execType values that move a position (docs/v5/enum.mdx#exectype). Funding is handled apart.
_FILL_EXEC = frozenset({"Trade", "AdlTrade", "BustTrade", "BlockTrade", "MovePosition", "Delivery", "Settle", "FutureSpread"})
_FORCED: dict[str, Literal["liquidation", "adl"]] = {"BustTrade": "liquidation", "AdlTrade": "adl"}


# ---------------------------------------------------------------------------------------------
# Builders


def auth_signature(secret: str, expires_ms: int) -> str:
    """hex(HMAC-SHA256(secret, "GET/realtime" + expires))."""
    return hmac.new(secret.encode(), f"GET/realtime{expires_ms}".encode(), hashlib.sha256).hexdigest()


def auth_frame(api_key: str, secret: str, expires_ms: int) -> str:
    """{"op":"auth","args":[api_key, expires, signature]}; expires (ms) must lie in the future."""
    return orjson.dumps({"op": "auth", "args": [api_key, expires_ms, auth_signature(secret, expires_ms)]}).decode()


def subscribe_frame() -> str:
    """The all-in-one private topics (every category; the parser keeps each event's native symbol)."""
    return orjson.dumps({"op": "subscribe", "args": list(TOPICS)}).decode()


# ---------------------------------------------------------------------------------------------
# Parser


def parse_private(frame: str | bytes, recv_ts: float, ctx: PrivateContext) -> list[PrivateEvent]:
    """One private frame -> events. Raises ParseError on anything malformed."""
    message = decode(VENUE, frame)
    if type(message) is not dict:
        raise ParseError(VENUE, "frame is not a JSON object")
    topic = message.get("topic")
    if topic is None:
        return _control(message, recv_ts)
    if type(topic) is not str:
        raise ParseError(VENUE, "topic is not a string")
    base = topic.split(".", 1)[0]  # categorised topics: "order.linear", "execution.fast"...
    if base not in TOPICS:
        return []
    data = field(VENUE, message, "data", list)
    out: list[PrivateEvent] = []
    for item in data:
        if type(item) is not dict:
            raise ParseError(VENUE, f"{topic} data element is not an object")
        if base == "order":
            out.append(_order(item, recv_ts, ctx))
        elif base == "execution":
            out.extend(_execution(item, recv_ts, ctx))
        elif base == "position":
            out.append(_position(item, recv_ts))
        else:
            out.extend(_wallet(item, int_field(VENUE, message, "creationTime"), recv_ts))
    return out


def _control(message: dict, recv_ts: float) -> list[PrivateEvent]:
    op = message.get("op")
    if type(op) is not str:
        raise ParseError(VENUE, "frame has neither topic nor op")
    detail = str(message.get("ret_msg", message.get("retMsg", "")))
    # Private stream answers carry `success`; the WS-trade endpoint answers with `retCode`.
    if "success" in message:
        ok = field(VENUE, message, "success", bool)
    elif "retCode" in message:
        ok = field(VENUE, message, "retCode", int) == 0
    else:
        ok = op == "pong"  # private pong: {"req_id":"","op":"pong","args":["1675418560633"],"conn_id":"..."}
    if op == "auth":
        return [StreamControl(VENUE, "login_ok" if ok else "login_failed", detail, recv_ts)]
    if op == "subscribe":
        return [StreamControl(VENUE, "subscribed" if ok else "subscribe_failed", detail, recv_ts)]
    if op in ("ping", "pong"):
        return [StreamControl(VENUE, "pong" if ok else "error", detail or op, recv_ts)]
    if op.startswith("order.") or op == "unsubscribe":
        return []  # WS-trade answers are order entry's; unsubscribe acks need no action
    return [] if ok else [StreamControl(VENUE, "error", f"{op}: {detail}", recv_ts)]


def _opt_decimal(obj: dict, key: str, symbol: str | None) -> Decimal | None:
    return optional_decimal(VENUE, obj, key, symbol)


def _side(obj: dict, symbol: str) -> Side:
    return side_field(VENUE, obj, "side", "Buy", "Sell", symbol)


def _order(item: dict, recv_ts: float, ctx: PrivateContext) -> OrderUpdate:
    symbol = field(VENUE, item, "symbol", str)
    state = field(VENUE, item, "orderStatus", str, symbol)
    status = _STATUS.get(state)
    if status is None:
        raise ParseError(VENUE, f"unknown order status {state!r}", symbol)
    filled = _opt_decimal(item, "cumExecQty", symbol) or Decimal(0)
    avg = _opt_decimal(item, "avgPrice", symbol)
    reject = item.get("rejectReason") or ""
    cancel = item.get("cancelType") or ""
    reason = reject if reject not in ("", "EC_NoError") else cancel if cancel not in ("", "UNKNOWN") else None
    fee_ccy = item.get("feeCurrency") or ctx.quote  # linear: fees are in the settle coin
    return OrderUpdate(
        VENUE, symbol, item.get("orderLinkId") or None, field(VENUE, item, "orderId", str, symbol), status,
        _side(item, symbol), decimal_field(VENUE, item, "qty", symbol), filled, avg if filled and avg else None,
        _opt_decimal(item, "cumExecFee", symbol), str(fee_ccy), reason,
        int_field(VENUE, item, "updatedTime", symbol), recv_ts,
    )


def _execution(item: dict, recv_ts: float, ctx: PrivateContext) -> list[PrivateEvent]:
    symbol = field(VENUE, item, "symbol", str)
    exec_type = field(VENUE, item, "execType", str, symbol)
    exec_id = field(VENUE, item, "execId", str, symbol)
    ts = int_field(VENUE, item, "execTime", symbol)
    fee = decimal_field(VENUE, item, "execFee", symbol)
    if exec_type == "Funding":
        # The funding settlement of a perpetual position. Its execFee is a cost when positive: the
        # transaction log's `funding` is "opposite to the execFee" and positive there means received
        # (docs/v5/account/transaction-log.mdx). So amount (+ received) = -execFee. Built from the
        # docs (no recorded Funding execution).
        return [FundingEvent(VENUE, symbol, exec_id, Decimal(0) - fee, ts, recv_ts)]
    if exec_type not in _FILL_EXEC:
        return []
    order_id = field(VENUE, item, "orderId", str, symbol)
    maker = item.get("isMaker")
    fill = VenueFill(
        VENUE, symbol, exec_id, item.get("orderLinkId") or None, order_id, _side(item, symbol),
        decimal_field(VENUE, item, "execQty", symbol), decimal_field(VENUE, item, "execPrice", symbol), fee,
        str(item.get("feeCurrency") or ctx.quote), "maker" if maker is True else "taker" if maker is False else None,
        ts, recv_ts,
    )
    kind = _FORCED.get(exec_type)
    if kind is None:
        return [fill]
    return [fill, MarginEvent(VENUE, symbol, kind, f"{exec_type} order {order_id} exec {exec_id}", ts, recv_ts)]


def _position(item: dict, recv_ts: float) -> PrivateEvent:
    symbol = field(VENUE, item, "symbol", str)
    idx = item.get("positionIdx", 0)
    if idx != 0:
        # positionIdx 1/2 are the buy/sell legs of hedge mode: one leg cannot be told as the signed
        # net size PositionUpdate carries. perpbot runs one-way mode (positionIdx 0).
        return StreamControl(VENUE, "error", f"hedge-mode position leg {symbol} positionIdx={idx}: perpbot needs one-way mode", recv_ts)
    size = decimal_field(VENUE, item, "size", symbol)
    side = field(VENUE, item, "side", str, symbol)
    if side == "Sell":
        size = Decimal(0) - size
    elif side not in ("Buy", "", "None"):  # "" (or "None" on older accounts) when flat
        raise ParseError(VENUE, f"unknown position side {side!r}", symbol)
    entry = _opt_decimal(item, "entryPrice", symbol)
    ts = int_field(VENUE, item, "updatedTime", symbol)
    return PositionUpdate(VENUE, symbol, size, entry if size and entry else None, ts, recv_ts,
                          _position_margin(item, symbol, size, ts))


def _position_margin(item: dict, symbol: str, size: Decimal, ts: int) -> LegMargin | None:
    """The position push's margin fields (docs: liqPrice, "" or "0" when none; positionMM; adlRankIndicator
    0-5; tradeMode 0 cross / 1 isolated; leverage; markPrice). The account's MM rate is in `wallet`."""
    if "liqPrice" not in item:
        return None
    liquidation = _opt_decimal(item, "liqPrice", symbol)
    adl = item.get("adlRankIndicator")
    mode = {0: "cross", 1: "isolated"}.get(item.get("tradeMode"))  # type: ignore[arg-type]
    return LegMargin(
        VENUE, symbol, size, _opt_decimal(item, "markPrice", symbol), liquidation if liquidation else None,
        _opt_decimal(item, "positionMM", symbol), None, adl if type(adl) is int else None, mode,
        _opt_decimal(item, "leverage", symbol), ts,
    )


def _wallet(item: dict, ts: int, recv_ts: float) -> list[PrivateEvent]:
    coins = field(VENUE, item, "coin", list)
    out: list[PrivateEvent] = []
    for coin in coins:
        name = field(VENUE, coin, "coin", str)
        # Per-coin availability: `availableToWithdraw` where still sent (deprecated for UTA, ""),
        # else None; the account-level totalAvailableBalance is in USD, not per coin.
        out.append(BalanceUpdate(VENUE, name, _opt_decimal(coin, "equity", name),
                                 _opt_decimal(coin, "availableToWithdraw", name),
                                 _opt_decimal(coin, "walletBalance", name), ts, recv_ts))
    return out
