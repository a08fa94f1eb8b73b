"""Bybit v5's private stream as a PrivateLink: `auth` op (HMAC of "GET/realtime"+expires), then
order, execution, position and wallet topics; {"op":"ping"} keepalive."""

from __future__ import annotations

import time
from decimal import Decimal

from perpbot.settings import VenueSettings
from perpbot.venues._private import LinkBase, secret
from perpbot.venues.bybit import private

AUTH_VALID_MS = 10_000  # the signature's expiry: a little ahead, so clock skew does not refuse it


class BybitPrivateLink(LinkBase):
    venue = "bybit"
    ping_frame: str | None = private.PING_FRAME
    ping_interval_s: float = 20.0  # Bybit recommends a ping every 20 s

    def __init__(self, url: str, cfg: VenueSettings, contract_sizes: dict[str, Decimal]) -> None:
        super().__init__(url, contract_sizes, private.parse_private)
        self._key, self._secret = secret(cfg, "api_key"), secret(cfg, "api_secret")

    def login_frames(self) -> list[str]:
        return [private.auth_frame(self._key, self._secret, int(time.time() * 1000) + AUTH_VALID_MS)]

    def subscribe_frames(self) -> list[str]:
        return [private.subscribe_frame()]
