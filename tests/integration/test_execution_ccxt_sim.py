"""The real CcxtClient (real ccxt classes, our URLs and options) against the simulator's REST venues on
loopback: place / fetch / cancel / positions / balance, and the faults reject, insufficient margin,
partial fill and lost response (resolved by query, no duplicate order)."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from perpbot.core import errors
from perpbot.core.orders import OrderRequest
from perpbot.execution.ccxt_client import CcxtClient
from perpbot.execution.client_ids import client_order_id
from perpbot.sim.faults import Fault, FaultBoard
from perpbot.sim.market import Market
from perpbot.sim.trading import add_trading_routes
from testkit import approved, sim_venue_settings

VENUES = ["okx", "binance", "bybit", "hyperliquid"]
NATIVE = {"okx": "BTC-USDT-SWAP", "binance": "BTCUSDT", "bybit": "BTCUSDT", "hyperliquid": "BTC"}
NOW_S = 1_700_000_000.0


venue_settings = sim_venue_settings


@pytest.fixture(params=VENUES)
async def venue(request):
    name = request.param
    market = Market(seed=11, clock=lambda: NOW_S)
    faults = FaultBoard()
    app = web.Application()
    sim = add_trading_routes(app, name, market, faults, lambda: NOW_S)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    client = CcxtClient(name, venue_settings(name), f"http://127.0.0.1:{server.port}", timeout_s=3.0)
    await client.load_instruments([NATIVE[name]])
    try:
        yield name, client, sim, market, faults
    finally:
        await client.close()
        await server.close()


def marketable_buy(name, client, market, intent, lots=3):
    native = NATIVE[name]
    instrument = client.instruments[native]
    _, asks = market.levels(name, native)
    # Enough lots to clear the venue's minimum order value (Hyperliquid: $10), within the best level.
    price = asks[0][0]
    floor_lots = (instrument.min_notional * 2 / (price * instrument.contract_size) / instrument.lot_size)
    qty = instrument.lot_size * max(lots, int(floor_lots) + lots)
    qty = min(asks[0][1], qty)
    return OrderRequest(name, native, "buy", qty, asks[0][0], client_order_id(name, intent, "a", 0))


async def test_ccxt_client_loads_the_venue_instrument_exactly(venue):
    name, client, _, market, _ = venue
    sim_instrument = market.instrument(name, NATIVE[name])
    instrument = client.instruments[NATIVE[name]]
    assert instrument.contract_size == sim_instrument.contract_size
    assert instrument.lot_size == sim_instrument.lot
    assert instrument.tick_size == sim_instrument.tick


async def test_ccxt_client_places_fetches_and_reports_position_and_balance(venue):
    name, client, sim, market, _ = venue
    request = marketable_buy(name, client, market, "c0ffee01")
    result = await client.place_order(approved(request))
    assert result.status == "filled" and result.filled_qty == request.qty
    again = await client.fetch_order(request.symbol, request.client_order_id)
    assert again.filled_qty == request.qty and again.client_order_id == request.client_order_id
    [position] = await client.fetch_positions()
    assert position.symbol == request.symbol
    assert position.size == request.qty * client.instruments[request.symbol].contract_size
    balance = await client.fetch_balance()
    assert balance.equity > 0 and balance.used_margin >= 0
    assert await client.fetch_open_orders() == []


async def test_ccxt_client_unknown_client_id_is_none_for_fetch_and_cancel(venue):
    name, client, _, _, _ = venue
    cid = client_order_id(name, "deadbeef", "a", 0)
    assert await client.fetch_order(NATIVE[name], cid) is None
    assert await client.cancel_order(NATIVE[name], cid) is None


async def test_ccxt_client_venue_reject_is_order_rejected_and_logged(venue, caplog):
    name, client, _, market, faults = venue
    faults.add(Fault("reject", name))
    with caplog.at_level(logging.WARNING):
        with pytest.raises(errors.OrderRejected):
            await client.place_order(approved(marketable_buy(name, client, market, "c0ffee02")))
    assert any("Order rejected" in r.getMessage() for r in caplog.records)
    assert not any("sim-secret-value" in r.getMessage() for r in caplog.records)


async def test_ccxt_client_insufficient_margin_is_insufficient_funds(venue):
    name, client, _, market, faults = venue
    faults.add(Fault("insufficient_margin", name))
    with pytest.raises(errors.InsufficientFunds):
        await client.place_order(approved(marketable_buy(name, client, market, "c0ffee03")))


async def test_ccxt_client_partial_fill_reports_the_filled_part(venue):
    name, client, _, market, faults = venue
    faults.add(Fault("partial_fill", name, params={"ratio": "0.5"}))
    request = marketable_buy(name, client, market, "c0ffee04", lots=4)
    result = await client.place_order(approved(request))
    assert result.status == "partially_filled"
    assert 0 < result.filled_qty < request.qty


async def test_ccxt_client_lost_response_is_unknown_and_found_by_query_once(venue):
    name, client, sim, market, faults = venue
    faults.add(Fault("lost_response", name))
    request = marketable_buy(name, client, market, "c0ffee05")
    with pytest.raises(errors.UnknownOutcome):
        await client.place_order(approved(request))
    found = await client.fetch_order(request.symbol, request.client_order_id)
    assert found is not None and found.filled_qty == request.qty
    assert faults.fired[(name, "lost_response")] == 1
    fills = [f for f in sim.snapshot()["fills"] if f["client_id"] == request.client_order_id]
    assert len({f["order_id"] for f in fills}) == 1  # one order at the venue, never a second
    assert sum(Decimal(f["qty"]) for f in fills) == request.qty


async def test_ccxt_client_sends_nothing_the_user_did_not_choose(venue):
    """No broker, builder or referrer attribution on the wire: our client id as sent, no ccxt broker
    tag, no Referer: CCXT (Bybit), no builder on orders and no approveBuilderFee/setReferrer action
    (Hyperliquid). Recorded at ccxt's HTTP call, as the requests leave for the venue."""
    name, client, _, market, _ = venue
    wire = []
    send = client.exchange.fetch

    async def recording_fetch(url, method="GET", headers=None, body=None):
        wire.append((method, url, dict(headers or {}), body or ""))
        return await send(url, method, headers, body)

    client.exchange.fetch = recording_fetch
    request = marketable_buy(name, client, market, "c0ffee06")
    await client.place_order(approved(request))
    await client.fetch_order(request.symbol, request.client_order_id)
    sent = " ".join(f"{url} {body}" for _, url, _, body in wire)
    assert request.client_order_id in sent
    for marker in ("CCXT", "x-cvBPrNm9", "x-xcKtGhcu", "6b9ad766b55dBCDE", "builder", "approveBuilderFee",
                   "setReferrer", "tag="):
        assert marker not in sent, marker
    assert '"tag"' not in sent
    assert not any("Referer" in headers for _, _, headers, _ in wire)
    assert any(method == "POST" for method, _, _, _ in wire)


async def test_ccxt_client_refuses_an_order_the_risk_gate_did_not_approve(venue):
    """The venue port takes only an ApprovedOrder: a bare request is refused before anything is sent."""
    name, client, sim, market, _ = venue
    request = marketable_buy(name, client, market, "c0ffee07")
    with pytest.raises(TypeError, match="ApprovedOrder"):
        await client.place_order(request)
    assert all(o.client_id != request.client_order_id for o in sim.account.orders.values())
