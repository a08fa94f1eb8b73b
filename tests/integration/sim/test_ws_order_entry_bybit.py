"""Bybit order entry over its WebSocket trade endpoint (/v5/trade) against the running simulator, as the bot
routes it (OrderSocket + RoutedClient, the real ccxt client behind for REST): an IOC that fills (its fill
read off the private stream by the bot's own parser), the venue's refusals with their retCodes, cancels, a
dropped socket and a lost answer (unknown, found by query, never sent twice), the rate limit with the wait
its header names, maintenance, a refused login, and the REST fallback with the same client order id."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from perpbot.core import errors
from perpbot.core.private_events import VenueFill
from perpbot.settings import VenueSettings
from perpbot.sim.private import ORDER_ENTRY_KEY
from perpbot.venues.bybit.order_link import BybitOrderLink, order_args
from perpbot.venues.bybit.private_link import BybitPrivateLink

from testkit import approved, wait_until
import ws_order_scenarios as scenarios
from ws_order_rig import order_rig, sim_credentials

VENUE = "bybit"


def bybit_link(sim, cfg: VenueSettings | None = None) -> BybitOrderLink:
    return BybitOrderLink(f"ws://127.0.0.1:{sim.ports[VENUE]}/v5/trade", cfg or sim_credentials(VENUE))


def venue_endpoint(rig) -> Any:
    return rig.endpoint(ORDER_ENTRY_KEY)


class PrivateStream:
    """The venue's private stream, logged in and subscribed with the bot's link, read by the bot's parser."""

    def __init__(self, ws: ClientConnection, link: BybitPrivateLink) -> None:
        self.ws = ws
        self.link = link

    async def answer(self, op: str) -> dict[str, Any]:
        while True:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), 5))
            if message.get("op") == op:
                return message

    async def fills_of(self, client_order_id: str, qty: Decimal) -> list[VenueFill]:
        fills: list[VenueFill] = []
        while sum((f.qty for f in fills), Decimal(0)) < qty:
            frame = await asyncio.wait_for(self.ws.recv(), 5)
            fills += [e for e in self.link.parse(frame, time.time())
                      if isinstance(e, VenueFill) and e.client_order_id == client_order_id]
        return fills


@asynccontextmanager
async def private_stream(rig) -> AsyncIterator[PrivateStream]:
    link = BybitPrivateLink(rig.url("/v5/private"), sim_credentials(VENUE), {"BTCUSDT": Decimal(1)})
    async with connect(link._url) as ws:  # noqa: SLF001 - the link's fixed URL
        stream = PrivateStream(ws, link)
        for frame in link.login_frames():
            await ws.send(frame)
        assert (await stream.answer("auth"))["success"] is True
        for frame in link.subscribe_frames():
            await ws.send(frame)
        assert (await stream.answer("subscribe"))["success"] is True
        yield stream


async def test_an_ioc_that_crosses_is_acknowledged_over_the_socket_and_its_fills_are_pushed():
    async with order_rig(VENUE, bybit_link) as rig, private_stream(rig) as stream:
        request = rig.ioc("bb-fill")
        result = await rig.client.place_order(approved(request))
        assert result.status == "open" and result.venue_order_id and not result.details_complete
        assert rig.client.ws_orders == 1 and rig.client.rest_orders == 0
        (order,) = rig.orders_with("bb-fill")
        assert order.status == "filled" and order.filled == request.qty and order.order_id == result.venue_order_id
        fills = await stream.fills_of("bb-fill", request.qty)
        assert sum(f.qty for f in fills) == request.qty and all(f.fee > 0 for f in fills)
        assert {f.venue_order_id for f in fills} == {result.venue_order_id}
        queried = await rig.rest.fetch_order(request.symbol, "bb-fill")
        assert queried is not None and queried.filled_qty == request.qty


async def test_what_reaches_the_venue_is_the_order_alone_with_no_broker_referer():
    async with order_rig(VENUE, bybit_link) as rig:
        request = rig.ioc("bb-wire")
        await rig.client.place_order(approved(request))
        (sent,) = [r for r in venue_endpoint(rig).requests if r.get("op") == "order.create"]
        assert sent["args"] == [order_args(request)]
        assert set(sent["header"]) == {"X-BAPI-TIMESTAMP", "X-BAPI-RECV-WINDOW"}  # no Referer
        assert set(sent) == {"reqId", "header", "op", "args"}


