"""Binance USD-M futures user data stream: frames -> PrivateEvents, and the listenKey plumbing
(REST paths, stream URL, keepalive interval, the listenKey answer). Pure: no I/O.

Events: ORDER_TRADE_UPDATE (OrderUpdate, plus a VenueFill on a TRADE/CALCULATED execution),
TRADE_LITE (a VenueFill with the same trade id as the ORDER_TRADE_UPDATE it duplicates),
ACCOUNT_UPDATE (BalanceUpdates, PositionUpdates, and FundingEvents when m == FUNDING_FEE),
MARGIN_CALL (MarginEvent), listenKeyExpired (StreamControl key_expired). A frame may come bare
or wrapped as {"stream": ..., "data": {...}} (combined-stream and /private endpoints): both parse.

Wire reference: https://developers.binance.com/docs/derivatives/usds-margined-futures/user-data-streams
(Event-Order-Update, Event-Balance-and-Position-Update, Event-Margin-Call,
Event-User-Data-Stream-Expired, Event-Trade-Lite). Recorded/client shapes:
../shared/fixtures/binance/private_ws_frames.json. The FUNDING_FEE ACCOUNT_UPDATE, MARGIN_CALL,
listenKeyExpired and the listenKey REST answer are built from the docs (no recording).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from perpbot.core.events import ParseError
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
from perpbot.venues._wire import decimal_field, decode, field, int_field, side_field

VENUE = "binance"
REST_BASE = "https://fapi.binance.com"
LISTEN_KEY_PATH = "/fapi/v1/listenKey"
PRIVATE_WS_BASE = "wss://fstream.binance.com/private"  # the 2026 base-URL split (VENUES.md §2)
# The venue: a listenKey lives 60 minutes after creation or its last PUT, and "it's recommended to
# send a ping about every 60 minutes". Pinging at exactly the expiry races it, so we keep alive at
# half the lifetime: one failed PUT can be retried before the key lapses.
LISTEN_KEY_TTL_S = 60 * 60
KEEPALIVE_INTERVAL_S = 30 * 60

_STATUS: dict[str, PrivateOrderStatus] = {
    "NEW": "open",
    "PARTIALLY_FILLED": "partially_filled",
    "FILLED": "filled",
    "CANCELED": "canceled",
    "EXPIRED": "expired",
    "EXPIRED_IN_MATCH": "expired",  # self-trade prevention
    "REJECTED": "rejected",
}
# Execution types that carry a fill: TRADE, and CALCULATED (a liquidation's execution).
_FILL_EXEC = ("TRADE", "CALCULATED")


# ---------------------------------------------------------------------------------------------
# listenKey plumbing


def listen_key_path() -> dict[str, tuple[str, str]]:
    """The listenKey REST calls (all need only the X-MBX-APIKEY header, no signature):
    create (POST), keepalive (PUT) and close (DELETE), each as (method, path)."""
    return {
        "create": ("POST", LISTEN_KEY_PATH),
        "keepalive": ("PUT", LISTEN_KEY_PATH),
        "close": ("DELETE", LISTEN_KEY_PATH),
    }


def stream_url(ws_base: str, listen_key: str) -> str:
    """wss://fstream.binance.com/private + /ws/<listenKey> (raw stream: frames come bare)."""
    if not listen_key or "/" in listen_key:
        raise ValueError("listen key must be a non-empty token")
    return f"{ws_base.rstrip('/')}/ws/{listen_key}"


def parse_listen_key(body: str | bytes) -> str:
    """The POST/PUT answer {"listenKey": "..."} -> the key. (Shape from the docs; no recording.)"""
    message = decode(VENUE, body)
    key = field(VENUE, message, "listenKey", str)
    if not key:
        raise ParseError(VENUE, "empty listenKey")
    return key


# ---------------------------------------------------------------------------------------------
# Parser


