"""What the four venues' trading specifics share, so each venue's orders.py is data.

A venue is described by a `TradingSpec`: its ccxt class and the options that switch ccxt's hidden
defaults off, which credentials it signs with, how it spells a client order id and which parameter
carries it, its insufficient-funds markers, and where its own order and trade answers keep the
filled size, average price and fee as decimal strings (`FillFields`). perpbot.execution.ccxt_client
drives any venue through this one shape; the venue registry hands the specs out.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from pydantic import SecretStr

from perpbot.core.numbers import decimal_or_none
from perpbot.core.orders import OrderRequest
from perpbot.settings import VenueSettings

# VenueSettings attribute -> ccxt constructor key, for every credential any venue signs with.
CCXT_CREDENTIALS: Mapping[str, str] = {
    "api_key": "apiKey",
    "api_secret": "secret",
    "passphrase": "password",
    "wallet_address": "walletAddress",
    "private_key": "privateKey",
}
API_KEY_CREDENTIALS = ("api_key", "api_secret")

FetchOrderRaw = Callable[[Any, str, str], Awaitable["dict[str, Any] | None"]]


# -- client order ids ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SanitizedId:
    """A venue id spelled from the canonical id: characters the venue refuses dropped, then cut."""

    disallowed: re.Pattern[str]
    max_len: int

    def __call__(self, canonical: str) -> str:
        cid = self.disallowed.sub("", canonical)[: self.max_len]
        if not cid:
            raise ValueError("empty client order id")
        return cid


@dataclass(frozen=True, slots=True)
class HashedHexId:
    """'0x' + hex digits of sha256(canonical): deterministic (the same canonical id, the same id)."""

    hex_digits: int = 32

    def __call__(self, canonical: str) -> str:
        return "0x" + hashlib.sha256(canonical.encode()).hexdigest()[: self.hex_digits]


# -- fills and fees from the venue's own strings ------------------------------------------------
@dataclass(frozen=True, slots=True)
class VenueFill:
    """Numbers read from a venue's order or trade answer; None where the answer lacks the field."""

    filled: Decimal | None = None  # cumulative filled size (a trade: its size), venue units
    average: Decimal | None = None  # average fill price (a trade: its price)
    fee: Decimal | None = None  # cumulative fee, + paid / - rebate
    amount: Decimal | None = None  # the order's size, venue units


def _number(info: Any, path: str) -> Decimal | None:
    """The exact Decimal at a dotted path of a venue answer (strings, or integers), else None."""
    value = info
    for key in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None  # absent, null, or not the venue's own text (a float never counts as money)
    try:
        number = Decimal(value)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def ccxt_fee(order: Mapping[str, Any]) -> Decimal | None:
    """The sum of ccxt's fee costs (its fees list, else its fee), None when no item has a cost."""
    items = order.get("fees") or ([order["fee"]] if order.get("fee") else [])
    known = [cost for cost in (decimal_or_none((item or {}).get("cost")) for item in items) if cost is not None]
    return sum(known, Decimal(0)) if known else None


def _on_grid(number: object, lot: Decimal | None) -> Decimal | None:
    size = decimal_or_none(number)
    if size is None or lot is None:
        return size
    return (size / lot).quantize(Decimal(1), ROUND_HALF_EVEN) * lot


@dataclass(frozen=True, slots=True)
class FillFields:
    """Where a venue's answer keeps its fill numbers (dotted paths into ccxt's `info`).

    `average` of 0 counts as absent (venues send "0" or "" before a fill, as ccxt's omit_zero
    reads it); then `cost / filled` stands in for it (linear venues: quote value over base size).
    `filled` absent with `amount` and `remaining` present is amount - remaining (Hyperliquid's
    order status). `fee` paths are summed (Hyperliquid: fee + builderFee, as ccxt does); `fee_sign` -1 for a venue
    that reports charges as negative numbers (OKX), so the result is always + paid.
    """

    filled: str | None = None
    average: str | None = None
    cost: str | None = None
    fee: tuple[str, ...] = ()
    fee_sign: int = 1
    amount: str | None = None
    remaining: str | None = None

    def read_order(self, order: Mapping[str, Any], lot: Decimal | None) -> VenueFill:
        """An order answer of ccxt: the venue's strings in `info`; where they lack a number, ccxt's
        (sizes snapped back onto the lot grid: ccxt turned the venue's strings into floats)."""
        venue = self.read(order.get("info"))
        return VenueFill(
            filled=venue.filled if venue.filled is not None else _on_grid(order.get("filled"), lot),
            average=venue.average if venue.average is not None else decimal_or_none(order.get("average")),
            fee=venue.fee if venue.fee is not None else ccxt_fee(order),
            amount=venue.amount if venue.amount is not None else _on_grid(order.get("amount"), lot),
        )

    def read_trade(self, trade: Mapping[str, Any]) -> VenueFill:
        """A trade of ccxt (size in `filled`, price in `average`): the venue's strings, else ccxt's."""
        venue = self.read(trade.get("info"))
        return VenueFill(
            filled=venue.filled if venue.filled is not None else decimal_or_none(trade.get("amount")),
            average=venue.average if venue.average is not None else decimal_or_none(trade.get("price")),
            fee=venue.fee if venue.fee is not None else decimal_or_none((trade.get("fee") or {}).get("cost")),
        )

    def read(self, info: Any) -> VenueFill:
        """The venue's own strings only."""
        amount = _number(info, self.amount) if self.amount else None
        filled = _number(info, self.filled) if self.filled else None
        if filled is None and amount is not None and self.remaining:
            remaining = _number(info, self.remaining)
            filled = None if remaining is None else amount - remaining
        return VenueFill(filled=filled, average=self._average(info, filled), fee=self._fee(info), amount=amount)

    def _average(self, info: Any, filled: Decimal | None) -> Decimal | None:
        average = _number(info, self.average) if self.average else None
        if average:
            return average
        cost = _number(info, self.cost) if self.cost else None
        return cost / filled if cost is not None and filled else None

    def _fee(self, info: Any) -> Decimal | None:
        """The first path is the fee itself (absent: unknown); further paths are added when present."""
        parts = [_number(info, path) for path in self.fee]
        if not parts or parts[0] is None:
            return None
        return sum((part for part in parts if part is not None), Decimal(0)) * self.fee_sign