async def test_reduce_only_with_no_position_is_refused_with_the_venues_code():
    async with order_rig(VENUE, bybit_link) as rig:
        with pytest.raises(errors.OrderRejected) as refused:
            await rig.client.place_order(approved(rig.ioc("bb-ro", side="sell", reduce_only=True)))
        assert refused.value.message.startswith("110017")
        assert rig.orders_with("bb-ro") == []


async def test_insufficient_margin_is_typed_as_insufficient_funds():
    async with order_rig(VENUE, bybit_link) as rig:
        await rig.fault("insufficient_margin")
        with pytest.raises(errors.InsufficientFunds) as refused:
            await rig.client.place_order(approved(rig.ioc("bb-margin")))
        assert refused.value.message.startswith("110007")
        assert rig.orders_with("bb-margin") == []


async def test_a_resting_order_is_cancelled_over_the_socket_and_one_not_open_is_not_found():
    async with order_rig(VENUE, bybit_link) as rig:
        request = rig.ioc("bb-rest", tif="GTC", away=True)
        await rig.client.place_order(approved(request))
        assert rig.orders_with("bb-rest")[0].status == "new"
        assert await rig.socket.cancel(request.symbol, "bb-rest") is True
        assert rig.orders_with("bb-rest")[0].status == "canceled"
        assert await rig.socket.cancel(request.symbol, "bb-rest") is False  # 110001: not open any more
        assert await rig.socket.cancel(request.symbol, "bb-never") is False


async def test_the_router_cancels_over_the_socket_and_reads_the_final_state_over_rest():
    async with order_rig(VENUE, bybit_link) as rig:
        await scenarios.router_cancels_over_the_socket(rig, "bb-route-cancel")


async def test_a_socket_cut_when_the_order_arrives_is_unknown_and_found_by_query_not_resent():
    async with order_rig(VENUE, bybit_link) as rig:
        await scenarios.socket_cut_is_unknown_and_found_by_query(rig, "bb-drop")


async def test_a_lost_answer_times_out_as_the_lifecycle_bounds_it_and_leaves_nothing_pending():
    async with order_rig(VENUE, bybit_link) as rig:
        await scenarios.lost_answer_times_out(rig, "bb-lost")


async def test_a_rate_limited_order_waits_as_long_as_the_header_says_and_is_not_placed():
    async with order_rig(VENUE, bybit_link) as rig:
        await rig.fault("rate_limit", on="order", retry_after_s=2)
        with pytest.raises(errors.RateLimited) as limited:
            await rig.client.place_order(approved(rig.ioc("bb-429")))
        assert limited.value.message.startswith("10006") and limited.value.retry_after_s == 2.0
        assert rig.orders_with("bb-429") == []


async def test_maintenance_is_a_temporary_refusal_and_nothing_is_placed():
    async with order_rig(VENUE, bybit_link) as rig:
        refused = await scenarios.maintenance_is_temporary(rig, "bb-restart")
        assert refused.message.startswith("10019")


async def test_with_the_socket_down_the_same_order_goes_over_rest():
    async with order_rig(VENUE, bybit_link, start_socket=False) as rig:
        await scenarios.socket_down_goes_over_rest(rig, "bb-rest-fallback")


async def test_a_refused_login_keeps_the_socket_down_and_orders_go_over_rest():
    def wrong_secret(sim):
        return bybit_link(sim, VenueSettings(api_key="sim-key", api_secret="not-the-secret"))

    async with order_rig(VENUE, wrong_secret, start_socket=False) as rig:
        task = asyncio.get_running_loop().create_task(rig.socket.run())
        try:
            await wait_until(lambda: rig.socket.login_failures >= 1, timeout=10)
            assert not rig.socket.ready() and "10004" in (rig.socket.last_error or "")
            result = await rig.client.place_order(approved(rig.ioc("bb-no-login")))
            assert rig.client.rest_orders == 1 and result.client_order_id == "bb-no-login"
        finally:
            await rig.socket.stop()
            await asyncio.wait_for(task, 10)


async def test_a_request_outside_the_time_window_is_refused_before_the_book():
    async with order_rig(VENUE, bybit_link, start_socket=False) as rig:
        late = BybitOrderLink(rig.url("/v5/trade"), sim_credentials(VENUE), clock=lambda: time.time() - 60)
        good = bybit_link(rig.sim)
        async with connect(rig.url("/v5/trade")) as ws:
            await ws.send(good.login_frames()[0])
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["retCode"] == 0
            await ws.send(late.place_frame("1", rig.ioc("bb-late")))
            answer = late.parse(await asyncio.wait_for(ws.recv(), 5))
        assert answer is not None and isinstance(answer.error, errors.TemporaryError)
        assert answer.error.message.startswith("10002") and rig.orders_with("bb-late") == []


