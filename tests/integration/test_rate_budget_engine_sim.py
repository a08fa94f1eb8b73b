"""The engine, the risk gate and the real CcxtClients sharing one rate budget against the simulator's OKX
and Bybit: Bybit answers an entry's leg 429 with Retry-After; the hedge there is refused by the gate (not
sent, not delayed), the filled OKX leg is unwound, and the next entry is refused with the reason while the
Retry-After runs. The simulator sees no order inside it."""

from __future__ import annotations

import time
from decimal import Decimal as D

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from perpbot.book.store import BookStore
from perpbot.core.decisions import Decision, Leg
from perpbot.execution.ccxt_client import CcxtClient
from perpbot.execution.engine import Engine
from perpbot.execution.rate_budget import RateBudget
from perpbot.execution.rate_limits import venue_limits
from perpbot.journal.sqlite import Journal
from perpbot.portfolio import Portfolio
from perpbot.risk.gate import RiskGate
from perpbot.settings import Settings, VenueSettings
from perpbot.sim.faults import RETRY_AFTER_IGNORED, Fault, FaultBoard
from perpbot.sim.market import Market
from perpbot.sim.trading import add_trading_routes
from perpbot.telemetry.metrics import Metrics

SYMBOLS = {"okx": "BTC-USDT-SWAP", "bybit": "BTCUSDT"}


@pytest.fixture
async def world(tmp_path):
    market = Market(seed=11)
    faults = FaultBoard()
    budget = RateBudget({venue: venue_limits()[venue] for venue in SYMBOLS})
    servers, sims, clients = [], {}, {}
    for venue, symbol in SYMBOLS.items():
        app = web.Application()
        sims[venue] = add_trading_routes(app, venue, market, faults, private=False)
        server = TestServer(app, host="127.0.0.1", port=0)
        await server.start_server()
        servers.append(server)
        client = CcxtClient(venue, VenueSettings(api_key="sim-key", api_secret="sim-secret", passphrase="sim-pass"),
                            f"http://127.0.0.1:{server.port}", timeout_s=3.0)
        client.rate_budget = budget
        await client.load_instruments([symbol])
        clients[venue] = client
    store = BookStore(stale_after_s=60)
    instruments = {}
    for venue, symbol in SYMBOLS.items():
        instrument = clients[venue].instruments[symbol]
        instruments[instrument.key] = instrument
        book = store.add(venue, symbol, instrument.contract_size)
        bids, asks = market.levels(venue, symbol)
        book.replace([[str(p), str(q)] for p, q in bids], [[str(p), str(q)] for p, q in asks])
        book.valid, book.invalid_reason, book.recv_ts = True, None, time.time()
    settings = Settings()
    settings.execution.order_timeout_s = 3.0
    metrics = Metrics()
    journal = Journal(tmp_path / "journal.sqlite")
    await journal.open()
    engine = Engine(settings, clients, RiskGate(settings.risk, settings.execution, metrics, budget), store,
                    instruments, {}, journal, Portfolio(), metrics)
    try:
        yield engine, sims, faults, market, metrics
    finally:
        await journal.close()
        for client in clients.values():
            await client.close()
        for server in servers:
            await server.close()


def decision(market) -> Decision:
    _, okx_asks = market.levels("okx", SYMBOLS["okx"])
    bybit_bids, _ = market.levels("bybit", SYMBOLS["bybit"])
    return Decision("price_spread", "open", "BTC", (
        Leg("okx", SYMBOLS["okx"], "buy", D("0.01"), okx_asks[0][0]),
        Leg("bybit", SYMBOLS["bybit"], "sell", D("0.01"), bybit_bids[0][0]),
    ), edge_bps=D("20"), edge_usdt=D("1"), reason="sim test")


def refusals(metrics: Metrics, rule: str) -> float:
    return metrics.risk_refusals_total.labels(rule)._value.get()


async def test_a_429_on_one_leg_stops_that_venue_at_the_gate_and_the_other_leg_is_unwound(world):
    engine, sims, faults, market, metrics = world
    await engine.start()
    faults.add(Fault("rate_limit", "bybit", params={"on": "order", "retry_after_s": 30}))
    [report] = await engine.on_decisions([decision(market)])
    assert report["outcome"] == "unwound", report
    assert refusals(metrics, "rate_limited") >= 1  # the hedge on bybit, refused instead of sent
    # Nothing left open: bybit never filled, the okx leg was unwound on okx.
    assert SYMBOLS["bybit"] not in sims["bybit"].snapshot()["positions"] or \
        D(sims["bybit"].snapshot()["positions"][SYMBOLS["bybit"]]["size"]) == 0
    okx = sims["okx"].snapshot()["positions"].get(SYMBOLS["okx"])
    assert okx is None or D(okx["size"]) == 0
    # The next entry is refused with the reason; no order reaches bybit inside its Retry-After.
    before = refusals(metrics, "rate_limited")
    fills_before = len(sims["okx"].snapshot()["fills"])
    reports = await engine.on_decisions([decision(market)])
    assert refusals(metrics, "rate_limited") == before + 1
    [refused] = reports
    assert refused["outcome"] == "refused"
    assert refused["reason"].startswith("rate_limited: bybit: venue answered HTTP 429 (Retry-After 30s)")
    assert len(sims["okx"].snapshot()["fills"]) == fills_before  # no leg sent anywhere
    assert faults.fired[("bybit", RETRY_AFTER_IGNORED)] == 0
    assert faults.fired[("bybit", "rate_limit")] == 1
