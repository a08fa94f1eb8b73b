"""Hyperliquid order entry over the WebSocket (`post` of a natively signed action) against the running
simulator, as the bot routes it (OrderSocket + RoutedClient, the real ccxt client behind for REST):
an IOC that fills (its fill pushed on the private stream), the venue's refusals (minimum value,
reduce-only, insufficient margin, a signer that is not the account, an unapproved builder), a cancel
by cloid, a dropped socket and a lost answer (unknown, found by query, never sent twice), the rate
limit, and the REST fallback with the same client order id when the socket is down."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest
from websockets.asyncio.client import connect

from perpbot.core import errors
from perpbot.core.orders import OrderRequest
from perpbot.settings import VenueSettings
from perpbot.sim.trading.clients import SIM_WALLET
from perpbot.venues.hyperliquid.order_link import HyperliquidOrderLink, asset_indices
from perpbot.venues.hyperliquid.orders import format_client_id
from perpbot.venues.hyperliquid.signing import (
    action_hash,
    l1_digest,
    load_private_key,
    order_action,
    order_wire,
    sign_digest,
)

from testkit import approved
import ws_order_scenarios as scenarios
from ws_order_rig import order_rig, sim_credentials

VENUE = "hyperliquid"
OTHER_KEY = "0x" + "0" * 62 + "42"  # a valid key that is not the simulated account's


def assets_of(sim) -> dict[str, int]:
    return {coin: index for index, coin in enumerate(sim.exchanges[VENUE].symbols())}


def hl_link(sim, cfg: VenueSettings | None = None) -> HyperliquidOrderLink:
    return HyperliquidOrderLink(f"ws://127.0.0.1:{sim.ports[VENUE]}/ws", cfg or sim_credentials(VENUE),
                                assets_of(sim))


def cid(name: str) -> str:
    return format_client_id(name)  # the REST client's cloid for the same canonical id


async def post_raw(rig, frame: str) -> dict:
    """One post request on a connection of its own; the simulator's answer to it."""
    async with connect(rig.url("/ws")) as ws:
        await ws.send(frame)
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if message.get("channel") == "post":
                return message


async def test_the_link_takes_its_asset_indices_from_the_ccxt_markets_the_bot_loads():
    async with order_rig(VENUE, hl_link, start_socket=False) as rig:
        assert asset_indices(rig.rest.exchange.markets) == assets_of(rig.sim)


async def test_an_ioc_that_crosses_fills_over_the_socket_and_its_fill_is_pushed_on_the_private_stream():
    async with order_rig(VENUE, hl_link) as rig, connect(rig.url("/ws")) as private:
        await private.send(json.dumps({"method": "subscribe",
                                       "subscription": {"type": "userFills", "user": SIM_WALLET}}))
        request = rig.ioc(cid("hl-fill"))
        result = await rig.client.place_order(approved(request))
        assert result.status == "filled" and result.filled_qty == request.qty and result.avg_price is not None
        assert result.details_complete is False and result.fee == 0  # the answer has no fee: the stream has it
        assert rig.client.ws_orders == 1 and rig.client.rest_orders == 0
        (order,) = rig.orders_with(request.client_order_id)
        assert order.status == "filled" and str(order.order_id) == result.venue_order_id
        pushed = []
        while not pushed:
            message = json.loads(await asyncio.wait_for(private.recv(), 5))
            if message.get("channel") == "userFills" and not message["data"].get("isSnapshot"):
                pushed = [f for f in message["data"]["fills"] if f.get("cloid") == request.client_order_id]
        assert Decimal(pushed[0]["sz"]) == request.qty and Decimal(pushed[0]["fee"]) > 0
        queried = await rig.rest.fetch_order(request.symbol, request.client_order_id)
        assert queried is not None and queried.filled_qty == request.qty


