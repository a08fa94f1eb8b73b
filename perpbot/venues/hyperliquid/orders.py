"""Hyperliquid trading specifics for the ccxt client: options, order params, client-id format.

ccxt's defaults would approve a builder fee and set a referrer on the first private call;
both are switched off here (approvedBuilderFee/refSet True skip the calls, builderFee False
makes the attached builder fee 0). Errors arrive as HTTP 200 with `status: "err"` or a
per-order `error` string, e.g. "Insufficient margin to place order.", "Order must have
minimum value of $10.", "Reduce only order would increase position.", "Order could not
immediately match against any resting orders." (an IOC that found nothing: not a fault).
"""

from __future__ import annotations

import hashlib
from typing import Any

from perpbot.core.orders import OrderRequest
from perpbot.settings import VenueSettings

# Substrings of a venue error that mean "not enough margin", whatever ccxt class it arrived as.
INSUFFICIENT_FUNDS_MARKERS = ("Insufficient margin",)
CCXT_CLASS = "hyperliquid"


def ccxt_config(settings: VenueSettings) -> dict[str, Any]:
    config: dict[str, Any] = {
        "options": {
            "defaultType": "swap",
            "fetchMarkets": {"types": ["swap"]},
            "approvedBuilderFee": True,
            "refSet": True,
            "builderFee": False,
            "defaultSlippage": 0.0,  # we always send our own limit price
        }
    }
    if settings.wallet_address:
        config["walletAddress"] = settings.wallet_address
    if settings.private_key:
        config["privateKey"] = settings.private_key.get_secret_value()
    return config


def format_client_id(canonical: str) -> str:
    """cloid: '0x' + 32 hex, derived deterministically (the same canonical id -> the same cloid)."""
    return "0x" + hashlib.sha256(canonical.encode()).hexdigest()[:32]


def order_params(request: OrderRequest) -> dict[str, Any]:
    params: dict[str, Any] = {"clientOrderId": request.client_order_id}
    params["timeInForce"] = "Ioc" if request.time_in_force == "IOC" else "Gtc"
    if request.reduce_only:
        params["reduceOnly"] = True
    return params


def fetch_params(client_order_id: str) -> dict[str, Any]:
    return {"clientOrderId": client_order_id}


def cancel_params(client_order_id: str) -> dict[str, Any]:
    return {"clientOrderId": client_order_id}
