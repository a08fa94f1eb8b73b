"""Bybit v5 (linear) trading specifics for the ccxt client: options, order params, client-id format.

Error codes (`retCode`): 110007 insufficient available balance, 110017 reduce-only would
increase the position, 110001 order does not exist, 10006 too many visits (rate limit),
10016 server error (temporary), 10002 request expired (clock skew), 170213 order not exists.
"""

from __future__ import annotations

import re
from typing import Any

from perpbot.core.orders import OrderRequest
from perpbot.settings import VenueSettings

# Substrings of a venue error that mean "not enough margin", whatever ccxt class it arrived as.
INSUFFICIENT_FUNDS_MARKERS = ("110007", "110004", "110012")  # insufficient available / wallet / position balance
CCXT_CLASS = "bybit"
# Funding in /v5/execution/list is an execFee: positive when paid. perpbot books + received.
FUNDING_AMOUNT_SIGN = -1
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_-]")


def ccxt_config(settings: VenueSettings) -> dict[str, Any]:
    config: dict[str, Any] = {
        "options": {
            "defaultType": "swap",
            "fetchMarkets": {"types": ["linear"]},
            "enableUnifiedAccount": True,
            "enableUnifiedMargin": False,
            "defaultSubType": "linear",
            "brokerId": "",  # ccxt would send Referer: CCXT on every POST
        }
    }
    if settings.api_key:
        config["apiKey"] = settings.api_key.get_secret_value()
    if settings.api_secret:
        config["secret"] = settings.api_secret.get_secret_value()
    return config


def format_client_id(canonical: str) -> str:
    """orderLinkId: up to 36 letters, digits, '-' or '_'."""
    cid = _NOT_ALLOWED.sub("", canonical)[:36]
    if not cid:
        raise ValueError("empty client order id")
    return cid


def order_params(request: OrderRequest) -> dict[str, Any]:
    params: dict[str, Any] = {"orderLinkId": request.client_order_id}
    if request.time_in_force == "IOC":
        params["timeInForce"] = "IOC"
    if request.reduce_only:
        params["reduceOnly"] = True
    return params


def fetch_params(client_order_id: str) -> dict[str, Any]:
    # ccxt refuses fetchOrder on Bybit without this acknowledgement (only the last 500
    # orders are reachable, which is all an IOC round trip needs).
    return {"orderLinkId": client_order_id, "acknowledged": True}


def cancel_params(client_order_id: str) -> dict[str, Any]:
    return {"orderLinkId": client_order_id}


async def fetch_order_raw(exchange: Any, ccxt_symbol: str, client_order_id: str) -> dict | None:
    """The order by orderLinkId alone. ccxt's fetch_order always sends `orderId` (as the text
    'None' when absent), so the realtime endpoint is called directly; it lists open and
    recently closed linear orders."""
    market = exchange.market(ccxt_symbol)
    response = await exchange.privateGetV5OrderRealtime(
        {"category": "linear", "symbol": market["id"], "orderLinkId": client_order_id}
    )
    rows = (response.get("result") or {}).get("list") or []
    if not rows:
        return None
    return exchange.parse_order(rows[0], market)
