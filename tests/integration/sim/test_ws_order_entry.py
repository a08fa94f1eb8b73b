"""OKX order entry over its private WebSocket against the running simulator, as the bot routes it
(OrderSocket + RoutedClient, the real ccxt client behind for REST): fills, rejections, cancels, a
dropped socket and a lost answer (unknown, found by query, never sent twice), rate limits, and the
REST fallback with the same client order id when the socket is down."""

from __future__ import annotations

import asyncio

import pytest

from perpbot.core import errors
from perpbot.venues.okx.order_link import OkxOrderLink

from testkit import approved
import ws_order_scenarios as scenarios
from ws_order_rig import order_rig, sim_credentials


def okx_link(sim):
    return OkxOrderLink(f"ws://127.0.0.1:{sim.ports['okx']}/ws/v5/private", sim_credentials("okx"))


async def test_an_ioc_that_crosses_is_acknowledged_over_the_socket_and_fills_at_the_venue():
    async with order_rig("okx", okx_link) as rig:
        request = rig.ioc("ws1fill")
        result = await rig.client.place_order(approved(request))
        assert result.venue_order_id and not result.details_complete and result.status == "open"
        assert rig.client.ws_orders == 1 and rig.client.rest_orders == 0
        (order,) = rig.orders_with("ws1fill")
        assert order.status == "filled" and order.filled == request.qty
        queried = await rig.rest.fetch_order(request.symbol, "ws1fill")
        assert queried is not None and queried.filled_qty == request.qty and queried.venue_order_id == result.venue_order_id


async def test_reduce_only_with_no_position_is_refused_with_the_venues_code():
    async with order_rig("okx", okx_link) as rig:
        with pytest.raises(errors.OrderRejected) as refused:
            await rig.client.place_order(approved(rig.ioc("ws2ro", side="sell", reduce_only=True)))
        assert "51169" in refused.value.message or "51205" in refused.value.message
        assert rig.orders_with("ws2ro") == []


async def test_a_resting_order_is_cancelled_over_the_socket_and_an_unknown_one_is_not_open():
    async with order_rig("okx", okx_link) as rig:
        request = rig.ioc("ws3rest", tif="GTC", away=True)
        await rig.client.place_order(approved(request))
        assert rig.orders_with("ws3rest")[0].status == "new"
        assert await rig.socket.cancel(request.symbol, "ws3rest") is True
        assert rig.orders_with("ws3rest")[0].status == "canceled"
        assert await rig.socket.cancel(request.symbol, "neverplaced") is False


async def test_a_socket_cut_when_the_order_arrives_is_unknown_and_found_by_query_not_resent():
    async with order_rig("okx", okx_link) as rig:
        await scenarios.socket_cut_is_unknown_and_found_by_query(rig, "ws4drop")


async def test_a_lost_answer_times_out_as_the_lifecycle_bounds_it_and_leaves_nothing_pending():
    async with order_rig("okx", okx_link) as rig:
        await scenarios.lost_answer_times_out(rig, "ws5lost")


async def test_a_rate_limited_order_is_typed_and_not_placed():
    async with order_rig("okx", okx_link) as rig:
        seen: list[tuple[str, int, dict]] = []
        rig.socket.observe = lambda venue, status, headers: seen.append((venue, status, dict(headers)))
        charged: list[tuple[str, str]] = []
        rig.socket.charge = lambda venue, endpoint: charged.append((venue, endpoint))
        await rig.fault("rate_limit", on="order", retry_after_s=2)
        with pytest.raises(errors.RateLimited):
            await rig.client.place_order(approved(rig.ioc("ws6rl")))
        assert rig.orders_with("ws6rl") == []
        # The rate budget is charged as the order leaves and told the venue said 429.
        assert charged == [("okx", "order")] and seen and seen[0][:2] == ("okx", 429)


async def test_with_the_socket_down_the_same_order_goes_over_rest():
    async with order_rig("okx", okx_link, start_socket=False) as rig:
        await scenarios.socket_down_goes_over_rest(rig, "ws7rest")


async def test_the_venues_rest_faults_reach_a_websocket_order_too():
    """rest_5xx is the venue's busy answer (not placed); timeout places and never answers; lost_response places
    and cuts the socket: every trading fault of the hostile matrix reaches an order on either path."""
    async with order_rig("okx", okx_link) as rig:
        await rig.fault("rest_5xx", on="order")
        with pytest.raises(errors.TemporaryError):
            await rig.client.place_order(approved(rig.ioc("ws8busy")))
        assert rig.orders_with("ws8busy") == []
        await rig.fault("timeout")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await rig.client.place_order(approved(rig.ioc("ws9slow")))
        assert len(rig.orders_with("ws9slow")) == 1
        await rig.fault("lost_response")
        with pytest.raises(errors.UnknownOutcome):
            await rig.client.place_order(approved(rig.ioc("ws10lost")))
        assert len(rig.orders_with("ws10lost")) == 1
