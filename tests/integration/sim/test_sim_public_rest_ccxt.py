"""The simulator's REST order books and funding-rate history as ccxt reads them (fetchOrderBook,
fetchFundingRateHistory), on OKX, Binance USD-M and Bybit: the books equal the simulated market's, the
history's settlement times are the venue's funding times up to now, and a settlement that passes is added."""

from __future__ import annotations

from decimal import Decimal

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from perpbot.sim.faults import FaultBoard
from perpbot.sim.market import Market
from perpbot.sim.trading import add_trading_routes
from perpbot.sim.trading.clients import make_ccxt_client

VENUES = ["okx", "binance", "bybit"]
NATIVE = {"okx": "BTC-USDT-SWAP", "binance": "BTCUSDT", "bybit": "BTCUSDT"}
SYMBOL = "BTC/USDT:USDT"
HOUR_MS = 3_600_000


class Clock:
    """A clock the test moves by hand (seconds)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=VENUES)
async def venue(request: pytest.FixtureRequest):
    clock = Clock(1_700_000_000.0)
    market = Market(seed=3, clock=clock)
    app = web.Application()
    add_trading_routes(app, request.param, market, FaultBoard(), clock)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    client = make_ccxt_client(request.param, f"http://127.0.0.1:{server.port}", timeout=3000)
    try:
        await client.load_markets()
        yield request.param, client, market, clock
    finally:
        await client.close()
        await server.close()


@pytest.mark.parametrize("venue", ["okx", "bybit"], indirect=True)
async def test_rest_order_book_is_the_simulated_book(venue) -> None:
    """OKX and Bybit (Binance's /fapi/v1/depth comes with its public feed: test_sim_market_feeds)."""
    name, client, market, _clock = venue
    book = await client.fetch_order_book(SYMBOL, 5)
    bids, asks = market.levels(name, NATIVE[name])  # venue units: OKX contracts, as ccxt shows them
    assert [(Decimal(str(level[0])), Decimal(str(level[1]))) for level in book["bids"]] == bids[:5]
    assert [(Decimal(str(level[0])), Decimal(str(level[1]))) for level in book["asks"]] == asks[:5]


async def test_funding_rate_history_ends_at_the_latest_settlement_and_grows_when_one_passes(venue) -> None:
    name, client, market, clock = venue
    rate, interval_h, next_ms = market.funding(name, NATIVE[name])
    history = await client.fetch_funding_rate_history(SYMBOL, None, 4)
    times = [row["timestamp"] for row in history]
    assert times == sorted(times) and times[-1] == next_ms - interval_h * HOUR_MS
    assert all(b - a == interval_h * HOUR_MS for a, b in zip(times, times[1:]))
    assert all(Decimal(str(row["fundingRate"])) == rate for row in history)

    clock.now = next_ms / 1000 + 1  # the next settlement passes
    later = await client.fetch_funding_rate_history(SYMBOL, None, 4)
    assert later[-1]["timestamp"] == next_ms and later[-2]["timestamp"] == times[-1]
