"""The simulator's margin figures (perpbot.sim.trading.margin) in each venue's wire fields, REST and push alike.

One function per venue returns the position fields that carry margin state, so the REST position
views and the private pushes print the same strings for the same moment:

* OKX positions (REST /account/positions and the `positions` push): mgnMode, mmr (maintenance
  margin, quote), liqPx, mgnRatio (equity over maintenance margin), adl (1-5).
* Bybit position (REST /v5/position/list and the `position` push): tradeMode (0 cross, 1 isolated),
  liqPrice, positionMM, adlRankIndicator; the wallet's accountMMRate and totalMaintenanceMargin.
* Binance (REST /fapi/v2/positionRisk, /fapi/v1/adlQuantile): marginType, liquidationPrice,
  maintMargin, adlQuantile (0-4); the stream (ACCOUNT_UPDATE) carries none of them but `mt`.
* Hyperliquid (clearinghouseState, REST and push): liquidationPx, leverage.type,
  crossMaintenanceMarginUsed; no ADL indicator.
Empty strings (OKX, Bybit) / null (Hyperliquid) / "0" (Binance) when flat or without a liquidation price.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from perpbot.sim.trading.accounts import dec_str
from perpbot.sim.trading.exchange import SimExchange
from perpbot.sim.trading.margin import ISOLATED

OKX_CATEGORIES = {"liquidation": "full_liquidation", "adl": "adl"}
BYBIT_EXEC_TYPES = {"liquidation": "BustTrade", "adl": "AdlTrade"}
BYBIT_CREATE_TYPES = {"liquidation": "CreateByLiq", "adl": "CreateByAdl"}


def _text(value: Decimal | None, empty: str = "") -> str:
    return dec_str(value) if value is not None else empty


def okx_margin_fields(sim: SimExchange, symbol: str) -> dict[str, Any]:
    risk = sim.risk()
    leg = risk.legs.get(symbol)
    mode = sim.account.margin_mode_of(symbol)
    if leg is None:
        return {"mgnMode": mode, "mmr": "", "liqPx": "", "mgnRatio": "", "adl": ""}
    ratio = risk.equity_over_maintenance
    return {"mgnMode": mode, "mmr": dec_str(leg.maintenance_margin), "liqPx": _text(leg.liquidation_price),
            "mgnRatio": _text(ratio), "adl": str(leg.adl_rank)}


def bybit_margin_fields(sim: SimExchange, symbol: str) -> dict[str, Any]:
    leg = sim.leg_risk(symbol)
    trade_mode = 1 if sim.account.margin_mode_of(symbol) == ISOLATED else 0
    if leg is None:
        return {"tradeMode": trade_mode, "liqPrice": "", "positionMM": "0", "positionMMByMp": "0",
                "adlRankIndicator": 0}
    return {"tradeMode": trade_mode, "liqPrice": _text(leg.liquidation_price),
            "positionMM": dec_str(leg.maintenance_margin), "positionMMByMp": dec_str(leg.maintenance_margin),
            "adlRankIndicator": leg.adl_rank}


def bybit_wallet_fields(sim: SimExchange) -> dict[str, Any]:
    risk = sim.risk()
    mm = dec_str(risk.maintenance_margin)
    rate = dec_str(risk.margin_ratio)
    return {"accountMMRate": rate, "accountMMRateByMp": rate, "totalMaintenanceMargin": mm,
            "totalMaintenanceMarginByMp": mm}


def binance_margin_fields(sim: SimExchange, symbol: str) -> dict[str, Any]:
    leg = sim.leg_risk(symbol)
    mode = sim.account.margin_mode_of(symbol)
    if leg is None:
        return {"marginType": mode, "liquidationPrice": "0", "maintMargin": "0", "adlQuantile": 0}
    # adlQuantile 0-4 where the other venues count 1-5.
    return {"marginType": mode, "liquidationPrice": _text(leg.liquidation_price, "0"),
            "maintMargin": dec_str(leg.maintenance_margin), "adlQuantile": max(0, leg.adl_rank - 1)}


def hyperliquid_margin_fields(sim: SimExchange, coin: str) -> dict[str, Any]:
    leg = sim.leg_risk(coin)
    return {"liquidationPx": _text(leg.liquidation_price) if leg is not None and leg.liquidation_price else None,
            "marginType": sim.account.margin_mode_of(coin)}


__all__ = [
    "BYBIT_CREATE_TYPES", "BYBIT_EXEC_TYPES", "OKX_CATEGORIES", "binance_margin_fields", "bybit_margin_fields",
    "bybit_wallet_fields", "hyperliquid_margin_fields", "okx_margin_fields",
]