async def test_a_link_signing_for_mainnet_trades_too_and_a_partial_fill_is_answered_as_such():
    def mainnet_link(sim):
        cfg = sim_credentials(VENUE).model_copy(update={"environment": "mainnet"})
        return hl_link(sim, cfg)

    async with order_rig(VENUE, mainnet_link) as rig:
        await rig.fault("partial_fill", ratio="0.5")
        request = rig.ioc(cid("hl-partial"))
        inst = rig.sim.market.instrument(VENUE, request.symbol)
        request = OrderRequest(venue=VENUE, symbol=request.symbol, side="buy", qty=request.qty * 2,
                               price=request.price, client_order_id=request.client_order_id)
        result = await rig.client.place_order(approved(request))
        assert result.status == "partially_filled" and 0 < result.filled_qty < request.qty
        assert result.filled_qty % inst.lot == 0 and result.details_complete is False
        (order,) = rig.orders_with(request.client_order_id)
        assert order.filled == result.filled_qty


async def test_an_order_below_the_minimum_value_is_refused_with_the_venues_text():
    async with order_rig(VENUE, hl_link) as rig:
        small = rig.ioc(cid("hl-small"))
        inst = rig.sim.market.instrument(VENUE, small.symbol)
        tiny = OrderRequest(venue=VENUE, symbol=small.symbol, side="buy", qty=inst.lot, price=small.price,
                            client_order_id=small.client_order_id)
        with pytest.raises(errors.OrderRejected) as refused:
            await rig.client.place_order(approved(tiny))
        assert "Order must have minimum value of $10." in refused.value.message
        assert rig.orders_with(tiny.client_order_id) == []


async def test_reduce_only_with_no_position_is_refused_with_the_venues_text():
    async with order_rig(VENUE, hl_link) as rig:
        request = rig.ioc(cid("hl-ro"), side="sell", reduce_only=True)
        with pytest.raises(errors.OrderRejected) as refused:
            await rig.client.place_order(approved(request))
        assert "Reduce only order would increase position." in refused.value.message
        assert rig.orders_with(request.client_order_id) == []


async def test_insufficient_margin_is_typed_as_insufficient_funds():
    async with order_rig(VENUE, hl_link) as rig:
        await rig.fault("insufficient_margin")
        request = rig.ioc(cid("hl-margin"))
        with pytest.raises(errors.InsufficientFunds) as refused:
            await rig.client.place_order(approved(request))
        assert "Insufficient margin to place order." in refused.value.message
        assert rig.orders_with(request.client_order_id) == []


async def test_a_resting_order_is_cancelled_by_cloid_and_a_second_cancel_finds_it_not_open():
    async with order_rig(VENUE, hl_link) as rig:
        request = rig.ioc(cid("hl-rest"), tif="GTC", away=True)
        result = await rig.client.place_order(approved(request))
        assert result.status == "open" and result.venue_order_id
        assert rig.orders_with(request.client_order_id)[0].is_open
        assert await rig.socket.cancel(request.symbol, request.client_order_id) is True
        assert rig.orders_with(request.client_order_id)[0].status == "canceled"
        assert await rig.socket.cancel(request.symbol, request.client_order_id) is False
        assert await rig.socket.cancel(request.symbol, cid("hl-never")) is False


async def test_the_router_cancels_over_the_socket_and_reads_the_final_state_over_rest():
    async with order_rig(VENUE, hl_link) as rig:
        await scenarios.router_cancels_over_the_socket(rig, cid("hl-route-cancel"))


async def test_a_socket_cut_when_the_order_arrives_is_unknown_and_found_by_query_not_resent():
    async with order_rig(VENUE, hl_link) as rig:
        await scenarios.socket_cut_is_unknown_and_found_by_query(rig, cid("hl-drop"))


async def test_a_lost_answer_times_out_as_the_lifecycle_bounds_it_and_leaves_nothing_pending():
    async with order_rig(VENUE, hl_link) as rig:
        await scenarios.lost_answer_times_out(rig, cid("hl-lost"))


async def test_a_rate_limited_order_is_typed_and_not_placed():
    async with order_rig(VENUE, hl_link) as rig:
        await rig.fault("rate_limit", on="order", retry_after_s=2)
        request = rig.ioc(cid("hl-429"))
        with pytest.raises(errors.RateLimited) as limited:
            await rig.client.place_order(approved(request))
        assert limited.value.message.startswith("429")
        assert limited.value.retry_after_s is None  # Hyperliquid's 429 names no wait (no Retry-After)
        assert rig.orders_with(request.client_order_id) == []


