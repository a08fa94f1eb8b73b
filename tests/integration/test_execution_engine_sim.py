"""The engine with real CcxtClients trading the simulator's OKX and Bybit REST venues on loopback:
a hedged entry, and a lost response on one leg resolved by query with no duplicate order."""

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
from perpbot.journal.sqlite import Journal
from perpbot.portfolio import Portfolio
from perpbot.risk.gate import RiskGate
from perpbot.settings import Settings, VenueSettings
from perpbot.sim.faults import Fault, FaultBoard
from perpbot.sim.market import Market
from perpbot.sim.trading import add_trading_routes
from perpbot.telemetry.metrics import Metrics

NOW_S = 1_700_000_000.0
SYMBOLS = {"okx": "BTC-USDT-SWAP", "bybit": "BTCUSDT"}


@pytest.fixture
async def world(tmp_path):
    market = Market(seed=11, clock=lambda: NOW_S)
    faults = FaultBoard()
    servers, sims, clients = [], {}, {}
    for venue, symbol in SYMBOLS.items():
        app = web.Application()
        sims[venue] = add_trading_routes(app, venue, market, faults, lambda: NOW_S)
        server = TestServer(app, host="127.0.0.1", port=0)
        await server.start_server()
        servers.append(server)
        client = CcxtClient(venue, VenueSettings(api_key="sim-key", api_secret="sim-secret", passphrase="sim-pass"),
                            f"http://127.0.0.1:{server.port}", timeout_s=3.0)
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
    engine = Engine(settings, clients, RiskGate(settings.risk, settings.execution, metrics), store, instruments,
                    {}, journal, Portfolio(), metrics)
    try:
        yield engine, sims, faults, market
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


async def test_engine_hedges_an_entry_across_simulated_okx_and_bybit(world):
    engine, sims, _, market = world
    await engine.start()
    assert engine.trading_state()["state"] == "ACTIVE"
    [report] = await engine.on_decisions([decision(market)])
    assert report["outcome"] == "hedged"
    assert D(sims["okx"].snapshot()["positions"][SYMBOLS["okx"]]["size"]) == D("0.01")  # base units
    assert D(sims["bybit"].snapshot()["positions"][SYMBOLS["bybit"]]["size"]) == D("-0.01")
    assert (await engine.sync_positions())["changed"] == []  # the local view equals the venues'


async def test_engine_resolves_a_lost_bybit_answer_by_query_without_a_second_order(world):
    engine, sims, faults, market = world
    await engine.start()
    faults.add(Fault("lost_response", "bybit"))
    [report] = await engine.on_decisions([decision(market)])
    assert report["outcome"] == "hedged"
    fills = sims["bybit"].snapshot()["fills"]
    assert len({f["order_id"] for f in fills}) == 1
    assert D(sims["bybit"].snapshot()["positions"][SYMBOLS["bybit"]]["size"]) == D("-0.01")
    assert engine.portfolio.positions[("bybit", SYMBOLS["bybit"])].size == D("-0.01")
    assert (await engine.sync_positions())["changed"] == []
