"""Order send -> answer through the real CcxtClient against the simulator, with ccxt's own throttler on or off.

`python -m bench.ccxt_order_latency --venue binance --orders 20 [--throttler on|off] [--budget]` places that many
marketable IOC orders one after another (as a run of trades does) on an in-process simulator venue and
prints p50 / p99 / max of `CcxtClient.place_order` (the venue answer and, where the venue's answer lacks
fees, the trade lookup ccxt then makes). ccxt's `enableRateLimit` sleeps before a request whose cost its
token bucket has not refilled: the difference between `on` and `off` is what that throttler costs per order.
`--budget` counts every request in perpbot's own rate budget (perpbot.execution.rate_budget), as the bot does.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from aiohttp import web
from aiohttp.test_utils import TestServer

from perpbot.core.orders import OrderRequest
from perpbot.execution.ccxt_client import CcxtClient
from perpbot.execution.client_ids import client_order_id
from perpbot.execution.rate_budget import RateBudget
from perpbot.execution.rate_limits import venue_limits
from perpbot.risk.approved import _mint
from perpbot.settings import VenueSettings
from perpbot.sim.market import Market
from perpbot.sim.trading import add_trading_routes

NATIVE = {"okx": "BTC-USDT-SWAP", "binance": "BTCUSDT", "bybit": "BTCUSDT", "hyperliquid": "BTC"}


def _settings(venue: str) -> VenueSettings:
    if venue == "hyperliquid":
        return VenueSettings(wallet_address="0x7e5f4552091a69125d5dfcb7b8c2659029395bdf",
                             private_key="0x" + "0" * 63 + "1")
    return VenueSettings(api_key="sim-key", api_secret="sim-secret-value", passphrase="sim-pass")


async def measure(venue: str, orders: int, throttler: bool, budget: bool = False) -> list[float]:
    market = Market(seed=11)
    app = web.Application()
    add_trading_routes(app, venue, market, None, private=False)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    client = CcxtClient(venue, _settings(venue), f"http://127.0.0.1:{server.port}", timeout_s=5.0)
    client.exchange.enableRateLimit = throttler
    if budget:
        client.rate_budget = RateBudget({venue: venue_limits()[venue]})
    native = NATIVE[venue]
    await client.load_instruments([native])
    instrument = client.instruments[native]
    timings = []
    try:
        for i in range(orders):
            _, asks = market.levels(venue, native)
            price = asks[0][0]
            lots = int(instrument.min_notional * 2 / (price * instrument.contract_size) / instrument.lot_size) + 3
            side = "buy" if i % 2 == 0 else "sell"
            if side == "sell":
                bids, _ = market.levels(venue, native)
                price = bids[0][0]
            request = OrderRequest(venue, native, side, instrument.lot_size * lots, price,
                                   client_order_id(venue, f"bench{i:04d}", "a", 0))
            started = time.perf_counter()
            await client.place_order(_mint(request, "bench", f"bench-{i}"))
            timings.append(time.perf_counter() - started)
    finally:
        await client.close()
        await server.close()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venue", default="binance", choices=sorted(NATIVE))
    parser.add_argument("--orders", type=int, default=20)
    parser.add_argument("--throttler", choices=("on", "off"), default="off")
    parser.add_argument("--budget", action="store_true", help="count requests in perpbot's rate budget")
    args = parser.parse_args()
    timings = asyncio.run(measure(args.venue, args.orders, args.throttler == "on", args.budget))
    ms = sorted(t * 1000 for t in timings)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    print(f"{args.venue} throttler {args.throttler}{' + rate budget' if args.budget else ''}: {len(ms)} orders, place_order p50 {statistics.median(ms):.1f} ms"
          f" p99 {p99:.1f} ms max {ms[-1]:.1f} ms")


if __name__ == "__main__":
    main()
