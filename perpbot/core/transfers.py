"""Internal transfers as data: one venue request that moves collateral from the venue's own funding or spot
wallet into its futures trading wallet (never across venues, never a withdrawal).

Each venue's shape is built in perpbot/venues/<venue>/transfers.py (`TransferLink`); the execution stage
(perpbot.execution.transfers) decides when, sends the call through the venue's ccxt client and records it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import Any, Protocol

CENT = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class TransferCall:
    """The ccxt implicit method to call (e.g. ``privatePostAssetTransfer``) and its parameters, exactly as sent."""

    method: str
    params: dict[str, Any]


class TransferLink(Protocol):
    venue: str
    currency: str  # what the trading wallet holds: USDT, or USDC on Hyperliquid
    source: str  # the wallet taken from, as the venue names it (for logs and the audit trail)

    def to_trading(self, amount: Decimal, transfer_id: str) -> TransferCall:
        """The request moving `amount` (in `currency`, cents) from the funding/spot wallet into the trading one."""
        ...

    def venue_id(self, answer: Any) -> str:
        """The venue's id of a transfer it accepted; raises ValueError on an answer that is not an acceptance."""
        ...


def cents(amount: Decimal) -> Decimal:
    """An amount down to whole cents: a transfer never moves more than was decided."""
    return amount.quantize(CENT, rounding=ROUND_FLOOR)


__all__ = ["CENT", "TransferCall", "TransferLink", "cents"]