def parse_private(frame: str | bytes, recv_ts: float, ctx: PrivateContext) -> list[PrivateEvent]:
    """One user-data frame (bare or {"stream", "data"}-wrapped) -> events. Raises ParseError on
    anything malformed; unknown event types (ALGO_UPDATE, ACCOUNT_CONFIG_UPDATE, ...) give []."""
    message = decode(VENUE, frame)
    if type(message) is not dict:
        raise ParseError(VENUE, "frame is not a JSON object")
    if "stream" in message and "data" in message:
        message = field(VENUE, message, "data", dict)
    event = message.get("e")
    if event is None:
        return _control(message, recv_ts)
    if event == "ORDER_TRADE_UPDATE":
        return _order_trade_update(message, recv_ts, ctx)
    if event == "TRADE_LITE":
        return [_trade_lite(message, recv_ts, ctx)]
    if event == "ACCOUNT_UPDATE":
        return _account_update(message, recv_ts)
    if event == "MARGIN_CALL":
        return _margin_call(message, recv_ts)
    if event == "listenKeyExpired":
        # Docs: {"e":"listenKeyExpired","E":"1736996475556","listenKey":"..."}; E is sometimes a string.
        int_field(VENUE, message, "E")
        return [StreamControl(VENUE, "key_expired", "listenKeyExpired", recv_ts)]
    if type(event) is not str:
        raise ParseError(VENUE, "event type is not a string")
    return []


def _control(message: dict, recv_ts: float) -> list[PrivateEvent]:
    # WS method answers: {"result": null, "id": 1} acknowledges a (un)SUBSCRIBE;
    # {"error": {"code": ..., "msg": ...}, "id": ...} refuses one.
    error = message.get("error")
    if error is not None:
        detail = f"{error.get('code')} {error.get('msg')}" if type(error) is dict else str(error)
        return [StreamControl(VENUE, "error", detail, recv_ts)]
    if "result" in message and "id" in message:
        return [StreamControl(VENUE, "subscribed", f"id {message['id']}", recv_ts)]
    raise ParseError(VENUE, "frame has no event type")


def _side(obj: dict, symbol: str) -> Side:
    return side_field(VENUE, obj, "S", "BUY", "SELL", symbol)


def _order_id(obj: dict, key: str, symbol: str) -> str:
    return str(field(VENUE, obj, key, (int, str), symbol))


def _order_trade_update(message: dict, recv_ts: float, ctx: PrivateContext) -> list[PrivateEvent]:
    order = field(VENUE, message, "o", dict)
    symbol = field(VENUE, order, "s", str)
    state = field(VENUE, order, "X", str, symbol)
    status = _STATUS.get(state)
    if status is None:
        raise ParseError(VENUE, f"unknown order status {state!r}", symbol)
    side = _side(order, symbol)
    order_id = _order_id(order, "i", symbol)
    client_id = order.get("c") or None
    filled = decimal_field(VENUE, order, "z", symbol)
    avg = decimal_field(VENUE, order, "ap", symbol)
    ts = int_field(VENUE, order, "T", symbol)
    reason = "self-trade prevention" if state == "EXPIRED_IN_MATCH" else None
    # Binance pushes the commission of each trade (n), never the order's cumulative fee: fee None.
    out: list[PrivateEvent] = [OrderUpdate(
        VENUE, symbol, client_id, order_id, status, side, decimal_field(VENUE, order, "q", symbol), filled,
        avg if filled else None, None, None, reason, ts, recv_ts,
    )]
    exec_type = field(VENUE, order, "x", str, symbol)
    last_qty = decimal_field(VENUE, order, "l", symbol)
    if exec_type in _FILL_EXEC and last_qty > 0:
        trade_id = _order_id(order, "t", symbol)
        # "n"/"N" are not pushed when there is no commission (docs).
        fee = decimal_field(VENUE, order, "n", symbol) if "n" in order else Decimal(0)
        fee_ccy = order.get("N") or ctx.quote
        maker = field(VENUE, order, "m", bool, symbol)
        out.append(VenueFill(VENUE, symbol, trade_id, client_id, order_id, side, last_qty,
                             decimal_field(VENUE, order, "L", symbol), fee, str(fee_ccy),
                             "maker" if maker else "taker", ts, recv_ts))
        kind = _forced_close_kind(client_id, exec_type)
        if kind is not None:
            out.append(MarginEvent(VENUE, symbol, kind, f"{client_id or exec_type} order {order_id} trade {trade_id}", ts, recv_ts))
    return out


def _forced_close_kind(client_id: str | None, exec_type: str) -> Literal["liquidation", "adl"] | None:
    # Docs: liquidation orders carry client ids "autoclose-...", ADL ones "adl_autoclose";
    # x == CALCULATED is a liquidation execution.
    if client_id is not None and client_id.startswith("adl_autoclose"):
        return "adl"
    if exec_type == "CALCULATED" or (client_id is not None and client_id.startswith("autoclose-")):
        return "liquidation"
    return None


