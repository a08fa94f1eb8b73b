"""Hyperliquid internal transfer: spot USDC -> perp USDC, a user-signed ``usdClassTransfer`` action
(EIP-712, perpbot.venues.hyperliquid.signing) POSTed to /exchange, as the official SDK's usd_class_transfer
sends it: {"action": {type, amount, toPerp, nonce, signatureChainId, hyperliquidChain}, "nonce", "signature"}.
No vault, no sub-account, nothing else on the action."""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from perpbot.core.transfers import TransferCall, cents
from perpbot.settings import VenueSettings
from perpbot.venues._private import secret
from perpbot.venues.hyperliquid.signing import decimal_to_wire, load_private_key, sign_user_signed_action

VENUE = "hyperliquid"
USD_CLASS_TRANSFER_SIGN_TYPES = ({"name": "hyperliquidChain", "type": "string"},
                                 {"name": "amount", "type": "string"}, {"name": "toPerp", "type": "bool"},
                                 {"name": "nonce", "type": "uint64"})
USD_CLASS_TRANSFER_PRIMARY_TYPE = "HyperliquidTransaction:UsdClassTransfer"


class HyperliquidTransfers:
    venue = VENUE
    currency = "USDC"
    source = "spot wallet"

    def __init__(self, cfg: VenueSettings, clock: Callable[[], float] = time.time) -> None:
        self._key = load_private_key(secret(cfg, "private_key"))  # the key object only; the text is dropped
        self._mainnet = cfg.environment == "mainnet"
        self._clock = clock
        self._last_nonce = -1

    def to_trading(self, amount: Decimal, transfer_id: str) -> TransferCall:
        nonce = max(int(self._clock() * 1000), self._last_nonce + 1)
        self._last_nonce = nonce
        action = {"type": "usdClassTransfer", "amount": decimal_to_wire(cents(amount)), "toPerp": True,
                  "nonce": nonce}
        signed, signature = sign_user_signed_action(self._key, action, USD_CLASS_TRANSFER_SIGN_TYPES,
                                                    USD_CLASS_TRANSFER_PRIMARY_TYPE, self._mainnet)
        return TransferCall("privatePostExchange", {"action": signed, "nonce": nonce, "signature": signature})

    def venue_id(self, answer: Any) -> str:
        if not isinstance(answer, dict) or answer.get("status") != "ok":
            raise ValueError(f"hyperliquid transfer not accepted: {answer!r}")
        return "ok"  # Hyperliquid answers a transfer with no id: the nonce in our journal names it
