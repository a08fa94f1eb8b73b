"""A running simulator with one venue's order socket and REST client, routed as the bot routes them:
the real OrderSocket (perpbot.feeds.order_socket) over the venue's OrderLink, the real ccxt client for
REST, RoutedClient in front. Shared by the per-venue WebSocket order-entry scenarios."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aiohttp

from perpbot.core.orders import OrderRequest
from perpbot.core.ports import OrderLink
from perpbot.execution.ccxt_client import CcxtClient
from perpbot.execution.order_routing import RoutedClient
from perpbot.feeds.order_socket import OrderSocket
from perpbot.settings import FeedSettings, Settings
from perpbot.sim.server import Simulator

from testkit import sim_venue_settings, wait_until

VENUES = ("okx", "binance", "bybit", "hyperliquid")
NATIVE = {"okx": "BTC-USDT-SWAP", "binance": "BTCUSDT", "bybit": "BTCUSDT", "hyperliquid": "BTC"}


sim_credentials = sim_venue_settings  # the simulator's account (perpbot.sim.private.common)


@dataclass
class OrderRig:
    venue: str
    sim: Simulator
    rest: CcxtClient
    socket: OrderSocket
    client: RoutedClient
    http: aiohttp.ClientSession

    @property
    def exchange(self) -> Any:
        return self.sim.exchanges[self.venue]

    def url(self, path: str, scheme: str = "ws") -> str:
        return f"{scheme}://127.0.0.1:{self.sim.ports[self.venue]}{path}"

    async def fault(self, kind: str, **params: Any) -> None:
        body = {"kind": kind, "venue": self.venue, "params": params}
        async with self.http.post(f"http://127.0.0.1:{self.sim.admin_port}/admin/faults", json=body) as resp:
            assert resp.status == 201, await resp.text()

    def ioc(self, cid: str, side: str = "buy", *, through: int = 1, reduce_only: bool = False,
            tif: str = "IOC", away: bool = False) -> OrderRequest:
        """The smallest order the venue takes, priced through the book's first `through` levels
        (or far away from it with `away`, so it rests or expires untouched)."""
        symbol = NATIVE[self.venue]
        inst = self.sim.market.instrument(self.venue, symbol)
        bids, asks = self.sim.market.levels(self.venue, symbol)
        book = asks if side == "buy" else bids
        price = book[through - 1][0]
        if away:
            price = (bids[0][0] * Decimal("0.9")) if side == "buy" else (asks[0][0] * Decimal("1.1"))
            price = (price / inst.tick).to_integral_value() * inst.tick
        least = max(inst.lot, inst.min_qty, inst.min_notional * Decimal("1.5") / (price * inst.contract_size))
        qty = (least / inst.lot).to_integral_value(rounding="ROUND_CEILING") * inst.lot
        return OrderRequest(venue=self.venue, symbol=symbol, side=side, qty=qty, price=price,  # type: ignore[arg-type]
                            client_order_id=cid, reduce_only=reduce_only, time_in_force=tif)  # type: ignore[arg-type]

    def endpoint(self, key: Any) -> Any:
        """The simulator's order-entry endpoint object of this venue, stored under `key` on its app (it keeps
        the requests it read)."""
        from perpbot.sim.trading import APP_KEY

        for runner in self.sim._runners:  # noqa: SLF001 - the test reads what arrived at the venue
            if runner.app.get(APP_KEY) is self.exchange:
                return runner.app[key]
        raise AssertionError(f"no order entry endpoint on the {self.venue} app")

    def orders_with(self, cid: str) -> list[Any]:
        return [o for o in self.exchange.account.orders.values() if o.client_id == cid]


@asynccontextmanager
async def order_rig(venue: str, link_factory: Callable[[Simulator], OrderLink], *,
                    start_socket: bool = True) -> AsyncIterator[OrderRig]:
    settings = Settings(sim={"ports": {v: 0 for v in VENUES}, "admin_port": 0, "tick_interval_s": 0.02, "seed": 5})
    async with Simulator(settings, autotick=False) as sim, aiohttp.ClientSession() as http:
        rest = CcxtClient(venue, sim_credentials(venue), f"http://127.0.0.1:{sim.ports[venue]}", timeout_s=3.0)
        await rest.load_instruments([NATIVE[venue]])
        feed = FeedSettings(backoff_initial_s=0.05, backoff_max_s=0.2, watchdog_s=10.0)
        socket = OrderSocket(link_factory(sim), feed)
        client = RoutedClient(rest, socket)
        task = asyncio.get_running_loop().create_task(socket.run()) if start_socket else None
        try:
            if task is not None:
                await wait_until(socket.ready, timeout=10)
            yield OrderRig(venue, sim, rest, socket, client, http)
        finally:
            await socket.stop()
            if task is not None:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
            await rest.close()
