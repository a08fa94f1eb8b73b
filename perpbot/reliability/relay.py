"""A WebSocket relay between the bot and the simulator's private streams, for the crash suite's
`fill_pushed` kill point: it forwards every frame both ways unchanged and, when armed, reports the
moment a fill frame has been handed to the bot's socket, so the rig can SIGKILL the bot between a
pushed fill and its journal write.

The bot's `private_ws_url` of a relayed venue points at the relay (same path); the relay opens the
same path on the simulator for each connection and closes one side when the other closes. OKX
(`orders` frames with a trade id), Bybit (`execution`) and Binance (`TRADE_LITE` /
`ORDER_TRADE_UPDATE` with execution type TRADE) are recognised; Hyperliquid's private subscriptions
share its public socket and are not relayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

log = logging.getLogger("perpbot.reliability")

RELAYED_VENUES = ("okx", "bybit", "binance")


@dataclass(frozen=True, slots=True)
class PushedFill:
    venue: str
    client_order_id: str
    trade_id: str


def fills_in(venue: str, text: str) -> list[PushedFill]:
    """The executions a private-stream frame of `venue` carries (none for any other frame)."""
    try:
        msg = json.loads(text)
    except ValueError:
        return []
    if not isinstance(msg, dict):
        return []
    out: list[PushedFill] = []
    if venue == "okx" and (msg.get("arg") or {}).get("channel") == "orders":
        for row in msg.get("data") or []:
            if row.get("tradeId") and row.get("fillSz") not in (None, "", "0"):
                out.append(PushedFill(venue, str(row.get("clOrdId") or ""), str(row["tradeId"])))
    elif venue == "bybit" and msg.get("topic") == "execution":
        for row in msg.get("data") or []:
            out.append(PushedFill(venue, str(row.get("orderLinkId") or ""), str(row.get("execId") or "")))
    elif venue == "binance":
        if msg.get("e") == "TRADE_LITE":
            out.append(PushedFill(venue, str(msg.get("c") or ""), str(msg.get("t") or "")))
        elif msg.get("e") == "ORDER_TRADE_UPDATE" and (msg.get("o") or {}).get("x") == "TRADE":
            order = msg["o"]
            out.append(PushedFill(venue, str(order.get("c") or ""), str(order.get("t") or "")))
    return out


class PrivateRelay:
    """One loopback port per relayed venue, forwarding to the simulator's port of that venue."""

    def __init__(self, upstream_ports: dict[str, int], ports: dict[str, int]) -> None:
        self.upstream_ports = upstream_ports  # venue -> simulator port
        self.ports = ports  # venue -> relay port
        self._runners: list[web.AppRunner] = []
        self._http: aiohttp.ClientSession | None = None
        self._armed: asyncio.Future[PushedFill] | None = None
        self.relayed_fills = 0

    async def __aenter__(self) -> "PrivateRelay":
        self._http = aiohttp.ClientSession(trust_env=False)
        for venue, port in self.ports.items():
            app = web.Application()
            app.router.add_get("/{tail:.*}", self._handler(venue))
            runner = web.AppRunner(app, handle_signals=False)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            self._runners.append(runner)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.disarm()
        for runner in self._runners:
            await runner.cleanup()
        if self._http is not None:
            await self._http.close()

    def url(self, venue: str) -> str:
        return f"ws://127.0.0.1:{self.ports[venue]}"

    # -- the kill point's side -----------------------------------------------------------------------
    def arm(self) -> asyncio.Future[PushedFill]:
        """The next fill frame handed to the bot resolves the returned future (right after it was sent)."""
        self._armed = asyncio.get_running_loop().create_future()
        return self._armed

    def disarm(self) -> None:
        if self._armed is not None and not self._armed.done():
            self._armed.cancel()
        self._armed = None

    # -- forwarding ----------------------------------------------------------------------------------
    def _handler(self, venue: str):
        async def handle(request: web.Request) -> web.StreamResponse:
            assert self._http is not None
            bot = web.WebSocketResponse(autoping=True)
            await bot.prepare(request)
            url = f"ws://127.0.0.1:{self.upstream_ports[venue]}{request.path_qs}"
            try:
                sim = await self._http.ws_connect(url, autoping=True, heartbeat=None)
            except (aiohttp.ClientError, OSError) as exc:
                log.info("relay %s: upstream %s refused: %s", venue, url, exc)
                await bot.close()
                return bot
            up = asyncio.ensure_future(self._pump_up(bot, sim))
            try:
                await self._pump_down(venue, sim, bot)
            finally:
                up.cancel()
                with contextlib.suppress(BaseException):
                    await up
                await sim.close()
                await bot.close()
            return bot
        return handle

    async def _pump_up(self, bot: web.WebSocketResponse, sim: aiohttp.ClientWebSocketResponse) -> None:
        """bot -> simulator (logins, subscriptions, application-level pings)."""
        async for msg in bot:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await sim.send_str(msg.data)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await sim.send_bytes(msg.data)
            else:
                break
        await sim.close()

    async def _pump_down(self, venue: str, sim: aiohttp.ClientWebSocketResponse,
                         bot: web.WebSocketResponse) -> None:
        """simulator -> bot; a fill frame resolves the armed future once it is on the bot's socket."""
        async for msg in sim:
            if msg.type == aiohttp.WSMsgType.TEXT:
                fills = fills_in(venue, msg.data)
                try:
                    await bot.send_str(msg.data)
                except (ConnectionError, RuntimeError):
                    return  # the bot is gone (killed)
                if fills:
                    self.relayed_fills += len(fills)
                    armed = self._armed
                    if armed is not None and not armed.done():
                        armed.set_result(fills[0])
            elif msg.type == aiohttp.WSMsgType.BINARY:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await bot.send_bytes(msg.data)
            else:
                return
