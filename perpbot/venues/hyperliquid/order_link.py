"""Hyperliquid order entry over the WebSocket (/ws) as an OrderLink: `post` requests carrying a signed
L1 action, answered on the `post` channel by request id. No login: every action is signed on its own
(perpbot.venues.hyperliquid.signing, compiled secp256k1 + keccak; never ccxt's pure-Python signer).

Request (Hyperliquid docs, websocket/post-requests): {"method": "post", "id": <number>, "request":
{"type": "action", "payload": {"action", "nonce", "signature", "vaultAddress": null}}}; the payload is
the body POST /exchange takes (the official SDK sends vaultAddress null when there is none). The order
action is {"type": "order", "orders": [{a, b, p, s, r, t: {limit: {tif}}, c}], "grouping": "na"} with
the same price, size, reduce-only, time in force (IOC -> "Ioc", GTC -> "Gtc") and cloid as the REST
order of perpbot.venues.hyperliquid.orders, and deliberately no `builder` (the live venue refuses an
order naming a builder the wallet never approved). A cancel is {"type": "cancelByCloid", "cancels":
[{"asset", "cloid"}]}. The asset is the coin's index in meta's universe (ccxt's market baseId): the
link takes the coin -> asset map at construction (`asset_indices`). Nonces are milliseconds, strictly
increasing per link.

Answer: {"channel": "post", "data": {"id", "response": {"type": "action", "payload": <what /exchange
answers>}}}: {"status": "ok", "response": {"type": "order", "data": {"statuses": [s]}}} with s one of
{"filled": {totalSz, avgPx, oid}}, {"resting": {oid}}, {"error": "<text> asset=N"}; a cancel's statuses
are "success" or {"error": ...}; an action refused whole is {"status": "err", "response": "<text>"}.
A request the server refuses (rate limit, unparsable body, gateway down) is {"type": "error",
"payload": "<HTTP status and description, as /exchange would have answered>"} (the docs' words; the
429 answer carries no Retry-After, so RateLimited.retry_after_s stays None). Only the sample `resting`
answer in shared/fixtures/hyperliquid/private_ws_frames.json is a published frame (a docs example);
the request frame, the `filled` and error answers follow the docs and the /exchange answers ccxt
records (its static tests), and the texts are venue_errors.json's.

A filled answer gives size and average price but no fee: `complete` stays False (the fee comes with the
fill on the private stream, or a query).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, cast

import orjson

from perpbot.core import errors
from perpbot.core.events import ParseError
from perpbot.core.order_entry import LinkMessage, OrderAnswer, Pong
from perpbot.core.orders import OrderRequest, ResultStatus
from perpbot.settings import VenueSettings
from perpbot.venues._private import secret
from perpbot.venues._wire import json_object
from perpbot.venues.hyperliquid import private
from perpbot.venues.hyperliquid.orders import SPEC
from perpbot.venues.hyperliquid.signing import Tif, load_private_key, order_wire, sign_l1_action, sign_order_action

VENUE = "hyperliquid"
FUNDS_MARKERS = ("Insufficient margin",)
NOT_OPEN_MARKERS = ("Order was never placed, already canceled, or filled",)
# The address-based limit (ccxt records the live text: "Too many cumulative requests sent (37986 > 10436)
# for cumulative volume traded $437.92. Place taker orders to free up 1 request per USDC traded.").
RATE_LIMIT_MARKERS = ("Too many cumulative requests sent",)
CONNECTED_TEXT = "Websocket connection established."  # sent as plain text on connect (VENUES.md §4)
MAX_REMEMBERED = 4096  # sizes of requests whose answers never came are forgotten past this many


def asset_indices(markets: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """coin -> asset index from ccxt's Hyperliquid markets (a perp's baseId is its index in meta's universe)."""
    found: dict[str, int] = {}
    for market in markets.values():
        if not market.get("swap"):
            continue
        coin = market.get("baseName") or (market.get("info") or {}).get("name")
        base_id = market.get("baseId")
        if isinstance(coin, str) and base_id is not None and str(base_id).isdigit():
            found[coin] = int(base_id)
    return found


def error_of(text: str) -> errors.VenueErrorBase:
    """A per-order error string or an action's `err` response -> our error."""
    if any(marker in text for marker in FUNDS_MARKERS):
        return errors.InsufficientFunds(VENUE, text)
    if any(marker in text for marker in NOT_OPEN_MARKERS):
        return errors.OrderNotFound(VENUE, text)
    if any(marker in text for marker in RATE_LIMIT_MARKERS):
        return errors.RateLimited(VENUE, text, retry_after_s=None)
    return errors.OrderRejected(VENUE, text)


def refusal_of(text: str) -> errors.VenueErrorBase:
    """A post the server refused before the action ran ({"type": "error", "payload": "429 ..."})."""
    status = text[:3]
    if status in ("429", "418"):  # too many requests; 418: an IP ban (the simulator's ip_ban fault)
        return errors.RateLimited(VENUE, text, retry_after_s=None)
    if status in ("502", "503", "504"):
        return errors.TemporaryError(VENUE, text)  # the gateway answered: the action never ran
    if status.startswith("5"):
        return errors.UnknownOutcome(VENUE, text)  # an internal error: it may have run
    return errors.OrderRejected(VENUE, text)


def _decimal(value: Any, what: str) -> Decimal:
    try:
        number = Decimal(value) if isinstance(value, str) else None
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite():
        raise ParseError(VENUE, f"order answer: {what} is not a decimal string: {value!r}")
    return number


