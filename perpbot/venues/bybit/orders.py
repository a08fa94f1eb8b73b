"""Bybit v5 (linear) trading specifics for the ccxt client, as data: options, order params, client-id format.

Error codes (`retCode`): 110007 insufficient available balance, 110017 reduce-only would
increase the position, 110001 order does not exist, 10006 too many visits (rate limit),
10016 server error (temporary), 10002 request expired (clock skew), 170213 order not exists.

Fills: an order carries cumExecQty, avgPrice ("" or "0" before a fill), cumExecValue and cumExecFee
(+ paid); an execution of /v5/execution/list carries execQty, execPrice and execFee.
"""

from __future__ import annotations

import re
from typing import Any

from perpbot.venues._trading import API_KEY_CREDENTIALS, FillFields, SanitizedId, TradingSpec


async def fetch_order_raw(exchange: Any, ccxt_symbol: str, client_order_id: str) -> dict[str, Any] | None:
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
    order: dict[str, Any] = exchange.parse_order(rows[0], market)
    return order


def drop_referer(exchange: Any) -> None:
    """ccxt's Bybit client signs every POST with `Referer: <brokerId>`, and an empty or None
    brokerId falls back to 'CCXT': a broker attribution we never chose. It is taken off the
    signed request's headers (the signature does not cover headers)."""
    sign = exchange.sign

    def sign_without_referer(*args: Any, **kwargs: Any) -> Any:
        request = sign(*args, **kwargs)
        headers = request.get("headers")
        if isinstance(headers, dict):
            headers.pop("Referer", None)
        return request

    exchange.sign = sign_without_referer


SPEC = TradingSpec(
    venue="bybit",
    ccxt_class="bybit",
    market_types=("linear",),
    options={
        "enableUnifiedAccount": True,
        "enableUnifiedMargin": False,
        "defaultSubType": "linear",
        "brokerId": "",  # (ccxt still falls back to 'CCXT' for the Referer header: see drop_referer)
    },
    credentials=API_KEY_CREDENTIALS,
    client_id_param="orderLinkId",
    client_id=SanitizedId(re.compile(r"[^A-Za-z0-9_-]"), 36),  # up to 36 letters, digits, '-' or '_'
    insufficient_funds_markers=("110007", "110004", "110012"),  # available / wallet / position balance
    # ccxt refuses fetchOrder on Bybit without this acknowledgement (only the last 500
    # orders are reachable, which is all an IOC round trip needs).
    fetch_extra={"acknowledged": True},
    # Funding in /v5/execution/list is an execFee: positive when paid. perpbot books + received.
    funding_amount_sign=-1,
    fetch_order_raw=fetch_order_raw,
    wire_hygiene=drop_referer,
    order_fields=FillFields(filled="cumExecQty", average="avgPrice", cost="cumExecValue",
                            fee=("cumExecFee",), amount="qty"),
    trade_fields=FillFields(filled="execQty", average="execPrice", fee=("execFee",)),
)
format_client_id = SPEC.format_client_id  # perpbot.execution.client_ids looks it up here
