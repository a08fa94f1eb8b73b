"""What the four venues' symbol mapping and instrument building share, so each symbols.py is mostly data.

Instruments are exact: the venue's own decimal strings in ccxt's `market['info']` are preferred, ccxt's
parsed numbers (floats in TICK_SIZE mode, converted through their shortest repr) are the fallback.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from perpbot.core.instruments import Instrument
from perpbot.core.numbers import venue_decimal


def split_ccxt_symbol(ccxt_symbol: str) -> tuple[str, str, str] | None:
    """BASE/QUOTE:SETTLE -> (base, quote, settle); None unless it has both separators, a base and a quote."""
    pair, sep, settle = ccxt_symbol.partition(":")
    base, slash, quote = pair.partition("/")
    if not sep or not slash or not base or not quote:
        return None
    return base, quote, settle


@dataclass(frozen=True, slots=True)
class JoinedSymbols:
    """Native symbols that join base and quote (BTCUSDT) for linear perpetuals settling in their quote.
    `suffixes` spell a quote differently (Bybit's USDC perpetuals: BTCPERP = BTC/USDC:USDC)."""

    quotes: tuple[str, ...]
    native_kind: str  # "Binance USD-M perpetual", for error messages
    ccxt_kind: str  # "ccxt USD-M perpetual"
    suffixes: Mapping[str, str] = field(default_factory=dict)  # native suffix -> quote

    def to_ccxt(self, native: str) -> str:
        for suffix, quote in self.suffixes.items():
            if native.endswith(suffix) and len(native) > len(suffix):
                return f"{native[: -len(suffix)]}/{quote}:{quote}"
        for quote in self.quotes:
            if native.endswith(quote) and len(native) > len(quote):
                return f"{native[: -len(quote)]}/{quote}:{quote}"
        raise ValueError(f"not a {self.native_kind} symbol: {native!r}")

    def from_ccxt(self, ccxt_symbol: str) -> str:
        parts = split_ccxt_symbol(ccxt_symbol)
        if parts is None or parts[2] != parts[1]:
            raise ValueError(f"not a {self.ccxt_kind} symbol: {ccxt_symbol!r}")
        base, quote, _ = parts
        for suffix, named in self.suffixes.items():
            if quote == named:
                return f"{base}{suffix}"
        return f"{base}{quote}"


@dataclass(frozen=True, slots=True)
class Fees:
    """A venue's assumed fee tier and usual funding interval (see VENUES.md for each source)."""

    taker: Decimal
    maker: Decimal
    funding_interval_hours: int


def make_instrument(
    venue: str, market: Mapping[str, Any], fees: Fees, *, symbol: str, tick: Decimal, lot: Decimal,
    min_qty: Decimal, min_notional: Decimal, contract_size: Decimal = Decimal(1), funding_hours: int | None = None,
) -> Instrument:
    """An Instrument of a ccxt market (base, quote and ccxt symbol from it) with the venue's exact numbers."""
    return Instrument(
        venue=venue,
        symbol=symbol,
        base=market["base"],
        quote=market["quote"],
        ccxt_symbol=market["symbol"],
        tick_size=tick,
        lot_size=lot,
        min_qty=min_qty,
        min_notional=min_notional,
        contract_size=contract_size,
        taker_fee=fees.taker,
        maker_fee=fees.maker,
        funding_interval_hours=fees.funding_interval_hours if funding_hours is None else funding_hours,
    )


def _text(info: Mapping[str, Any], path: str | None) -> object:
    """The value at a dotted path of `info`, None where any step is missing (or no path)."""
    if path is None:
        return None
    value: object = info
    for key in path.split("."):
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


@dataclass(frozen=True, slots=True)
class InstrumentFields:
    """Where a venue's instrument strings sit in ccxt's `market['info']` (dotted paths); each falls
    back to ccxt's number (precision / limits / contractSize). Without `contract` the contract size is 1."""

    venue: str
    fees: Fees
    tick: str
    lot: str
    min_qty: str
    min_notional: str | None = None
    contract: str | None = None

    def build(self, market: Mapping[str, Any], from_ccxt: Callable[[str], str],
              info: Mapping[str, Any] | None = None, funding_hours: int | None = None) -> Instrument:
        """`info` replaces market['info'] where the venue nests its strings in lists (Binance filters)."""
        if info is None:
            info = market.get("info") or {}
        precision = market.get("precision") or {}
        limits = market.get("limits") or {}
        tick = venue_decimal(_text(info, self.tick), precision.get("price"))
        lot = venue_decimal(_text(info, self.lot), precision.get("amount"))
        min_qty = venue_decimal(_text(info, self.min_qty), (limits.get("amount") or {}).get("min")) or lot
        min_notional = venue_decimal(_text(info, self.min_notional), (limits.get("cost") or {}).get("min"))
        contract = Decimal(1)
        if self.contract is not None:
            contract = venue_decimal(_text(info, self.contract), market.get("contractSize")) or contract
        if tick is None or lot is None or min_qty is None:
            raise ValueError(f"{self.venue} market {market.get('id')!r} lacks tick or lot size")
        return make_instrument(
            self.venue, market, self.fees, symbol=market.get("id") or from_ccxt(market["symbol"]), tick=tick,
            lot=lot, min_qty=min_qty, min_notional=min_notional or Decimal(0), contract_size=contract,
            funding_hours=funding_hours,
        )

