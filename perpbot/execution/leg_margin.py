"""A leg's margin figures from a REST position row (ccxt's unified row and the venue's raw `info`).

The fallback for what the private streams do not push (Binance's ACCOUNT_UPDATE carries no liquidation
price) and the start-up/reconciliation source for every venue. The venue's own strings in `info` are
read first, so the figures stay exact; ccxt's unified numbers (floats) are the fallback:

| venue       | liquidation price | maintenance margin | margin ratio | ADL rank            | margin mode |
|-------------|-------------------|--------------------|--------------|---------------------|-------------|
| OKX         | liqPx             | mmr                | mgnRatio     | adl (1-5)           | mgnMode     |
| Bybit       | liqPrice          | positionMM         | -            | adlRankIndicator    | tradeMode   |
| Binance     | liquidationPrice  | maintMargin        | -            | adlQuantile / adl   | marginType  |
| Hyperliquid | position.liquidationPx | -             | -            | (none)              | leverage.type |
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from perpbot.core.margin import LegMargin

LIQUIDATION_KEYS = ("liqPx", "liqPrice", "liquidationPrice", "liquidationPx")
MAINTENANCE_KEYS = ("mmr", "positionMM", "maintMargin")
RATIO_KEYS = ("mgnRatio",)
ADL_KEYS = ("adl", "adlRankIndicator", "adlQuantile")
MODE_KEYS = ("mgnMode", "marginType", "tradeMode")
TRADE_MODES = {"0": "cross", "1": "isolated"}


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        number = Decimal(value if isinstance(value, str) else str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _first(info: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if key in info and info[key] not in (None, ""):
            return info[key]
    return None


def leg_margin_from_row(venue: str, symbol: str, size: Decimal, row: dict[str, Any], ts_ms: int) -> LegMargin:
    """The margin figures of one ccxt position row; a liquidation price of 0 (Binance, Bybit: none) is None."""
    info = row.get("info") or {}
    if isinstance(info, dict) and isinstance(info.get("position"), dict):
        info = info["position"]  # Hyperliquid: {"type": "oneWay", "position": {...}}
    if not isinstance(info, dict):
        info = {}
    liquidation = _decimal(_first(info, LIQUIDATION_KEYS))
    if liquidation is None:
        liquidation = _decimal(row.get("liquidationPrice"))
    maintenance = _decimal(_first(info, MAINTENANCE_KEYS))
    if maintenance is None:
        maintenance = _decimal(row.get("maintenanceMargin"))
    adl = _first(info, ADL_KEYS)
    rank = int(adl) if isinstance(adl, int) or (isinstance(adl, str) and adl.isdigit()) else None
    mode = _first(info, MODE_KEYS)
    if isinstance(mode, int) or (isinstance(mode, str) and mode in TRADE_MODES):
        mode = TRADE_MODES.get(str(mode))
    if mode is None:
        leverage_info = info.get("leverage")
        mode = leverage_info.get("type") if isinstance(leverage_info, dict) else row.get("marginMode")
    mark = _decimal(_first(info, ("markPx", "markPrice"))) or _decimal(row.get("markPrice"))
    return LegMargin(
        venue, symbol, size, mark, liquidation if liquidation else None, maintenance,
        _decimal(_first(info, RATIO_KEYS)), rank, str(mode).lower() if mode else None,
        _decimal(row.get("leverage")), ts_ms, source="rest",
    )


__all__ = ["leg_margin_from_row"]
