"""Binance USD-M trading specifics for the ccxt client: options, order params, client-id format.

Error codes (`code` in the JSON body): -2019 margin is insufficient, -2013 order does not
exist, -2011 unknown order on cancel, -1003/-1015 too many requests (HTTP 429/418),
-1021 timestamp outside recvWindow, -4164 notional too small, -2022 reduce-only rejected,
-1001/-1007 internal error / timeout waiting for the backend (outcome unknown).
"""

from __future__ import annotations

import re
from typing import Any

from perpbot.core.orders import OrderRequest
from perpbot.settings import VenueSettings

# Substrings of a venue error that mean "not enough margin", whatever ccxt class it arrived as.
INSUFFICIENT_FUNDS_MARKERS = ("-2019", "Margin is insufficient")  # ccxt maps -2019 to OperationFailed on some paths
CCXT_CLASS = "binanceusdm"
_NOT_ALLOWED = re.compile(r"[^.A-Z:/a-z0-9_-]")


def ccxt_config(settings: VenueSettings) -> dict[str, Any]:
    config: dict[str, Any] = {
        "options": {
            "defaultType": "swap",
            "fetchMarkets": {"types": ["linear"]},  # USD-M perpetuals only
            "fetchCurrencies": False,  # would call the spot (sapi) host
            "broker": {},  # no ccxt broker prefix on generated client ids
            "adjustForTimeDifference": False,
            "warnOnFetchOpenOrdersWithoutSymbol": False,
        }
    }
    if settings.api_key:
        config["apiKey"] = settings.api_key.get_secret_value()
    if settings.api_secret:
        config["secret"] = settings.api_secret.get_secret_value()
    return config


def format_client_id(canonical: str) -> str:
    """newClientOrderId: up to 36 of `[.A-Z:/a-z0-9_-]`."""
    cid = _NOT_ALLOWED.sub("", canonical)[:36]
    if not cid:
        raise ValueError("empty client order id")
    return cid


def order_params(request: OrderRequest) -> dict[str, Any]:
    params: dict[str, Any] = {"newClientOrderId": request.client_order_id}
    if request.time_in_force == "IOC":
        params["timeInForce"] = "IOC"
    if request.reduce_only:
        params["reduceOnly"] = True
    return params


def fetch_params(client_order_id: str) -> dict[str, Any]:
    return {"origClientOrderId": client_order_id}


def cancel_params(client_order_id: str) -> dict[str, Any]:
    return {"origClientOrderId": client_order_id}
