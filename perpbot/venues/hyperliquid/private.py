"""Hyperliquid user WebSocket channels (wss://api.hyperliquid.xyz/ws): frames -> PrivateEvents,
and the subscribe frames. Pure: no I/O. Hyperliquid has no login: user channels are subscribed
by address (public data), and what the parser sees is whatever that address does.

Channels: `orderUpdates` (OrderUpdate; `sz` is the REMAINING size, filled = origSz - sz, no fee),
`userFills` (VenueFill each; isSnapshot -> snapshot=True), `userFundings` (FundingEvent),
`user` (the userEvents subscription: fills, funding, liquidation, nonUserCancel),
`clearinghouseState` and `webData2` (PositionUpdate per asset position, BalanceUpdate in USDC),
`subscriptionResponse` (subscribed), `pong`, `error`, `post` (order entry's answers: []).

Wire reference: https://hyperliquid.gitbook.io/hyperliquid-docs/for-developers/api/websocket/subscriptions
(field names cross-checked with the nktkas/hyperliquid SDK's schemas). Recorded shapes:
../shared/fixtures/hyperliquid/private_ws_frames.json (a userEvents liquidation fill, a post
answer) and recorded_sdk_cassettes_info_responses.json (the same objects over /info). The
orderUpdates, userFills-snapshot, userFundings and clearinghouseState pushes are built from the
docs (no recording).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

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
from perpbot.venues._wire import decimal_field, decode, field, int_field, side_field

VENUE = "hyperliquid"
WS_URL = "wss://api.hyperliquid.xyz/ws"
PING_FRAME = '{"method":"ping"}'
COLLATERAL = "USDC"
# clearinghouseState is a documented WS subscription ({type, user, dex?}); it pushes the account
# summary (margin, withdrawable, asset positions) on change.
USER_CHANNELS = ("orderUpdates", "userFills", "userFundings", "userEvents", "clearinghouseState")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_HOUR_MS = 3_600_000

_STATUS: dict[str, PrivateOrderStatus] = {
    "open": "open",
    "triggered": "open",  # a trigger order fired and now rests / executes
    "filled": "filled",
    "canceled": "canceled",
    "rejected": "rejected",
}


# ---------------------------------------------------------------------------------------------
# Builders


def subscribe_frames(address: str) -> list[str]:
    """One subscribe frame per user channel, for `address` (0x + 40 hex, sent lower-case)."""
    if not _ADDRESS.match(address):
        raise ValueError("hyperliquid user address must be 0x followed by 40 hex digits")
    user = address.lower()
    return [orjson.dumps({"method": "subscribe", "subscription": {"type": channel, "user": user}}).decode()
            for channel in USER_CHANNELS]


# ---------------------------------------------------------------------------------------------
# Parser


def parse_private(frame: str | bytes, recv_ts: float, ctx: PrivateContext) -> list[PrivateEvent]:
    """One frame -> events. Raises ParseError on anything malformed; other channels give []."""
    message = decode(VENUE, frame)
    if type(message) is not dict:
        raise ParseError(VENUE, "frame is not a JSON object")
    channel = field(VENUE, message, "channel", str)
    if channel == "pong":
        return [StreamControl(VENUE, "pong", "pong", recv_ts)]
    data = message.get("data")
    if channel == "subscriptionResponse":
        sub = data.get("subscription") if type(data) is dict else None
        detail = str(sub.get("type")) if type(sub) is dict else ""
        return [StreamControl(VENUE, "subscribed", detail, recv_ts)]
    if channel == "error":
        return [StreamControl(VENUE, "error", str(data)[:500], recv_ts)]
    if channel == "orderUpdates":
        if type(data) is not list:
            raise ParseError(VENUE, "orderUpdates data is not a list")
        return [_order_update(item, recv_ts) for item in data]
    if channel == "userFills":
        body = _object(data, channel)
        snapshot = body.get("isSnapshot") is True
        return _fills(field(VENUE, body, "fills", list), snapshot, recv_ts)
    if channel == "userFundings":
        body = _object(data, channel)
        return [_funding(item, None, recv_ts) for item in field(VENUE, body, "fundings", list)]
    if channel == "user":
        return _user_event(_object(data, channel), recv_ts)
    if channel == "clearinghouseState":
        return _account_state(field(VENUE, _object(data, channel), "clearinghouseState", dict), recv_ts, ctx)
    if channel == "webData2":
        return _account_state(field(VENUE, _object(data, channel), "clearinghouseState", dict), recv_ts, ctx)
    # `post` (answers to actions sent over the socket) belongs to order entry; the rest is public.
    return []


def _object(data: Any, channel: str) -> dict:
    if type(data) is not dict:
        raise ParseError(VENUE, f"{channel} data is not an object")
    return data


def _side(obj: dict, symbol: str) -> Side:
    return side_field(VENUE, obj, "side", "B", "A", symbol)


def _cloid(obj: dict, symbol: str) -> str | None:
    cloid = obj.get("cloid")
    if cloid is None or cloid == "":
        return None
    if type(cloid) is not str:
        raise ParseError(VENUE, "cloid is not a string", symbol)
    return cloid


def _order_update(item: Any, recv_ts: float) -> OrderUpdate:
    # Docs: [{"order": {coin, side, limitPx, sz, oid, timestamp, origSz, cloid?}, "status",
    # "statusTimestamp"}]. sz is what REMAINS, origSz what was asked.
    order = field(VENUE, item, "order", dict)
    symbol = field(VENUE, order, "coin", str)
    state = field(VENUE, item, "status", str, symbol)
    orig = decimal_field(VENUE, order, "origSz", symbol)
    filled = orig - decimal_field(VENUE, order, "sz", symbol)
    status = _STATUS.get(state)
    reason: str | None = None
    if status is None:
        # The many venue-side endings: "...Canceled" (marginCanceled, reduceOnlyCanceled,
        # selfTradeCanceled, liquidatedCanceled, ...), scheduledCancel, internalCancel, and
        # "...Rejected" (iocCancelRejected, perpMarginRejected, badAloPxRejected, ...).
        if state.endswith("Rejected"):
            status = "rejected"
        elif state.endswith("Canceled") or state.endswith("Cancel"):
            status = "canceled"
        else:
            raise ParseError(VENUE, f"unknown order status {state!r}", symbol)
        reason = state
    if status == "rejected" and filled > 0:
        status = "canceled"  # part filled, rest refused: canceled with filled_qty > 0 (private_events)
    elif status == "open" and filled > 0:
        status = "partially_filled"
    return OrderUpdate(
        VENUE, symbol, _cloid(order, symbol), str(field(VENUE, order, "oid", int, symbol)), status, _side(order, symbol),
        orig, filled, None, None, None, reason, int_field(VENUE, item, "statusTimestamp", symbol), recv_ts,
    )


def _fills(fills: list, snapshot: bool, recv_ts: float) -> list[PrivateEvent]:
    out: list[PrivateEvent] = []
    for fill in fills:
        out.extend(_fill(fill, snapshot, recv_ts))
    return out


def _fill(item: Any, snapshot: bool, recv_ts: float) -> list[PrivateEvent]:
    """One WsFill -> a VenueFill (and a MarginEvent when it belongs to a liquidation)."""
    symbol = field(VENUE, item, "coin", str)
    trade_id = str(field(VENUE, item, "tid", int, symbol))
    crossed = field(VENUE, item, "crossed", bool, symbol)
    ts = int_field(VENUE, item, "time", symbol)
    # `fee` is what the user paid (negative: a maker rebate), in feeToken. `builderFee` (only on
    # builder-routed orders, which perpbot never sends) is left out: whether `fee` already counts it
    # is not confirmed by the docs.
    out: list[PrivateEvent] = [VenueFill(
        VENUE, symbol, trade_id, _cloid(item, symbol), str(field(VENUE, item, "oid", int, symbol)), _side(item, symbol),
        decimal_field(VENUE, item, "sz", symbol), decimal_field(VENUE, item, "px", symbol),
        decimal_field(VENUE, item, "fee", symbol), str(item.get("feeToken") or COLLATERAL),
        "taker" if crossed else "maker", ts, recv_ts, snapshot,
    )]
    if item.get("dir") == "Auto-Deleveraging" and not snapshot:
        out.append(MarginEvent(VENUE, symbol, "adl", f"auto-deleveraging tid={trade_id}", ts, recv_ts))
    liquidation = item.get("liquidation")
    if liquidation is not None and not snapshot:
        # The fill is part of a liquidation: ours when liquidatedUser is our address, else we were
        # the counterparty (e.g. the liquidator's side). The context carries no address, so the
        # detail names the liquidated user and the consumer decides.
        if type(liquidation) is not dict:
            raise ParseError(VENUE, "fill liquidation is not an object", symbol)
        detail = " ".join(f"{key}={liquidation.get(key)}" for key in ("liquidatedUser", "markPx", "method"))
        out.append(MarginEvent(VENUE, symbol, "liquidation", f"{detail} tid={trade_id}", ts, recv_ts))
    return out


def _funding(item: Any, ts_ms: int | None, recv_ts: float) -> FundingEvent:
    """{time?, coin, usdc, szi, fundingRate, nSamples}: `usdc` is signed + received (the recorded
    /info userFunding deltas: a long paying positive funding shows usdc < 0, a short receiving > 0).

    payment_id "<coin>:<funding hour ms>": funding settles hourly, once per coin. userEvents'
    funding carries no time: the hour is our receive time rounded to the nearest hour, so the same
    payment seen on userFundings and userEvents keeps one id."""
    symbol = field(VENUE, item, "coin", str)
    if ts_ms is None:
        ts_ms = int_field(VENUE, item, "time", symbol)
    hour = (ts_ms + _HOUR_MS // 2) // _HOUR_MS * _HOUR_MS
    return FundingEvent(VENUE, symbol, f"{symbol}:{hour}", decimal_field(VENUE, item, "usdc", symbol), ts_ms, recv_ts)


def _user_event(data: dict, recv_ts: float) -> list[PrivateEvent]:
    # userEvents: exactly one of fills | funding | liquidation | nonUserCancel | twapHistory |
    # twapSliceFills. (Recorded: a fills event; the others from the docs / SDK schema.)
    if "fills" in data:
        return _fills(field(VENUE, data, "fills", list), False, recv_ts)
    if "funding" in data:
        return [_funding(field(VENUE, data, "funding", dict), round(recv_ts * 1000), recv_ts)]
    if "liquidation" in data:
        liq = field(VENUE, data, "liquidation", dict)
        keys = ("lid", "liquidator", "liquidated_user", "liquidated_ntl_pos", "liquidated_account_value")
        detail = " ".join(f"{key}={liq.get(key)}" for key in keys)
        return [MarginEvent(VENUE, None, "liquidation", detail, round(recv_ts * 1000), recv_ts)]
    if "nonUserCancel" in data:
        # [{coin, oid}] only: too little for an OrderUpdate (no side, size, cloid). The same cancel
        # reaches orderUpdates with the full order and a "...Canceled" status; check the shape only.
        for cancel in field(VENUE, data, "nonUserCancel", list):
            field(VENUE, cancel, "oid", int)
        return []
    return []  # twapHistory / twapSliceFills: perpbot places no TWAPs


def _position_margin(position: dict, symbol: str, size: Decimal, ts: int) -> LegMargin | None:
    """An asset position's margin fields (liquidationPx, null when none; leverage {type, value}). No ADL
    rank, no per-position maintenance margin; the mark is positionValue / |szi|."""
    if "liquidationPx" not in position:
        return None
    raw = position.get("liquidationPx")
    liquidation = decimal_field(VENUE, position, "liquidationPx", symbol) if raw not in (None, "") else None
    value = position.get("positionValue")
    mark = decimal_field(VENUE, position, "positionValue", symbol) / abs(size) if value and size else None
    leverage = position.get("leverage")
    mode = leverage.get("type") if type(leverage) is dict else None
    lever = leverage.get("value") if type(leverage) is dict else None
    return LegMargin(VENUE, symbol, size, mark, liquidation if liquidation else None, None, None, None,
                     str(mode) if mode else None, Decimal(lever) if type(lever) is int else None, ts)


def _account_state(state: dict, recv_ts: float, ctx: PrivateContext) -> list[PrivateEvent]:
    """clearinghouseState -> a PositionUpdate per listed asset position and one USDC BalanceUpdate
    (equity = marginSummary.accountValue, available = withdrawable). Only open positions are listed (the
    state is a full snapshot): each traded coin (`ctx.contract_sizes`) missing from it is stated flat, a
    PositionUpdate of size 0, as the other venues push a closed position."""
    ts = int_field(VENUE, state, "time") if "time" in state else round(recv_ts * 1000)
    summary = field(VENUE, state, "marginSummary", dict)
    out: list[PrivateEvent] = []
    for entry in field(VENUE, state, "assetPositions", list):
        position = field(VENUE, entry, "position", dict)
        symbol = field(VENUE, position, "coin", str)
        size = decimal_field(VENUE, position, "szi", symbol)
        entry_px = position.get("entryPx")
        entry_price = decimal_field(VENUE, position, "entryPx", symbol) if entry_px not in (None, "") else None
        out.append(PositionUpdate(VENUE, symbol, size, entry_price if size else None, ts, recv_ts,
                                  _position_margin(position, symbol, size, ts)))
    listed = {update.symbol for update in out if isinstance(update, PositionUpdate)}
    out += [PositionUpdate(VENUE, coin, Decimal(0), None, ts, recv_ts) for coin in ctx.contract_sizes
            if coin not in listed]
    out.append(BalanceUpdate(VENUE, COLLATERAL, decimal_field(VENUE, summary, "accountValue"),
                             decimal_field(VENUE, state, "withdrawable"), None, ts, recv_ts))
    return out
