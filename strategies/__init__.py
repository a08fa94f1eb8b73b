"""Pluggable strategies over perpbot's Strategy protocol; configuration picks the enabled ones."""

from __future__ import annotations

from perpbot.scanner.protocol import Strategy
from perpbot.settings import StrategiesSettings
from strategies.funding_spread import FundingSpreadStrategy
from strategies.price_spread import PriceSpreadStrategy


def build_strategies(settings: StrategiesSettings) -> list[Strategy]:
    """The strategies enabled in `settings`, in a fixed order (price spread, then funding)."""
    built: list[Strategy] = []
    if settings.price_spread.enabled:
        built.append(PriceSpreadStrategy(settings.price_spread))
    if settings.funding_spread.enabled:
        built.append(FundingSpreadStrategy(settings.funding_spread))
    return built


__all__ = ["FundingSpreadStrategy", "PriceSpreadStrategy", "build_strategies"]
