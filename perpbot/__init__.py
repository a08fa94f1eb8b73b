"""perpbot: cross-venue perpetual futures arbitrage service."""

__version__ = "0.1.0"
