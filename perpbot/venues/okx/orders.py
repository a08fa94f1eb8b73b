"""OKX trading specifics for the ccxt client: construction options, order params, client-id format.

Error codes worth knowing (OKX v5 `sCode` per order): 51008 insufficient balance/margin,
51121/51202 size off lot / too large, 51169 reduce-only with no position, 51400/51603 order
does not exist, 50011 rate limit, 50001/50013 service busy (temporary), 51000 param error.
ccxt maps these to InsufficientFunds / InvalidOrder / OrderNotFound / RateLimitExceeded /
ExchangeNotAvailable, which perpbot.execution.ccxt_client translates further.
"""

from __future__ import annotations

import re
from typing import Any

from perpbot.core.orders import OrderRequest
from perpbot.settings import VenueSettings

# Substrings of a venue error that mean "not enough margin", whatever ccxt class it arrived as.
INSUFFICIENT_FUNDS_MARKERS = ("51008", "51004")  # insufficient balance / margin
CCXT_CLASS = "okx"
_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]")


def ccxt_config(settings: VenueSettings) -> dict[str, Any]:
    """Credentials and explicit choices for ccxt's otherwise hidden defaults."""
    config: dict[str, Any] = {
        "options": {
            "defaultType": "swap",
            "fetchMarkets": {"types": ["swap"]},  # perpetual swaps only: no spot/option market loads
            "brokerId": None,  # no ccxt broker tag: we always send our own clOrdId
            "defaultMarginMode": "cross",
        }
    }
    if settings.api_key:
        config["apiKey"] = settings.api_key.get_secret_value()
    if settings.api_secret:
        config["secret"] = settings.api_secret.get_secret_value()
    if settings.passphrase:
        config["password"] = settings.passphrase.get_secret_value()
    if settings.environment == "testnet":
        # OKX demo trading is the same host plus this header (what ccxt's sandbox mode sends).
        config["headers"] = {"x-simulated-trading": "1"}
    return config


def format_client_id(canonical: str) -> str:
    """OKX clOrdId: 1-32 alphanumerics."""
    cid = _NOT_ALNUM.sub("", canonical)[:32]
    if not cid:
        raise ValueError("empty client order id")
    return cid


def order_params(request: OrderRequest) -> dict[str, Any]:
    params: dict[str, Any] = {"clOrdId": request.client_order_id, "tdMode": "cross"}
    if request.time_in_force == "IOC":
        params["timeInForce"] = "IOC"
    if request.reduce_only:
        params["reduceOnly"] = True
    return params


def fetch_params(client_order_id: str) -> dict[str, Any]:
    return {"clOrdId": client_order_id}


def cancel_params(client_order_id: str) -> dict[str, Any]:
    return {"clOrdId": client_order_id}
