"""The rate budget with the real CcxtClient against the simulator's venues on loopback: every request is
counted, the venues' usage headers (Binance, Bybit) replace the estimate, and a 429 / 418 with Retry-After
stops that venue's orders at the risk gate (refused with the reason, never sent) for that long while
reads wait it out; ccxt's own throttler is off."""

from __future__ import annotations


import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from perpbot.core import errors
from perpbot.core.orders import OrderRequest
from perpbot.execution.ccxt_client import CcxtClient
from perpbot.execution.client_ids import client_order_id
from perpbot.execution.rate_budget import ORDER, RateBudget
from perpbot.execution.rate_limits import venue_limits
from perpbot.sim.faults import Fault, FaultBoard
from perpbot.sim.market import Market
from perpbot.sim.trading import add_trading_routes
from perpbot.sim.trading.gate import RETRY_AFTER_IGNORED
from testkit import approved, sim_venue_settings

VENUES = ["okx", "binance", "bybit", "hyperliquid"]
NATIVE = {"okx": "BTC-USDT-SWAP", "binance": "BTCUSDT", "bybit": "BTCUSDT", "hyperliquid": "BTC"}


venue_settings = sim_venue_settings


async def start(name: str):
    market = Market(seed=11)
    faults = FaultBoard()
    app = web.Application()
    add_trading_routes(app, name, market, faults, private=False)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    client = CcxtClient(name, venue_settings(name), f"http://127.0.0.1:{server.port}", timeout_s=3.0)
    budget = RateBudget({name: venue_limits()[name]})
    client.rate_budget = budget
    await client.load_instruments([NATIVE[name]])
    return server, client, budget, market, faults


@pytest.fixture(params=VENUES)
async def venue(request):
    server, client, budget, market, faults = await start(request.param)
    try:
        yield request.param, client, budget, market, faults
    finally:
        await client.close()
        await server.close()


def marketable_buy(name: str, client: CcxtClient, market: Market, intent: str) -> OrderRequest:
    native = NATIVE[name]
    instrument = client.instruments[native]
    _, asks = market.levels(name, native)
    price = asks[0][0]
    lots = int(instrument.min_notional * 2 / (price * instrument.contract_size) / instrument.lot_size) + 3
    return OrderRequest(name, native, "buy", instrument.lot_size * lots, price, client_order_id(name, intent, "a", 0))


def window(budget: RateBudget, venue: str, name: str) -> tuple[int, int]:
    found = budget.snapshot().venue(venue)
    assert found is not None
    usage = next(w for w in found.windows if w.name == name)
    return usage.used, usage.limit


async def test_ccxt_throttler_is_off(venue):
    _, client, *_ = venue
    assert client.exchange.enableRateLimit is False


@pytest.mark.parametrize("venue", ["binance"], indirect=True)
async def test_binance_usage_headers_are_taken_over(venue):
    name, client, budget, market, _ = venue
    await client.place_order(approved(marketable_buy(name, client, market, "b0000001")))
    # The order counted in the order windows, as the venue's headers say; the reads in the IP weight.
    assert window(budget, name, "orders_10s")[0] == 1
    assert window(budget, name, "orders_1m")[0] == 1
    assert window(budget, name, "weight_1m")[0] >= 1


@pytest.mark.parametrize("venue", ["bybit"], indirect=True)
async def test_bybit_per_endpoint_headers_set_the_order_allowance(venue):
    name, client, budget, market, _ = venue
    await client.place_order(approved(marketable_buy(name, client, market, "b0000002")))
    assert window(budget, name, "order_1s") == (1, 10)


async def test_every_request_is_counted(venue):
    name, client, budget, market, _ = venue
    before = budget.snapshot().venue(name)
    await client.fetch_positions()
    after = budget.snapshot().venue(name)
    assert before is not None and after is not None
    assert sum(w.used for w in after.windows) > sum(w.used for w in before.windows)


@pytest.mark.parametrize("kind, status", [("rate_limit", 429), ("ip_ban", 418)])
async def test_a_stop_answer_stops_the_venue_orders_for_its_retry_after(venue, kind, status):
    name, client, budget, market, faults = venue
    faults.add(Fault(kind, name, params={"on": "order", "retry_after_s": 30}))
    with pytest.raises(errors.RateLimited):
        await client.place_order(approved(marketable_buy(name, client, market, "c0000001")))
    blocked = budget.blocked_for(name)
    assert 25 < blocked <= 30
    refusal = budget.try_order(name)
    assert refusal is not None and refusal.rule == "rate_limited" and f"HTTP {status}" in refusal.detail
    assert budget.snapshot().venue(name).stop_responses == {status: 1}  # type: ignore[union-attr]
    client.max_read_wait_s = 0.0
    if name == "hyperliquid":
        # Its limits on actions are the address's, not the IP's: reads go on meanwhile.
        assert await client.fetch_positions() is not None
    else:
        # A read is deferred (here: nothing to wait for, it fails at once).
        with pytest.raises(errors.RateLimited, match="deferred by the rate budget"):
            await client.fetch_positions()
    assert faults.fired[(name, RETRY_AFTER_IGNORED)] == 0


async def test_the_simulator_counts_an_order_sent_inside_its_retry_after():
    """The simulator's side of the check above: a client that ignores Retry-After is seen."""
    server, client, budget, market, faults = await start("okx")
    try:
        client.rate_budget = None  # a client without a budget sends anyway
        faults.add(Fault("rate_limit", "okx", params={"on": "order", "retry_after_s": 30}))
        for intent in ("d0000001", "d0000002"):
            with pytest.raises(errors.RateLimited):
                await client.place_order(approved(marketable_buy("okx", client, market, intent)))
        assert faults.fired[("okx", RETRY_AFTER_IGNORED)] == 1
    finally:
        await client.close()
        await server.close()


async def test_an_order_charges_the_budget_and_is_never_held_back(venue):
    name, client, budget, market, _ = venue
    limits = venue_limits()[name]
    order_windows = [w for w, cost in next(e for e in limits.endpoints if e.name == ORDER).costs if cost]
    # Fill every order window to its limit: the client still sends (the gate decides, not the client).
    for window_name in order_windows:
        used, limit = window(budget, name, window_name)
        for _ in range(limit - used):
            budget.charge(name, ORDER)
    assert budget.try_order(name) is not None
    client.stream_confirms = lambda: True  # the answer alone: no follow-up read (those would wait)
    request = marketable_buy(name, client, market, "e0000001")
    result = await client.place_order(approved(request))
    assert result.status != "rejected" and result.client_order_id == request.client_order_id
    assert result.venue_order_id  # the venue took it
