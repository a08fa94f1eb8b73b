"""OKX order entry over the private WebSocket (/ws/v5/private) as an OrderLink: the `login` op,
then `order` / `cancel-order` ops, each answered by id.

Request (OKX v5 docs, WebSocket "Place order"): {"id": "<=32 alphanumerics", "op": "order", "args":
[{"instId", "tdMode": "cross", "clOrdId", "side", "ordType": "ioc"|"limit", "px", "sz", "reduceOnly"}]};
sz in contracts, px on the tick grid, both as plain decimal strings. No `tag`: OKX keeps it for
broker attribution and perpbot names none. The same fields as the REST order (perpbot.venues.okx.orders).

Answer: {"id", "op": "order", "code": "0"|"1"|..., "msg", "data": [{"ordId", "clOrdId", "tag", "ts",
"sCode", "sMsg"}], "inTime", "outTime"}. `code` "0" with sCode "0" is an acknowledgement (ids only: fills
come from the `orders` channel or a query). A failed order has code "1" and its own sCode; a
request-level failure (rate limit 50011/50061, busy 50001/50013/50026, bad request 60012) has data
empty or absent. No recorded frame of the `order` op exists in shared/fixtures (a gap the fixtures
README lists): the shapes follow OKX's documentation of the op and of its error codes.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from perpbot.core import errors
from perpbot.core.numbers import plain
from perpbot.core.order_entry import LinkMessage, LoginAnswer, OrderAnswer, Pong
from perpbot.core.orders import OrderRequest
from perpbot.settings import VenueSettings
from perpbot.venues._private import secret
from perpbot.venues._wire import ErrorCodes, json_object
from perpbot.venues.okx import private

VENUE = "okx"
# sCode / code families (OKX v5 error codes).
RATE_LIMIT_CODES = frozenset(("50011", "50061"))
TEMPORARY_CODES = frozenset(("50001", "50004", "50013", "50026"))
FUNDS_CODES = frozenset(("51008", "51004"))
NOT_OPEN_CODES = frozenset(("51400", "51401", "51402", "51410", "51603"))


def order_args(request: OrderRequest, margin_mode: str = "cross") -> dict[str, str]:
    """The `order` op's argument for one approved order (same fields as the REST order; tdMode the
    configured margin mode, venues.okx.margin_mode)."""
    arg = {
        "instId": request.symbol, "tdMode": margin_mode, "clOrdId": request.client_order_id, "side": request.side,
        "ordType": "ioc" if request.time_in_force == "IOC" else "limit",
        "px": plain(request.price), "sz": plain(request.qty),
    }
    if request.reduce_only:
        arg["reduceOnly"] = "true"
    return arg


CODES = ErrorCodes(rate_limited=RATE_LIMIT_CODES, temporary=TEMPORARY_CODES, funds=FUNDS_CODES,
                   not_open=NOT_OPEN_CODES)


def error_of(code: str, message: str) -> errors.VenueErrorBase:
    return CODES.error(VENUE, code, f"{code} {message}".strip())


def parse_answer(message: dict[str, Any]) -> OrderAnswer:
    request_id = str(message.get("id", ""))
    data = message.get("data") or []
    item = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}
    code = str(message.get("code", ""))
    s_code = str(item.get("sCode", "")) if item else ""
    if code == "0" and s_code in ("0", ""):
        order_id = item.get("ordId") or None
        return OrderAnswer(request_id, venue_order_id=str(order_id) if order_id else None)
    if s_code and s_code != "0":
        return OrderAnswer(request_id, error=error_of(s_code, str(item.get("sMsg", ""))))
    return OrderAnswer(request_id, error=error_of(code, str(message.get("msg", ""))))


class OkxOrderLink:
    venue = VENUE
    ping_frame: str | None = "ping"
    ping_interval_s: float = 20.0  # OKX closes a connection silent for 30 s

    def __init__(self, url: str, cfg: VenueSettings) -> None:
        self._url = url
        self._key, self._secret = secret(cfg, "api_key"), secret(cfg, "api_secret")
        self._passphrase = secret(cfg, "passphrase")
        self._margin_mode = cfg.margin_mode

    def url(self) -> str:
        return self._url

    def login_frames(self) -> list[str]:
        return [private.login_frame(self._key, self._secret, self._passphrase, time.time())]

    def place_frame(self, request_id: str, order: OrderRequest) -> str:
        return orjson.dumps({"id": request_id, "op": "order", "args": [order_args(order, self._margin_mode)]}).decode()

    def cancel_frame(self, request_id: str, symbol: str, client_order_id: str) -> str:
        # By clOrdId alone (the REST cancel sends the same).
        arg = {"instId": symbol, "clOrdId": client_order_id}
        return orjson.dumps({"id": request_id, "op": "cancel-order", "args": [arg]}).decode()

    def parse(self, frame: str | bytes) -> LinkMessage | None:
        if frame == "pong" or frame == b"pong":
            return Pong()
        message = json_object(VENUE, frame)
        event = message.get("event")
        if event == "login":
            return LoginAnswer(str(message.get("code", "0")) == "0", str(message.get("msg", "")))
        if event == "error":
            if message.get("id") not in (None, ""):  # our login frame carries no id: this answers a request
                return OrderAnswer(str(message["id"]), error=error_of(str(message.get("code", "")),
                                                                       str(message.get("msg", ""))))
            # A login refusal arrives as an error event (60004-60024) without an op.
            return LoginAnswer(False, f"{message.get('code')} {message.get('msg', '')}")
        if message.get("op") in ("order", "cancel-order") and "id" in message:
            return parse_answer(message)
        return None
