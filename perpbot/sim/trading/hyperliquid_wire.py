"""Hyperliquid's wire formats in the simulator (`perpbot.sim.trading.hyperliquid` serves the API): the per-order
rejection texts, the 422 answer to a body that does not parse, cloid and time-in-force mappings, order id range,
Hyperliquid's decimal strings and price rule, and the error shapes the fault gate answers with (HyperliquidWire)."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, cast

from aiohttp import web

from perpbot.sim.trading.gate import json_response

# Per-order rejection texts, as Hyperliquid sends them (the " asset=N" suffix is appended like the venue does).
ORDER_ERRORS = {
    "insufficient_margin": "Insufficient margin to place order.",
    "reduce_only": "Reduce only order would increase position.",
    "min_notional": "Order must have minimum value of $10.",
    "bad_tick": "Price must be divisible by tick size.",
    "bad_price": "Order has invalid price.",
    "bad_lot": "Order has invalid size.",
    "min_qty": "Order has invalid size.",
    "zero_size": "Order has zero size.",
    "post_only_cross": "Post only order would have immediately matched, bbo was {bbo}.",
    "ioc_cancel": "Order could not immediately match against any resting orders.",
    "unknown_order": "Order was never placed, already canceled, or filled.",
    # Hyperliquid has no fixed text for this one; it is not in ccxt's table (-> ExchangeError).
    "duplicate_client_id": "Order has duplicate cloid.",
    "reject": "Order rejected by the venue.",
}
# What Hyperliquid's HTTP layer answers (status 422) to a body it cannot parse into an action or info request.
DESERIALIZE_ERROR = "Failed to deserialize the JSON body into the target type"
CLOID_RE = re.compile(r"^0x[0-9a-fA-F]{32}$")
TIF_IN = {"Gtc": "GTC", "Ioc": "IOC", "Alo": "POST_ONLY", "FrontendMarket": "IOC"}
TIF_OUT = {"GTC": "Gtc", "IOC": "Ioc", "POST_ONLY": "Alo", "FOK": "Ioc"}
# Hyperliquid order ids are large integers; the simulator's counter is shifted into that range.
OID_BASE = 90_000_000_000
MAX_FUNDING_HISTORY = 500


def hl_num(value: Decimal | None) -> str:
    """Hyperliquid's decimal strings: plain notation, integral values with one decimal ("59936.0")."""
    if value is None:
        return "0.0"
    value = Decimal(value)
    if value == value.to_integral_value():
        return f"{value.quantize(Decimal(1))}.0"
    return format(value.normalize(), "f")


def sz_decimals(lot: Decimal) -> int:
    return max(0, -cast(int, Decimal(lot).normalize().as_tuple().exponent))


def valid_price(price: Decimal, size_decimals: int) -> bool:
    """Hyperliquid's perp price rule: integers always; otherwise at most 5 significant figures and at most
    6 - szDecimals decimals."""
    if price <= 0:
        return False
    if price == price.to_integral_value():
        return True
    normalized = price.normalize()
    decimals = -cast(int, normalized.as_tuple().exponent)
    significant = len(normalized.as_tuple().digits)
    return significant <= 5 and decimals <= 6 - size_decimals


class _BadBody(Exception):
    """The request body does not parse into a Hyperliquid action or info request (HTTP 422)."""


class HyperliquidWire:
    """How Hyperliquid's errors look on the wire; used by the fault gate for faults on order placement."""

    def __init__(self) -> None:
        # Asset index of the order action being gated (set just before the gate runs; the gate decides
        # reject/insufficient_margin faults before its first await, so concurrent requests cannot interleave).
        self.asset: Any = 0

    def error(self, reason: str, message: str) -> web.Response:
        text = ORDER_ERRORS.get(reason, ORDER_ERRORS["reject"]).format(bbo="")
        return json_response({"status": "ok", "response": {"type": "order", "data": {
            "statuses": [{"error": f"{text} asset={self.asset}"}]}}})

    def maintenance(self) -> web.Response:
        # Hyperliquid has no maintenance code: its gateway answers 503 with a plain body while the API is down.
        return web.Response(status=503, text="Service Unavailable", content_type="text/html")

    def rate_limited(self, retry_after_s: int) -> web.Response:
        # Hyperliquid answers HTTP 429 with a JSON null body; ccxt maps the status to RateLimitExceeded.
        return json_response(None, status=429)


BUILDER_NOT_APPROVED = "Builder fee has not been approved."
