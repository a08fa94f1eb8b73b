"""Binance USD-M order entry over its WebSocket API (/ws-fapi/v1) against the running simulator, as the bot
routes it (OrderSocket + RoutedClient, the real ccxt client behind for REST): an IOC whose RESULT answer
carries its fill (the fee then read off the user data stream by the bot's own parser), a partial fill, the
venue's refusals with their codes, a bad signature, cancels, a dropped socket and a lost answer (unknown,
found by query, never sent twice), 429 and 418 with the wait the venue names, maintenance, and the REST
fallback with the same client order id."""

from __future__ import annotations

import asyncio
import dataclasses
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
from perpbot.venues.binance.order_link import BinanceOrderLink, order_params
from perpbot.venues.binance.private_link import BinancePrivateLink

from testkit import approved
import ws_order_scenarios as scenarios
from ws_order_rig import order_rig, sim_credentials

VENUE = "binance"


def binance_link(sim, cfg: VenueSettings | None = None) -> BinanceOrderLink:
    return BinanceOrderLink(f"ws://127.0.0.1:{sim.ports[VENUE]}/ws-fapi/v1", cfg or sim_credentials(VENUE))


def venue_endpoint(rig) -> Any:
    return rig.endpoint(ORDER_ENTRY_KEY)


class UserStream:
    """The user data stream on a listen key the bot's link created, read by the bot's parser."""

    def __init__(self, ws: ClientConnection, link: BinancePrivateLink) -> None:
        self.ws = ws
        self.link = link

    async def fills_of(self, client_order_id: str, qty: Decimal) -> list[VenueFill]:
        fills: list[VenueFill] = []
        while sum((f.qty for f in fills), Decimal(0)) < qty:
            frame = await asyncio.wait_for(self.ws.recv(), 5)
            fills += [e for e in self.link.parse(frame, time.time())
                      if isinstance(e, VenueFill) and e.client_order_id == client_order_id]
        return fills


@asynccontextmanager
async def user_stream(rig) -> AsyncIterator[UserStream]:
    link = BinancePrivateLink(rig.url(""), rig.url("", "http"), sim_credentials(VENUE), {"BTCUSDT": Decimal(1)})
    try:
        async with connect(await link.url()) as ws:
            yield UserStream(ws, link)
    finally:
        await link.close()


async def test_an_ioc_that_crosses_answers_its_fill_over_the_socket_and_the_fee_comes_pushed():
    async with order_rig(VENUE, binance_link) as rig, user_stream(rig) as stream:
        request = rig.ioc("bn-fill")
        result = await rig.client.place_order(approved(request))
        assert result.status == "filled" and result.filled_qty == request.qty and result.avg_price is not None
        assert result.details_complete is False and result.fee == 0  # the answer has no fee: the stream has it
        assert rig.client.ws_orders == 1 and rig.client.rest_orders == 0
        (order,) = rig.orders_with("bn-fill")
        assert order.status == "filled" and order.order_id == result.venue_order_id
        assert result.avg_price == order.average_price
        fills = await stream.fills_of("bn-fill", request.qty)
        assert sum(f.qty for f in fills) == request.qty and all(f.fee > 0 for f in fills)
        queried = await rig.rest.fetch_order(request.symbol, "bn-fill")
        assert queried is not None and queried.filled_qty == request.qty


async def test_what_reaches_the_venue_is_the_order_alone_signed_with_no_broker_prefix():
    async with order_rig(VENUE, binance_link) as rig:
        request = rig.ioc("bn-wire")
        await rig.client.place_order(approved(request))
        (sent,) = [r for r in venue_endpoint(rig).requests if r.get("method") == "order.place"]
        params = dict(sent["params"])
        assert params.pop("apiKey") == "sim-key" and params.pop("timestamp") and params.pop("signature")
        assert params == order_params(request)  # the order's fields and RESULT, nothing else
        assert params["newClientOrderId"] == "bn-wire" and params["newOrderRespType"] == "RESULT"


async def test_a_partial_fill_answers_partially_filled_with_what_filled():
    async with order_rig(VENUE, binance_link) as rig:
        await rig.fault("partial_fill", ratio="0.5")
        smallest = rig.ioc("bn-partial", through=2)
        request = dataclasses.replace(smallest, qty=smallest.qty * 4)
        result = await rig.client.place_order(approved(request))
        (order,) = rig.orders_with("bn-partial")
        assert result.status == "partially_filled" and 0 < result.filled_qty < request.qty
        assert result.filled_qty == order.filled


