"""Positions, balances and PnL, all exact Decimals."""

from perpbot.portfolio.book import FillRecord, Portfolio, Position

__all__ = ["FillRecord", "Portfolio", "Position"]