async def test_an_ip_ban_is_rate_limited_too_and_nothing_is_placed():
    async with order_rig(VENUE, hl_link) as rig:
        await rig.fault("ip_ban", retry_after_s=5)
        request = rig.ioc(cid("hl-418"))
        with pytest.raises(errors.RateLimited) as limited:
            await rig.client.place_order(approved(request))
        assert limited.value.message.startswith("418")
        assert rig.orders_with(request.client_order_id) == []


async def test_maintenance_is_a_temporary_refusal_and_nothing_is_placed():
    async with order_rig(VENUE, hl_link) as rig:
        await scenarios.maintenance_is_temporary(rig, cid("hl-503"))


async def test_with_the_socket_down_the_same_order_goes_over_rest():
    async with order_rig(VENUE, hl_link, start_socket=False) as rig:
        await scenarios.socket_down_goes_over_rest(rig, cid("hl-rest-fallback"))


async def test_an_order_signed_by_another_key_is_refused_as_the_venue_refuses_an_unknown_wallet():
    async with order_rig(VENUE, hl_link, start_socket=False) as rig:
        stranger = hl_link(rig.sim, VenueSettings(wallet_address=SIM_WALLET, private_key=OTHER_KEY))
        request = rig.ioc(cid("hl-stranger"))
        answer = stranger.parse(json.dumps(await post_raw(rig, stranger.place_frame("7", request))))
        assert answer is not None and isinstance(answer.error, errors.OrderRejected)
        assert answer.error.message.startswith("User or API Wallet 0x") and "does not exist." in answer.error.message
        assert rig.orders_with(request.client_order_id) == []


async def test_a_replayed_action_is_refused_for_its_duplicate_nonce_and_places_nothing_twice():
    async with order_rig(VENUE, hl_link, start_socket=False) as rig:
        sender = hl_link(rig.sim)
        request = rig.ioc(cid("hl-replay"))
        frame = sender.place_frame("5", request)
        first = await post_raw(rig, frame)
        again = await post_raw(rig, frame)
        assert "filled" in first["data"]["response"]["payload"]["response"]["data"]["statuses"][0]
        nonce = json.loads(frame)["request"]["payload"]["nonce"]
        assert again["data"]["response"]["payload"] == {"status": "err",
                                                        "response": f"Invalid nonce: duplicate nonce {nonce}"}
        assert len(rig.orders_with(request.client_order_id)) == 1


async def test_a_signed_order_naming_an_unapproved_builder_is_refused():
    async with order_rig(VENUE, hl_link, start_socket=False) as rig:
        request = rig.ioc(cid("hl-builder"))
        wire = order_wire(assets_of(rig.sim)[request.symbol], True, request.price, request.qty, False, "Ioc",
                          request.client_order_id)
        action = {**order_action([wire]), "builder": {"b": "0x6530512a6c89c7cfcebc3ba7fcd9ada5f30827a6", "f": 0}}
        nonce = 1_760_000_000_000
        signature = sign_digest(load_private_key("0x" + "0" * 63 + "1"),
                                l1_digest(action_hash(action, None, nonce), False))
        frame = json.dumps({"method": "post", "id": 3, "request": {"type": "action", "payload": {
            "action": action, "nonce": nonce, "signature": signature, "vaultAddress": None}}})
        answer = await post_raw(rig, frame)
        assert answer["data"] == {"id": 3, "response": {"type": "action", "payload": {
            "status": "err", "response": "Builder fee has not been approved."}}}
        assert rig.orders_with(request.client_order_id) == []


async def test_a_post_that_does_not_deserialize_is_refused_with_the_http_status_text():
    async with order_rig(VENUE, hl_link, start_socket=False) as rig:
        answer = await post_raw(rig, json.dumps({"method": "post", "id": 9, "request": {
            "type": "action", "payload": {"action": {"type": "order"}, "nonce": "soon"}}}))
        assert answer["data"]["id"] == 9 and answer["data"]["response"]["type"] == "error"
        assert answer["data"]["response"]["payload"].startswith("422 Failed to deserialize the JSON body")
