"""Binance USD-M's user-data stream as a PrivateLink: a listen key created over REST
(POST /fapi/v1/listenKey with the API key header), kept alive on the venue's schedule (PUT), and
replaced when the venue says it expired (`listenKeyExpired`) or no longer knows it (-1125); the
stream URL is the WS base plus /ws/<listenKey>. No login frame, no subscribe; protocol pings.
Funding comes from the stream only when the update names its symbol (isolated margin); a
cross-margin FUNDING_FEE update does not, and that funding is booked by the REST funding poll.

TRADE_LITE frames repeat, without the commission, an execution the ORDER_TRADE_UPDATE frame
carries under the same trade id: the first copy of a trade id is the one booked, so the link
drops TRADE_LITE's fill and books the one with the commission.
"""

from __future__ import annotations

from decimal import Decimal

import aiohttp
import orjson

from perpbot.core.private_events import FundingEvent, PrivateEvent, VenueFill
from perpbot.settings import VenueSettings
from perpbot.venues._private import LinkBase, secret
from perpbot.venues.binance import private

UNKNOWN_KEY_CODE = -1125  # "This listenKey does not exist."
REST_TIMEOUT_S = 10.0


class BinancePrivateLink(LinkBase):
    venue = "binance"
    ping_frame: str | None = None  # Binance pings; the client's protocol pings keep the watchdog fed
    ping_interval_s: float = 60.0
    keepalive_interval_s: float | None = float(private.KEEPALIVE_INTERVAL_S)
    needs_ack: bool = False  # a listen-key stream pushes as soon as it is open

    def __init__(self, ws_base: str, rest_url: str, cfg: VenueSettings, contract_sizes: dict[str, Decimal]) -> None:
        super().__init__(ws_base, contract_sizes, private.parse_private)
        self._rest = rest_url.rstrip("/")
        self._headers = {"X-MBX-APIKEY": secret(cfg, "api_key")}
        self._key: str | None = None
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REST_TIMEOUT_S))
        return self._session

    async def _call(self, name: str) -> tuple[int, bytes]:
        method, path = private.listen_key_path()[name]
        async with self._http().request(method, self._rest + path, headers=self._headers) as response:
            return response.status, await response.read()

    async def url(self) -> str:
        """The stream URL for a good key: the current one when the venue still knows it, else a new one."""
        if self._key is not None and not await self.keepalive():
            self._key = None
        if self._key is None:
            status, body = await self._call("create")
            if status != 200:
                raise RuntimeError(f"listen key not created: HTTP {status} {body[:200]!r}")
            self._key = private.parse_listen_key(body)
        return private.stream_url(self._url, self._key)

    async def keepalive(self) -> bool:
        if self._key is None:
            return False
        status, body = await self._call("keepalive")
        if status == 200:
            return True
        try:
            code = orjson.loads(body).get("code")
        except (orjson.JSONDecodeError, AttributeError):
            code = None
        if code == UNKNOWN_KEY_CODE:
            return False
        raise RuntimeError(f"listen key keepalive: HTTP {status} {body[:200]!r}")

    def key_expired(self) -> None:
        self._key = None

    def parse(self, frame: str | bytes, recv_ts: float) -> list[PrivateEvent]:
        events = super().parse(frame, recv_ts)
        if any(isinstance(e, VenueFill) for e in events) and _is_trade_lite(frame):
            events = [e for e in events if not isinstance(e, VenueFill)]
        # A cross-margin FUNDING_FEE update names no symbol: several positions settling at once
        # cannot be told apart, so that funding is left to the REST funding poll (by symbol).
        return [e for e in events if not (isinstance(e, FundingEvent) and not e.symbol)]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _is_trade_lite(frame: str | bytes) -> bool:
    message = orjson.loads(frame)
    if isinstance(message, dict) and isinstance(message.get("data"), dict):
        message = message["data"]
    return isinstance(message, dict) and message.get("e") == "TRADE_LITE"
