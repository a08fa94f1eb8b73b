"""Hyperliquid's private stream as a PrivateLink: no login; user subscriptions by address
(orderUpdates, userFills, userFundings, userEvents, clearinghouseState) on the public socket.

userEvents (pushed on channel "user") repeats the funding userFundings reports, without its settlement time (the parser can
only date it by our receive time): the link books funding from userFundings alone, so the
payment's time, and so its match with the REST funding history, is the venue's."""

from __future__ import annotations

from decimal import Decimal

import orjson

from perpbot.core.private_events import FundingEvent, PrivateEvent
from perpbot.settings import VenueSettings
from perpbot.venues._private import LinkBase
from perpbot.venues.hyperliquid import private


class HyperliquidPrivateLink(LinkBase):
    venue = "hyperliquid"
    ping_frame: str | None = private.PING_FRAME
    ping_interval_s: float = 30.0  # Hyperliquid closes a connection silent for 60 s

    def __init__(self, url: str, cfg: VenueSettings, contract_sizes: dict[str, Decimal]) -> None:
        super().__init__(url, contract_sizes, private.parse_private, quote=private.COLLATERAL)
        if not cfg.wallet_address:
            raise ValueError("the private stream needs wallet_address (set it in the environment)")
        self._address = cfg.wallet_address

    def subscribe_frames(self) -> list[str]:
        return private.subscribe_frames(self._address)

    def parse(self, frame: str | bytes, recv_ts: float) -> list[PrivateEvent]:
        events = super().parse(frame, recv_ts)
        if any(isinstance(e, FundingEvent) for e in events) and _channel(frame) != "userFundings":
            return [e for e in events if not isinstance(e, FundingEvent)]
        return events


def _channel(frame: str | bytes) -> object:
    message = orjson.loads(frame)
    return message.get("channel") if isinstance(message, dict) else None
