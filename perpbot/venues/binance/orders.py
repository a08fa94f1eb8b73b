"""Binance USD-M trading specifics for the ccxt client, as data: options, order params, client-id format.

Error codes (`code` in the JSON body): -2019 margin is insufficient, -2013 order does not
exist, -2011 unknown order on cancel, -1003/-1015 too many requests (HTTP 429/418),
-1021 timestamp outside recvWindow, -4164 notional too small, -2022 reduce-only rejected,
-1001/-1007 internal error / timeout waiting for the backend (outcome unknown).

Fills: an order carries executedQty, avgPrice ("0" before a fill) and cumQuote but no commission;
a fill of /fapi/v1/userTrades carries qty, price and commission (+ paid).
"""

from __future__ import annotations

import re

from perpbot.venues._trading import API_KEY_CREDENTIALS, FillFields, SanitizedId, TradingSpec

SPEC = TradingSpec(
    venue="binance",
    ccxt_class="binanceusdm",
    market_types=("linear",),  # USD-M perpetuals only
    options={
        "fetchCurrencies": False,  # would call the spot (sapi) host
        "broker": {},  # no ccxt broker prefix on generated client ids
        "adjustForTimeDifference": False,
        "warnOnFetchOpenOrdersWithoutSymbol": False,
    },
    credentials=API_KEY_CREDENTIALS,
    client_id_param="newClientOrderId",
    lookup_id_param="origClientOrderId",
    client_id=SanitizedId(re.compile(r"[^.A-Z:/a-z0-9_-]"), 36),  # up to 36 of [.A-Z:/a-z0-9_-]
    # ccxt maps -2019 to OperationFailed on some paths
    insufficient_funds_markers=("-2019", "Margin is insufficient"),
    order_fields=FillFields(filled="executedQty", average="avgPrice", cost="cumQuote", amount="origQty"),
    trade_fields=FillFields(filled="qty", average="price", fee=("commission",)),
)
format_client_id = SPEC.format_client_id  # perpbot.execution.client_ids looks it up here
