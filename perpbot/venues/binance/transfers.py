"""Binance internal transfer: spot wallet -> USD-M futures wallet, POST /sapi/v1/asset/transfer
type MAIN_UMFUTURE (signed like every private call), as ccxt's binance.transfer shapes it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from perpbot.core.transfers import TransferCall, cents

VENUE = "binance"


class BinanceTransfers:
    venue = VENUE
    currency = "USDT"
    source = "spot wallet (MAIN)"

    def to_trading(self, amount: Decimal, transfer_id: str) -> TransferCall:
        # Binance takes no client id for a transfer: transfer_id stays in our journal only.
        return TransferCall("sapiPostAssetTransfer", {"type": "MAIN_UMFUTURE", "asset": self.currency,
                                                      "amount": str(cents(amount))})

    def venue_id(self, answer: Any) -> str:
        if not isinstance(answer, dict) or answer.get("tranId") is None:
            raise ValueError(f"binance transfer not accepted: {answer!r}")
        return str(answer["tranId"])