async def test_reduce_only_with_no_position_is_refused_with_the_venues_code():
    async with order_rig(VENUE, binance_link) as rig:
        with pytest.raises(errors.OrderRejected) as refused:
            await rig.client.place_order(approved(rig.ioc("bn-ro", side="sell", reduce_only=True)))
        assert refused.value.message.startswith("-2022")
        assert rig.orders_with("bn-ro") == []


async def test_insufficient_margin_is_typed_as_insufficient_funds():
    async with order_rig(VENUE, binance_link) as rig:
        await rig.fault("insufficient_margin")
        with pytest.raises(errors.InsufficientFunds) as refused:
            await rig.client.place_order(approved(rig.ioc("bn-margin")))
        assert refused.value.message.startswith("-2019")
        assert rig.orders_with("bn-margin") == []


async def test_a_request_signed_with_another_secret_is_refused_and_places_nothing():
    async with order_rig(VENUE, lambda sim: binance_link(sim, VenueSettings(api_key="sim-key",
                                                                          api_secret="not-the-secret"))) as rig:
        with pytest.raises(errors.OrderRejected) as refused:
            await rig.client.place_order(approved(rig.ioc("bn-badsig")))
        assert refused.value.message.startswith("-1022")
        assert rig.orders_with("bn-badsig") == [] and rig.client.rest_orders == 0


async def test_a_resting_order_is_cancelled_over_the_socket_and_one_not_open_is_unknown():
    async with order_rig(VENUE, binance_link) as rig:
        request = rig.ioc("bn-rest", tif="GTC", away=True)
        result = await rig.client.place_order(approved(request))
        assert result.status == "open" and rig.orders_with("bn-rest")[0].status == "new"
        assert await rig.socket.cancel(request.symbol, "bn-rest") is True
        assert rig.orders_with("bn-rest")[0].status == "canceled"
        assert await rig.socket.cancel(request.symbol, "bn-rest") is False  # -2011 Unknown order sent.
        assert await rig.socket.cancel(request.symbol, "bn-never") is False


async def test_the_router_cancels_over_the_socket_and_reads_the_final_state_over_rest():
    async with order_rig(VENUE, binance_link) as rig:
        await scenarios.router_cancels_over_the_socket(rig, "bn-route-cancel")


async def test_a_socket_cut_when_the_order_arrives_is_unknown_and_found_by_query_not_resent():
    async with order_rig(VENUE, binance_link) as rig:
        await scenarios.socket_cut_is_unknown_and_found_by_query(rig, "bn-drop")


async def test_a_lost_answer_times_out_as_the_lifecycle_bounds_it_and_leaves_nothing_pending():
    async with order_rig(VENUE, binance_link) as rig:
        await scenarios.lost_answer_times_out(rig, "bn-lost")


@pytest.mark.parametrize(("status", "wait_s"), [(429, 2), (418, 120)])
async def test_429_and_418_are_rate_limits_with_the_venues_retry_after_and_nothing_placed(status, wait_s):
    async with order_rig(VENUE, binance_link) as rig:
        await rig.fault("rate_limit", on="order", retry_after_s=wait_s, status=status)
        with pytest.raises(errors.RateLimited) as limited:
            await rig.client.place_order(approved(rig.ioc(f"bn-{status}")))
        assert limited.value.message.startswith("-1003") and limited.value.retry_after_s == wait_s
        assert ("banned" in limited.value.message) is (status == 418)
        assert rig.orders_with(f"bn-{status}") == []


async def test_maintenance_is_a_temporary_refusal_and_nothing_is_placed():
    async with order_rig(VENUE, binance_link) as rig:
        await scenarios.maintenance_is_temporary(rig, "bn-503")


async def test_with_the_socket_down_the_same_order_goes_over_rest():
    async with order_rig(VENUE, binance_link, start_socket=False) as rig:
        await scenarios.socket_down_goes_over_rest(rig, "bn-rest-fallback")


