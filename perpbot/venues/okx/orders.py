"""OKX trading specifics for the ccxt client, as data: construction options, order params, client-id format.

Error codes worth knowing (OKX v5 `sCode` per order): 51008 insufficient balance/margin,
51121/51202 size off lot / too large, 51169 reduce-only with no position, 51400/51603 order
does not exist, 50011 rate limit, 50001/50013 service busy (temporary), 51000 param error.
ccxt maps these to InsufficientFunds / InvalidOrder / OrderNotFound / RateLimitExceeded /
ExchangeNotAvailable, which perpbot.execution.ccxt_client translates further.

Fills: GET /api/v5/trade/order carries accFillSz (contracts), avgPx ("" before a fill) and fee
(negative when charged); a fill of /api/v5/trade/fills carries fillSz, fillPx and fee.
"""

from __future__ import annotations

import re

from perpbot.venues._trading import API_KEY_CREDENTIALS, FillFields, SanitizedId, TradingSpec

SPEC = TradingSpec(
    venue="okx",
    ccxt_class="okx",
    market_types=("swap",),  # perpetual swaps only: no spot/option market loads
    options={
        "brokerId": None,  # no ccxt broker tag: we always send our own clOrdId
        "defaultMarginMode": "cross",
    },
    credentials=(*API_KEY_CREDENTIALS, "passphrase"),
    client_id_param="clOrdId",
    client_id=SanitizedId(re.compile(r"[^A-Za-z0-9]"), 32),  # clOrdId: 1-32 alphanumerics
    insufficient_funds_markers=("51008", "51004"),  # insufficient balance / margin
    order_extra={"tdMode": "cross"},
    margin_mode_param="tdMode",  # venues.okx.margin_mode (cross | isolated) replaces it (TradingSpec.configured)
    # OKX demo trading is the same host plus this header (what ccxt's sandbox mode sends).
    testnet_headers={"x-simulated-trading": "1"},
    order_fields=FillFields(filled="accFillSz", average="avgPx", fee=("fee",), fee_sign=-1, amount="sz"),
    trade_fields=FillFields(filled="fillSz", average="fillPx", fee=("fee",), fee_sign=-1),
)
format_client_id = SPEC.format_client_id  # perpbot.execution.client_ids looks it up here