async def test_pybits_websocket_trading_client_places_and_cancels_on_the_simulators_trade_endpoint(monkeypatch):
    """pybit's own WebSocketTrading (test extra) against /v5/trade: its auth, its order.create / order.cancel
    and its reading of the answers hold on the simulator. pybit builds wss://stream.<domain>/v5/trade itself;
    its module's URL template is pointed at the loopback endpoint for this test."""
    import pybit._websocket_trading as trading  # a test extra: installed by scripts/test.sh, never skipped
    from pybit.unified_trading import WebSocketTrading

    async with order_rig(VENUE, bybit_link, start_socket=False) as rig:
        monkeypatch.setattr(trading, "TRADE_WSS", rig.url("/v5/trade"))
        loop = asyncio.get_running_loop()

        def answered() -> tuple[asyncio.Future[dict], Any]:
            future: asyncio.Future[dict] = loop.create_future()
            return future, lambda message: loop.call_soon_threadsafe(future.set_result, message)

        client = await asyncio.to_thread(WebSocketTrading, testnet=False, api_key="sim-key", api_secret="sim-secret",
                                         retries=2, restart_on_error=False)  # 1: pybit gives up even once connected
        try:
            await wait_until(lambda: client.auth, timeout=5)
            filled = rig.ioc("pybit-ioc")
            done, callback = answered()
            client.place_order(callback, category="linear", symbol=filled.symbol, side="Buy", orderType="Limit",
                               qty=str(filled.qty), price=str(filled.price), timeInForce="IOC",
                               orderLinkId="pybit-ioc")
            placed = await asyncio.wait_for(done, 5)
            (order,) = rig.orders_with("pybit-ioc")
            assert placed["retCode"] == 0 and placed["data"]["orderId"] == order.order_id
            assert order.status == "filled" and placed["header"]["X-Bapi-Limit"] == "10"
            resting = rig.ioc("pybit-rest", tif="GTC", away=True)
            done, callback = answered()
            client.place_order(callback, category="linear", symbol=resting.symbol, side="Buy", orderType="Limit",
                               qty=str(resting.qty), price=str(resting.price), timeInForce="GTC",
                               orderLinkId="pybit-rest")
            await asyncio.wait_for(done, 5)
            done, callback = answered()
            refused, on_error = answered()
            client.cancel_order(callback, on_error, category="linear", symbol=resting.symbol, orderLinkId="pybit-rest")
            assert (await asyncio.wait_for(done, 5))["retCode"] == 0
            assert rig.orders_with("pybit-rest")[0].status == "canceled"
            done, callback = answered()
            refused, on_error = answered()
            client.cancel_order(callback, on_error, category="linear", symbol=resting.symbol, orderLinkId="pybit-rest")
            assert (await asyncio.wait_for(refused, 5))["retCode"] == 110001  # not open any more
        finally:
            await asyncio.to_thread(client.exit)


async def test_an_order_before_auth_and_a_reused_req_id_are_refused_and_place_nothing_twice():
    async with order_rig(VENUE, bybit_link, start_socket=False) as rig:
        link = bybit_link(rig.sim)
        request = rig.ioc("bb-raw", tif="GTC", away=True)
        async with connect(rig.url("/v5/trade")) as ws:
            await ws.send(link.place_frame("1", request))
            early = link.parse(await asyncio.wait_for(ws.recv(), 5))
            await ws.send(link.login_frames()[0])
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["retCode"] == 0
            await ws.send(link.place_frame("2", request))
            placed = link.parse(await asyncio.wait_for(ws.recv(), 5))
            await ws.send(link.place_frame("2", request))  # the same reqId again
            again = link.parse(await asyncio.wait_for(ws.recv(), 5))
        assert early is not None and isinstance(early.error, errors.OrderRejected) and "10001" in early.error.message
        assert placed is not None and placed.error is None and placed.venue_order_id
        assert again is not None and isinstance(again.error, errors.TemporaryError)
        assert again.error.message.startswith("20006") and len(rig.orders_with("bb-raw")) == 1