async def test_the_answers_rate_limits_count_the_orders_placed():
    async with order_rig(VENUE, binance_link) as rig:
        link = rig.socket.link
        assert isinstance(link, BinanceOrderLink)
        for n in range(2):
            await rig.client.place_order(approved(rig.ioc(f"bn-count{n}", tif="GTC", away=True)))
        orders = {(r.interval_num, r.interval): r.count for r in link.last_rate_limits or () if r.kind == "ORDERS"}
        assert orders == {(10, "SECOND"): 2, (1, "MINUTE"): 2}


async def test_binances_official_sdk_places_and_cancels_on_the_simulators_websocket_api():
    """binance-sdk-derivatives-trading-usds-futures' own WebSocket API client (test extra) against /ws-fapi/v1:
    its signing, its request and its parsing of the answers hold on the simulator."""
    from binance_common.configuration import ConfigurationWebSocketAPI
    from binance_sdk_derivatives_trading_usds_futures.derivatives_trading_usds_futures import (
        DerivativesTradingUsdsFutures,
    )
    from binance_sdk_derivatives_trading_usds_futures.websocket_api.models import (
        NewOrderNewOrderRespTypeEnum, NewOrderSideEnum, NewOrderTimeInForceEnum, NewOrderTypeEnum,
    )

    async with order_rig(VENUE, binance_link, start_socket=False) as rig:
        def client(secret: str) -> Any:
            config = ConfigurationWebSocketAPI(api_key="sim-key", api_secret=secret, stream_url=rig.url("/ws-fapi/v1"),
                                               reconnect_attempts=1)
            return DerivativesTradingUsdsFutures(config_ws_api=config).websocket_api

        api = client("sim-secret")
        connection = await api.create_connection()
        try:
            filled = rig.ioc("sdk:ioc/1")  # ':' and '/' percent-encoded in the SDK's signed payload
            answer = await connection.new_order(
                symbol=filled.symbol, side=NewOrderSideEnum.BUY, type=NewOrderTypeEnum.LIMIT,
                time_in_force=NewOrderTimeInForceEnum.IOC, quantity=float(filled.qty), price=float(filled.price),
                new_client_order_id=filled.client_order_id, new_order_resp_type=NewOrderNewOrderRespTypeEnum.RESULT)
            result = answer.data().result
            assert result.status == "FILLED" and Decimal(result.executed_qty) == filled.qty
            assert result.client_order_id == "sdk:ioc/1" and answer.rate_limits
            resting = rig.ioc("sdk-rest", tif="GTC", away=True)
            placed = (await connection.new_order(
                symbol=resting.symbol, side=NewOrderSideEnum.BUY, type=NewOrderTypeEnum.LIMIT,
                time_in_force=NewOrderTimeInForceEnum.GTC, quantity=float(resting.qty), price=float(resting.price),
                new_client_order_id="sdk-rest")).data().result
            assert placed.status == "NEW" and rig.orders_with("sdk-rest")[0].is_open
            canceled = (await connection.cancel_order(symbol=resting.symbol, orig_client_order_id="sdk-rest")).data()
            assert canceled.result.status == "CANCELED" and rig.orders_with("sdk-rest")[0].status == "canceled"
        finally:
            await connection.close_connection(close_session=True)


async def test_an_unknown_key_and_a_stale_timestamp_are_refused_before_the_book():
    async with order_rig(VENUE, binance_link, start_socket=False) as rig:
        stranger = binance_link(rig.sim, VenueSettings(api_key="someone-else", api_secret="sim-secret"))
        late = BinanceOrderLink(rig.url("/ws-fapi/v1"), sim_credentials(VENUE), clock=lambda: time.time() - 60)
        request = rig.ioc("bn-raw")
        async with connect(rig.url("/ws-fapi/v1")) as ws:
            await ws.send(stranger.place_frame("1", request))
            unknown = stranger.parse(await asyncio.wait_for(ws.recv(), 5))
            await ws.send(late.place_frame("2", request))
            stale = late.parse(await asyncio.wait_for(ws.recv(), 5))
        assert unknown is not None and isinstance(unknown.error, errors.OrderRejected)
        assert unknown.error.message.startswith("-2015")
        assert stale is not None and isinstance(stale.error, errors.TemporaryError)
        assert stale.error.message.startswith("-1021") and rig.orders_with("bn-raw") == []