def parse_status(request_id: str, status: Any, size: Decimal | None) -> OrderAnswer:
    """One entry of an order action's `statuses` (`size`: the order's size, when known)."""
    if isinstance(status, dict):
        if "filled" in status and isinstance(status["filled"], dict):
            filled = status["filled"]
            total = _decimal(filled.get("totalSz"), "totalSz")
            state: ResultStatus = "filled" if size is None or total >= size else "partially_filled"
            return OrderAnswer(request_id, venue_order_id=str(filled.get("oid")), status=state, filled_qty=total,
                               avg_price=_decimal(filled.get("avgPx"), "avgPx"), complete=False)
        if "resting" in status and isinstance(status["resting"], dict):
            return OrderAnswer(request_id, venue_order_id=str(status["resting"].get("oid")))
        if "error" in status:
            return OrderAnswer(request_id, error=error_of(str(status["error"])))
    if status in ("waitingForTrigger", "waitingForFill"):
        return OrderAnswer(request_id)
    raise ParseError(VENUE, f"order answer: unknown status {status!r}")


def parse_action(request_id: str, payload: Any, size: Decimal | None) -> OrderAnswer:
    """What /exchange answers to an order or cancel action, as one OrderAnswer."""
    if not isinstance(payload, dict):
        raise ParseError(VENUE, f"action answer is not an object: {payload!r}")
    if payload.get("status") == "err":
        return OrderAnswer(request_id, error=error_of(str(payload.get("response", ""))))
    response = payload.get("response")
    data = response.get("data") if isinstance(response, dict) else None
    statuses = data.get("statuses") if isinstance(data, dict) else None
    if payload.get("status") != "ok" or not isinstance(statuses, list) or len(statuses) != 1:
        raise ParseError(VENUE, f"action answer without one status: {payload!r}")
    status = statuses[0]
    if status == "success":  # a cancel taken
        return OrderAnswer(request_id)
    return parse_status(request_id, status, size)


class HyperliquidOrderLink:
    venue = VENUE
    ping_frame: str | None = private.PING_FRAME
    ping_interval_s: float = 30.0  # Hyperliquid closes a connection it has sent nothing to for 60 s

    def __init__(self, url: str, cfg: VenueSettings, assets: Mapping[str, int],
                 clock: Callable[[], float] = time.time) -> None:
        self._url = url
        self._key = load_private_key(secret(cfg, "private_key"))  # the key object only; the text is dropped
        self._mainnet = cfg.environment == "mainnet"
        self._assets = dict(assets)
        self._clock = clock
        self._last_nonce = -1
        self._sizes: dict[str, Decimal] = {}  # request id -> order size (a filled answer has totalSz only)

    def url(self) -> str:
        return self._url

    def login_frames(self) -> list[str]:
        return []  # no login: each action is signed

    def nonce(self) -> int:
        """Milliseconds, strictly increasing on this link (two orders in one millisecond differ)."""
        nonce = max(int(self._clock() * 1000), self._last_nonce + 1)
        self._last_nonce = nonce
        return nonce

    def _asset(self, symbol: str) -> int:
        asset = self._assets.get(symbol)
        if asset is None:
            raise ValueError(f"hyperliquid: no asset index for {symbol!r} (not in the instruments loaded)")
        return asset

    def _post(self, request_id: str, action: Any, nonce: int, signature: Any) -> str:
        payload = {"action": action, "nonce": nonce, "signature": signature, "vaultAddress": None}
        return orjson.dumps({"method": "post", "id": int(request_id),
                             "request": {"type": "action", "payload": payload}}).decode()

    def place_frame(self, request_id: str, order: OrderRequest) -> str:
        tif = cast(Tif, SPEC.time_in_force[order.time_in_force])  # the REST order's mapping: IOC -> Ioc, GTC -> Gtc
        wire = order_wire(self._asset(order.symbol), order.side == "buy", order.price, order.qty,
                          order.reduce_only, tif, cloid=order.client_order_id)
        nonce = self.nonce()
        action, signature = sign_order_action(self._key, [wire], nonce, self._mainnet)
        frame = self._post(request_id, action, nonce, signature)
        if len(self._sizes) >= MAX_REMEMBERED:
            self._sizes.pop(next(iter(self._sizes)))
        self._sizes[request_id] = order.qty
        return frame

    def cancel_frame(self, request_id: str, symbol: str, client_order_id: str) -> str:
        action = {"type": "cancelByCloid", "cancels": [{"asset": self._asset(symbol), "cloid": client_order_id}]}
        nonce = self.nonce()
        signature = sign_l1_action(self._key, action, None, nonce, None, self._mainnet)
        return self._post(request_id, action, nonce, signature)

    def parse(self, frame: str | bytes) -> LinkMessage | None:
        if frame in (CONNECTED_TEXT, CONNECTED_TEXT.encode()):
            return None  # the venue's plain-text greeting on connect (the official SDK skips it too)
        message = json_object(VENUE, frame)
        channel = message.get("channel")
        if channel == "pong":
            return Pong()
        if channel != "post":
            return None  # subscription acks, "error" notices (they name no request), pushes
        data = message.get("data")
        if not isinstance(data, dict) or isinstance(data.get("id"), bool) or not isinstance(data.get("id"), int):
            raise ParseError(VENUE, f"post answer without a numeric id: {message!r}")
        request_id = str(data["id"])
        size = self._sizes.pop(request_id, None)
        response = data.get("response")
        if not isinstance(response, dict):
            raise ParseError(VENUE, f"post answer without a response: {message!r}")
        kind = response.get("type")
        if kind == "error":
            return OrderAnswer(request_id, error=refusal_of(str(response.get("payload", ""))))
        if kind == "action":
            return parse_action(request_id, response.get("payload"), size)
        raise ParseError(VENUE, f"post answer of unknown type {kind!r}")
