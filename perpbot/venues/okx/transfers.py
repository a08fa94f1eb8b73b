"""OKX internal transfer: funding account ("6") -> trading account ("18"), POST /api/v5/asset/transfer
(type "0": within the account), as ccxt's okx.transfer shapes it."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from perpbot.core.transfers import TransferCall, cents

VENUE = "okx"


class OkxTransfers:
    venue = VENUE
    currency = "USDT"
    source = "funding account (6)"

    def to_trading(self, amount: Decimal, transfer_id: str) -> TransferCall:
        # transfer_id is not sent: OKX's optional clientId is kept off the wire (ccxt's shape, nothing added).
        return TransferCall("privatePostAssetTransfer", {"ccy": self.currency, "amt": str(cents(amount)),
                                                         "type": "0", "from": "6", "to": "18"})

    def venue_id(self, answer: Any) -> str:
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(answer, dict) or str(answer.get("code")) != "0" or not data or not data[0].get("transId"):
            raise ValueError(f"okx transfer not accepted: {answer!r}")
        return str(data[0]["transId"])