# -- the spec -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TradingSpec:
    """One venue's trading specifics for perpbot.execution.ccxt_client (see the module docstring)."""

    venue: str
    ccxt_class: str
    market_types: tuple[str, ...]  # ccxt fetchMarkets types: the perpetuals only, no spot/option loads
    options: Mapping[str, Any]  # besides defaultType swap and those types
    credentials: tuple[str, ...]  # VenueSettings attributes this venue signs with
    client_id_param: str  # the parameter that names our id on a new order (clOrdId, newClientOrderId, ...)
    client_id: Callable[[str], str]
    insufficient_funds_markers: tuple[str, ...]  # substrings of a venue error meaning "not enough margin"
    order_fields: FillFields
    trade_fields: FillFields
    time_in_force: Mapping[str, str] = field(default_factory=lambda: {"IOC": "IOC"})
    order_extra: Mapping[str, Any] = field(default_factory=dict)
    margin_mode_param: str | None = None  # the order parameter naming the margin mode (OKX tdMode)
    lookup_id_param: str | None = None  # the one that finds it again (query, cancel) if not the same
    fetch_extra: Mapping[str, Any] = field(default_factory=dict)
    testnet_headers: Mapping[str, str] = field(default_factory=dict)
    funding_amount_sign: int = 1  # -1 where the venue reports funding as a fee (paid positive)
    fetch_order_raw: FetchOrderRaw | None = None  # the order by client id where ccxt's fetch_order cannot
    # Removes from a constructed ccxt exchange what it would put on the wire unasked (broker or
    # builder attribution); ccxt options alone cannot switch those off.
    wire_hygiene: Callable[[Any], None] | None = None

    def ccxt_config(self, settings: VenueSettings) -> dict[str, Any]:
        """ccxt constructor config: this venue's options and credentials (only those set)."""
        options = {"defaultType": "swap", "fetchMarkets": {"types": list(self.market_types)}}
        config: dict[str, Any] = {"options": {**options, **copy.deepcopy(dict(self.options))}}
        for attribute in self.credentials:
            value = getattr(settings, attribute)
            if value:
                config[CCXT_CREDENTIALS[attribute]] = (
                    value.get_secret_value() if isinstance(value, SecretStr) else value
                )
        if settings.environment == "testnet" and self.testnet_headers:
            config["headers"] = dict(self.testnet_headers)
        return config

    def configured(self, settings: VenueSettings) -> "TradingSpec":
        """This spec with the venue's configured margin mode in every order (where orders name it)."""
        if self.margin_mode_param is None:
            return self
        return dataclasses.replace(
            self, order_extra={**self.order_extra, self.margin_mode_param: settings.margin_mode},
            options={**self.options, "defaultMarginMode": settings.margin_mode})

    def prepare(self, exchange: Any) -> None:
        """Applied to the constructed exchange once its options are in place."""
        if self.wire_hygiene is not None:
            self.wire_hygiene(exchange)

    def format_client_id(self, canonical: str) -> str:
        return self.client_id(canonical)

    def order_params(self, request: OrderRequest) -> dict[str, Any]:
        params: dict[str, Any] = {self.client_id_param: request.client_order_id, **self.order_extra}
        tif = self.time_in_force.get(request.time_in_force)
        if tif is not None:
            params["timeInForce"] = tif
        if request.reduce_only:
            params["reduceOnly"] = True
        return params

    def fetch_params(self, client_order_id: str) -> dict[str, Any]:
        return {**self.cancel_params(client_order_id), **self.fetch_extra}

    def cancel_params(self, client_order_id: str) -> dict[str, Any]:
        return {self.lookup_id_param or self.client_id_param: client_order_id}

    def order_fill(self, order: Mapping[str, Any], lot: Decimal | None) -> VenueFill:
        """Filled size, average price, fee and order size of a ccxt order answer (FillFields.read_order)."""
        return self.order_fields.read_order(order, lot)

    def trade_fill(self, trade: Mapping[str, Any]) -> VenueFill:
        """Size (`filled`), price (`average`) and fee of a ccxt trade (FillFields.read_trade)."""
        return self.trade_fields.read_trade(trade)
