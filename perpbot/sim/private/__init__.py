"""Private (account) WebSocket streams of the simulated venues, fed by SimExchange's event hook.

`mount_private(app, venue, sim, ...)` adds the venue's private endpoint to its aiohttp app:
OKX /ws/v5/private, Bybit /v5/private (and its order entry /v5/trade), Binance REST /fapi/v1/listenKey +
/ws/<listenKey> and /private/ws/<listenKey> (and the WebSocket API /ws-fapi/v1 for orders), Hyperliquid
user subscriptions on the public /ws (needs the public feed).
It also installs the rest_lag view on the SimExchange. Faults: see perpbot.sim.private.common.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from perpbot.sim.private.common import PrivateStream
from perpbot.sim.private.lag import RestLag
from perpbot.sim.trading.exchange import SimExchange
from perpbot.sim.ws_common import SimStats

PRIVATE_KEY: web.AppKey[PrivateStream] = web.AppKey("perpbot_sim_private", PrivateStream)
# The venue's order-entry WebSocket endpoint where it is its own module (Bybit /v5/trade, Binance /ws-fapi/v1).
ORDER_ENTRY_KEY: web.AppKey[Any] = web.AppKey("perpbot_sim_order_entry", object)


def mount_private(app: web.Application, venue: str, sim: SimExchange, stats: SimStats | None = None,
                  feed: Any = None) -> PrivateStream | None:
    """Mount `venue`'s private stream on `app` (before the public feed's routes); None when not served."""
    sim.query_view = RestLag(sim)
    stats = stats if stats is not None else SimStats()
    stream: PrivateStream | None = None
    if venue == "okx":
        from perpbot.sim.private.okx import mount_okx_private
        stream = mount_okx_private(app, sim, stats)
    elif venue == "bybit":
        from perpbot.sim.private.bybit import mount_bybit_private
        from perpbot.sim.private.bybit_orders import mount_bybit_orders
        stream = mount_bybit_private(app, sim, stats)
        app[ORDER_ENTRY_KEY] = mount_bybit_orders(app, sim, stats)
    elif venue == "binance":
        from perpbot.sim.private.binance import mount_binance_private
        from perpbot.sim.private.binance_orders import mount_binance_orders
        stream = mount_binance_private(app, sim, stats)
        app[ORDER_ENTRY_KEY] = mount_binance_orders(app, sim, stats)
    elif venue == "hyperliquid" and feed is not None:
        from perpbot.sim.private.hyperliquid import mount_hyperliquid_private
        from perpbot.sim.trading.hyperliquid import API_KEY
        stream = mount_hyperliquid_private(sim, app[API_KEY], feed)
    if stream is not None:
        app[PRIVATE_KEY] = stream
    return stream


__all__ = ["ORDER_ENTRY_KEY", "PRIVATE_KEY", "PrivateStream", "RestLag", "mount_private"]
