"""OKX's private stream as a PrivateLink: `login` op (HMAC of timestamp+GET+/users/self/verify),
then orders, positions and account channels; text ping/pong."""

from __future__ import annotations

import time
from decimal import Decimal

from perpbot.settings import VenueSettings
from perpbot.venues._private import LinkBase, secret
from perpbot.venues.okx import private


class OkxPrivateLink(LinkBase):
    venue = "okx"
    ping_frame: str | None = "ping"
    ping_interval_s: float = 20.0  # OKX closes a connection silent for 30 s

    def __init__(self, url: str, cfg: VenueSettings, symbols: list[str], contract_sizes: dict[str, Decimal]) -> None:
        super().__init__(url, contract_sizes, private.parse_private)
        self._key, self._secret = secret(cfg, "api_key"), secret(cfg, "api_secret")
        self._passphrase = secret(cfg, "passphrase")
        self._symbols = list(symbols)

    def login_frames(self) -> list[str]:
        return [private.login_frame(self._key, self._secret, self._passphrase, time.time())]

    def subscribe_frames(self) -> list[str]:
        return [private.subscribe_frame(self._symbols)]
