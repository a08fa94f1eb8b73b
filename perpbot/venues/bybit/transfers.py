"""Bybit internal transfer: funding account (FUND) -> unified trading account (UNIFIED),
POST /v5/asset/transfer/inter-transfer. Its transferId is ours (a UUID): Bybit takes one id once, so the
same request can never move money twice."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from perpbot.core.transfers import TransferCall, cents

VENUE = "bybit"


class BybitTransfers:
    venue = VENUE
    currency = "USDT"
    source = "funding account (FUND)"

    def to_trading(self, amount: Decimal, transfer_id: str) -> TransferCall:
        return TransferCall("privatePostV5AssetTransferInterTransfer", {
            "transferId": str(uuid.UUID(hex=transfer_id)), "coin": self.currency, "amount": str(cents(amount)),
            "fromAccountType": "FUND", "toAccountType": "UNIFIED"})

    def venue_id(self, answer: Any) -> str:
        result = answer.get("result") if isinstance(answer, dict) else None
        if not isinstance(answer, dict) or str(answer.get("retCode")) != "0" or not isinstance(result, dict) \
                or not result.get("transferId") or result.get("status") not in (None, "SUCCESS", "PENDING"):
            raise ValueError(f"bybit transfer not accepted: {answer!r}")
        return str(result["transferId"])