def _trade_lite(message: dict, recv_ts: float, ctx: PrivateContext) -> VenueFill:
    # TRADE_LITE is the low-latency copy of an ORDER_TRADE_UPDATE trade: same trade id (t), no
    # commission. Its fee reads 0 in ctx.quote; the ORDER_TRADE_UPDATE of the same trade id carries
    # the real commission, so a consumer must not let this copy's zero fee win.
    symbol = field(VENUE, message, "s", str)
    return VenueFill(
        VENUE, symbol, _order_id(message, "t", symbol), message.get("c") or None, _order_id(message, "i", symbol),
        _side(message, symbol), decimal_field(VENUE, message, "l", symbol), decimal_field(VENUE, message, "L", symbol),
        Decimal(0), ctx.quote, "maker" if field(VENUE, message, "m", bool, symbol) else "taker",
        int_field(VENUE, message, "T", symbol), recv_ts,
    )


def _account_update(message: dict, recv_ts: float) -> list[PrivateEvent]:
    ts = int_field(VENUE, message, "E")
    update = field(VENUE, message, "a", dict)
    reason = field(VENUE, update, "m", str)
    balances = update.get("B", [])
    positions = update.get("P", [])
    if type(balances) is not list or type(positions) is not list:
        raise ParseError(VENUE, "ACCOUNT_UPDATE B/P is not a list")
    out: list[PrivateEvent] = []
    changes: list[tuple[str, Decimal]] = []
    for bal in balances:
        asset = field(VENUE, bal, "a", str)
        out.append(BalanceUpdate(VENUE, asset, None, None, decimal_field(VENUE, bal, "wb", asset), ts, recv_ts))
        changes.append((asset, decimal_field(VENUE, bal, "bc", asset)))
    symbols: list[str] = []
    for pos in positions:
        event = _position(pos, ts, recv_ts)
        out.append(event)
        if isinstance(event, PositionUpdate) and event.symbol not in symbols:
            symbols.append(event.symbol)
    if reason == "FUNDING_FEE":
        out.extend(_funding(changes, symbols, ts, recv_ts))
    return out


def _position(pos: Any, ts: int, recv_ts: float) -> PrivateEvent:
    symbol = field(VENUE, pos, "s", str)
    side = pos.get("ps", "BOTH")
    if side != "BOTH":
        # Hedge mode (dualSidePosition): LONG/SHORT legs are pushed only when they change, so one
        # leg cannot be told as the signed net size PositionUpdate carries. perpbot runs one-way mode.
        return StreamControl(VENUE, "error", f"hedge-mode position leg {symbol} {side}: perpbot needs one-way mode", recv_ts)
    size = decimal_field(VENUE, pos, "pa", symbol)
    entry = decimal_field(VENUE, pos, "ep", symbol)
    return PositionUpdate(VENUE, symbol, size, entry if size else None, ts, recv_ts)


def _funding(changes: list[tuple[str, Decimal]], symbols: list[str], ts: int, recv_ts: float) -> list[PrivateEvent]:
    """FUNDING_FEE: each asset's balance change (bc, + received) is one payment.

    Binance names no symbol in a funding balance change. Per the docs, a crossed position's funding
    comes with B only (no P), an isolated one's with B and that one position in P: so the symbol is
    the P entry's when the frame has exactly one, else "" (cross: the caller attributes it, e.g. by
    the open positions). payment_id = "<E>:<asset>:<symbol>", unique per settlement and position.
    (Built from the docs' prose: no FUNDING_FEE frame was found recorded or printed.)
    """
    symbol = symbols[0] if len(symbols) == 1 else ""
    return [FundingEvent(VENUE, symbol, f"{ts}:{asset}:{symbol}", amount, ts, recv_ts)
            for asset, amount in changes if amount != 0]


def _margin_call(message: dict, recv_ts: float) -> list[PrivateEvent]:
    # Docs: {"e":"MARGIN_CALL","E":...,"cw":"3.16812045","p":[{"s","ps","pa","mt","iw","mp","up","mm"}]}
    ts = int_field(VENUE, message, "E")
    positions = message.get("p", [])
    if type(positions) is not list:
        raise ParseError(VENUE, "MARGIN_CALL p is not a list")
    out: list[PrivateEvent] = []
    for pos in positions:
        symbol = field(VENUE, pos, "s", str)
        detail = " ".join(f"{key}={pos[key]}" for key in ("ps", "pa", "mt", "mp", "up", "mm") if key in pos)
        out.append(MarginEvent(VENUE, symbol, "margin_call", detail, ts, recv_ts))
    if not out:
        out.append(MarginEvent(VENUE, None, "margin_call", f"cw={message.get('cw')}", ts, recv_ts))
    return out
