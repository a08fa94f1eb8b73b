"""Hyperliquid trading specifics for the ccxt client, as data: options, order params, client-id format.

ccxt's defaults would approve a builder fee and set a referrer on the first private call, and
attach its builder to every order: refSet True skips the referrer call, and `no_builder` keeps
both the approval call and the builder field off the wire (see there). Errors arrive as HTTP 200
with `status: "err"` or a per-order `error` string, e.g. "Insufficient margin to place order.",
"Order must have minimum value of $10.", "Reduce only order would increase position.", "Order
could not immediately match against any resting orders." (an IOC that found nothing: not a fault).

Fills: the order answer's status is {"filled": {totalSz, avgPx, oid}} or {"resting": {oid}};
the order status query gives origSz and sz (what is left), so filled = origSz - sz, without a
price or fee; a fill of userFills carries sz, px, fee and, where a builder was named, builderFee.
"""

from __future__ import annotations

from typing import Any

from perpbot.venues._trading import FillFields, HashedHexId, TradingSpec


def no_builder(exchange: Any) -> None:
    """ccxt attaches `builder: {b: <ccxt's address>, f: 0}` to every order once its option
    approvedBuilderFee is True (the live venue rejects a builder the wallet never approved), and
    signs an approveBuilderFee action on the first private call while it is False. The option
    stays False and the approval step answers "done" without sending anything, so no order names
    a builder and no approval is signed."""
    exchange.options["approvedBuilderFee"] = False
    exchange.options["builderFee"] = False

    async def approval_skipped() -> bool:
        return True

    exchange.handle_builder_fee_approval = approval_skipped


SPEC = TradingSpec(
    venue="hyperliquid",
    ccxt_class="hyperliquid",
    market_types=("swap",),
    options={
        "approvedBuilderFee": False,  # with no_builder: no builder on orders, no approval call
        "refSet": True,  # no setReferrer call
        "builderFee": False,
        "defaultSlippage": 0.0,  # we always send our own limit price
    },
    credentials=("wallet_address", "private_key"),
    client_id_param="clientOrderId",
    client_id=HashedHexId(32),  # cloid: '0x' + 32 hex
    insufficient_funds_markers=("Insufficient margin",),
    time_in_force={"IOC": "Ioc", "GTC": "Gtc"},
    wire_hygiene=no_builder,
    order_fields=FillFields(filled="filled.totalSz", average="filled.avgPx",
                            amount="order.origSz", remaining="order.sz"),
    trade_fields=FillFields(filled="sz", average="px", fee=("fee", "builderFee")),
)
format_client_id = SPEC.format_client_id  # perpbot.execution.client_ids looks it up here
