"""Pluggable strategies over perpbot's Strategy protocol; configuration picks the enabled ones."""

from __future__ import annotations

from decimal import Decimal

from perpbot.scanner.protocol import Strategy
from perpbot.settings import StrategiesSettings
from strategies.funding_spread import FundingSpreadStrategy
from strategies.price_spread import PriceSpreadStrategy


def build_strategies(settings: StrategiesSettings, usdc_usdt: Decimal = Decimal(1)) -> list[Strategy]:
    """The strategies enabled in `settings`, in a fixed order (price spread, then funding); `usdc_usdt`
    (risk.usdc_usdt_rate) is the USDT per USDC their edges compare a USDC leg with a USDT leg at."""
    built: list[Strategy] = []
    if settings.price_spread.enabled:
        built.append(PriceSpreadStrategy(settings.price_spread, usdc_usdt))
    if settings.funding_spread.enabled:
        built.append(FundingSpreadStrategy(settings.funding_spread, usdc_usdt))
    return built


__all__ = ["FundingSpreadStrategy", "PriceSpreadStrategy", "build_strategies"]
