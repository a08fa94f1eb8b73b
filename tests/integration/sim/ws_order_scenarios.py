"""The order-entry scenarios every venue's order socket must pass, written once: each venue's test module
calls them with its own rig (perpbot.feeds.order_socket + RoutedClient against the simulator) and client id."""

from __future__ import annotations

import asyncio

import pytest

from perpbot.core import errors

from testkit import approved, wait_until
from ws_order_rig import OrderRig


async def router_cancels_over_the_socket(rig: OrderRig, cid: str) -> None:
    """The router cancels over the socket and reads the order's final state over REST."""
    request = rig.ioc(cid, tif="GTC", away=True)
    await rig.client.place_order(approved(request))
    final = await rig.client.cancel_order(request.symbol, cid)
    assert final is not None and final.status == "canceled" and final.filled_qty == 0


async def socket_cut_is_unknown_and_found_by_query(rig: OrderRig, cid: str) -> None:
    """The socket cut as the order arrives: the outcome is unknown, the order is found by query, never re-sent."""
    await rig.fault("ws_order_drop")
    request = rig.ioc(cid)
    with pytest.raises(errors.UnknownOutcome):
        await rig.client.place_order(approved(request))
    assert rig.client.rest_orders == 0  # never sent again over REST
    found = await rig.rest.fetch_order(request.symbol, cid)
    assert found is not None and found.filled_qty == request.qty
    assert len(rig.orders_with(cid)) == 1
    await wait_until(rig.socket.ready, timeout=10)  # the socket comes back by itself (logged in again)


async def lost_answer_times_out(rig: OrderRig, cid: str) -> None:
    """An answer never sent: the lifecycle's bound ends the wait, nothing stays pending, the order is there."""
    await rig.fault("ws_answer_lost")
    request = rig.ioc(cid)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.5):
            await rig.client.place_order(approved(request))
    assert rig.socket._pending == {}  # noqa: SLF001
    assert len(rig.orders_with(cid)) == 1
    assert (await rig.rest.fetch_order(request.symbol, cid)) is not None


async def maintenance_is_temporary(rig: OrderRig, cid: str) -> errors.TemporaryError:
    """Maintenance: a temporary refusal, nothing placed. Returns the error for the venue's own checks."""
    await rig.fault("maintenance")
    with pytest.raises(errors.TemporaryError) as refused:
        await rig.client.place_order(approved(rig.ioc(cid)))
    assert rig.orders_with(cid) == []
    return refused.value


async def socket_down_goes_over_rest(rig: OrderRig, cid: str) -> None:
    """With the socket down (rig started without it) the same order goes over REST, same client id."""
    result = await rig.client.place_order(approved(rig.ioc(cid)))
    assert rig.client.rest_orders == 1 and rig.socket.fallbacks == 1 and rig.socket.sent == 0
    assert result.client_order_id == cid and len(rig.orders_with(cid)) == 1
