"""Hyperliquid's order link: the `post` frames carry exactly the order the gate approved, signed natively
(the official SDK's signature, byte for byte, on its own vector), with the REST order's fields and
nothing the user did not choose (no builder); nonces only ever go up; the venue's answers (the docs'
sample, filled / resting / error statuses, refused posts) become typed values."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from perpbot.core import errors
from perpbot.core.events import ParseError
from perpbot.core.order_entry import OrderAnswer, Pong
from perpbot.core.orders import OrderRequest
from perpbot.settings import VenueSettings
from perpbot.sim.private.hyperliquid_orders import signer_of
from perpbot.venues.hyperliquid.order_link import HyperliquidOrderLink
from perpbot.venues.hyperliquid.orders import SPEC, format_client_id

SDK_KEY = "0x0123456789012345678901234567890123456789012345678901234567890123"
SDK_WALLET = "0x14791697260e4c9a71f18484c9f997b308e59325"
ASSETS = {"BTC": 0, "ETH": 1, "SOL": 5}


def link(environment: str = "testnet", clock=lambda: 1_700_000_000.0) -> HyperliquidOrderLink:
    cfg = VenueSettings(environment=environment, wallet_address=SDK_WALLET, private_key=SDK_KEY)
    return HyperliquidOrderLink("ws://127.0.0.1:1/ws", cfg, ASSETS, clock=clock)


def request(**changes) -> OrderRequest:
    fields = dict(venue="hyperliquid", symbol="BTC", side="buy", qty=Decimal("0.0014"), price=Decimal("64000"),
                  client_order_id=format_client_id("leg-1"), reduce_only=False)
    fields.update(changes)
    return OrderRequest(**fields)


def payload_of(frame: str, request_id: int) -> dict:
    message = json.loads(frame)
    assert message["method"] == "post" and message["id"] == request_id and message["request"]["type"] == "action"
    return message["request"]["payload"]


def post_answer(request_id: int, payload, kind: str = "action") -> str:
    return json.dumps({"channel": "post", "data": {"id": request_id, "response": {"type": kind, "payload": payload}}})


def order_answer(request_id: int, status) -> str:
    return post_answer(request_id, {"status": "ok", "response": {"type": "order", "data": {"statuses": [status]}}})


@pytest.fixture(scope="module")
def sdk_vector(shared_fixtures) -> dict:
    vectors = json.loads((shared_fixtures / "hyperliquid" / "sdk_signing_vectors.json").read_text())
    return next(v for v in vectors["vectors"] if v["name"] == "order_gtc_with_cloid")


@pytest.mark.parametrize("network", ["mainnet", "testnet"])
def test_an_order_frame_carries_the_sdks_action_and_signature_for_the_same_order(sdk_vector, network):
    # The SDK's test: ETH (asset 1) buy 100 @ 100 GTC, cloid 0x...01, nonce 0, on each network.
    sdk = link(network, clock=lambda: 0.0)
    order = request(symbol="ETH", qty=Decimal(100), price=Decimal(100), time_in_force="GTC",
                    client_order_id="0x00000000000000000000000000000001")
    payload = payload_of(sdk.place_frame("5", order), 5)
    assert payload == {"action": sdk_vector["action"], "nonce": 0, "signature": sdk_vector["expected"][network],
                       "vaultAddress": None}


def test_an_ioc_order_has_the_rest_orders_fields_and_no_builder():
    order = request(side="sell", reduce_only=True)
    payload = payload_of(link().place_frame("1", order), 1)
    (wire,) = payload["action"]["orders"]
    params = SPEC.order_params(order)  # what the REST order sends through ccxt
    assert wire == {"a": 0, "b": False, "p": "64000", "s": "0.0014", "r": True,
                    "t": {"limit": {"tif": params["timeInForce"]}}, "c": params["clientOrderId"]}
    assert params["timeInForce"] == "Ioc" and params["reduceOnly"] is True
    assert list(payload["action"]) == ["type", "orders", "grouping"]  # no builder, ever
    assert set(payload) == {"action", "nonce", "signature", "vaultAddress"}


def test_ccxts_recorded_order_bodies_are_ours_without_ccxts_builder(shared_fixtures):
    cases = json.loads((shared_fixtures / "hyperliquid" / "ccxt_rest_requests.json").read_text())["cases"]
    body = next(c for c in cases if c["description"] == "order with clientOrderId")["output_json"]
    ccxt_action = {k: v for k, v in body["action"].items() if k != "builder"}
    ours = request(symbol="SOL", qty=Decimal("0.5"), price=Decimal("136.5"),
                   client_order_id="0x1234567890abcdef1234567890abcdef")
    assert payload_of(link().place_frame("2", ours), 2)["action"] == ccxt_action


def test_the_signature_recovers_to_the_wallet_on_the_configured_network_only():
    payload = payload_of(link("mainnet").place_frame("3", request()), 3)
    assert signer_of(payload, is_mainnet=True) == SDK_WALLET
    assert signer_of(payload, is_mainnet=False) != SDK_WALLET


def test_a_cancel_is_cancel_by_cloid_signed_by_the_wallet():
    payload = payload_of(link().cancel_frame("4", "ETH", format_client_id("leg-1")), 4)
    assert payload["action"] == {"type": "cancelByCloid",
                                 "cancels": [{"asset": 1, "cloid": format_client_id("leg-1")}]}
    assert signer_of(payload, is_mainnet=False) == SDK_WALLET


def test_nonces_are_milliseconds_and_strictly_increase_even_when_the_clock_stalls_or_steps_back():
    now = [1_700_000_000.0]
    clocked = link(clock=lambda: now[0])
    nonces = [payload_of(clocked.place_frame(str(i), request()), i)["nonce"] for i in (1, 2)]
    now[0] -= 5
    nonces.append(payload_of(clocked.cancel_frame("3", "BTC", format_client_id("x")), 3)["nonce"])
    now[0] += 60
    nonces.append(payload_of(clocked.place_frame("4", request()), 4)["nonce"])
    assert nonces == [1_700_000_000_000, 1_700_000_000_001, 1_700_000_000_002, 1_700_000_055_000]


def test_an_order_for_a_coin_without_an_asset_index_is_refused_before_anything_is_sent():
    with pytest.raises(ValueError, match="no asset index"):
        link().place_frame("1", request(symbol="DOGE"))


def test_the_docs_sample_answer_is_a_resting_acknowledgement(shared_fixtures):
    frames = json.loads((shared_fixtures / "hyperliquid" / "private_ws_frames.json").read_text())["frames"]
    sample = next(f for f in frames if f["channel"].startswith("post"))
    assert link().parse(sample["frame_text"]) == OrderAnswer("256", venue_order_id="88383", status="open")


def test_a_filled_answer_gives_size_and_average_but_no_fee_so_it_is_not_complete():
    sender = link()
    sender.place_frame("7", request(qty=Decimal("0.0014")))
    sender.place_frame("8", request(qty=Decimal("0.0014")))
    full = sender.parse(order_answer(7, {"filled": {"totalSz": "0.0014", "avgPx": "64001.5", "oid": 90000000007}}))
    part = sender.parse(order_answer(8, {"filled": {"totalSz": "0.0006", "avgPx": "64000.0", "oid": 90000000008}}))
    assert full == OrderAnswer("7", venue_order_id="90000000007", status="filled", filled_qty=Decimal("0.0014"),
                               avg_price=Decimal("64001.5"), fee=None, complete=False)
    assert isinstance(part, OrderAnswer) and part.status == "partially_filled" and part.filled_qty == Decimal("0.0006")


@pytest.mark.parametrize(("text", "kind"), [
    ("Insufficient margin to place order. asset=0", errors.InsufficientFunds),
    ("Reduce only order would increase position. asset=0", errors.OrderRejected),
    ("Order must have minimum value of $10. asset=0", errors.OrderRejected),
    ("Order could not immediately match against any resting orders. asset=0", errors.OrderRejected),
    ("Order was never placed, already canceled, or filled. asset=0", errors.OrderNotFound),
])
def test_per_order_errors_are_typed_by_the_venues_texts(text, kind):
    answer = link().parse(order_answer(9, {"error": text}))
    assert isinstance(answer, OrderAnswer) and type(answer.error) is kind and answer.error.message == text


@pytest.mark.parametrize(("text", "kind"), [
    ("Builder fee has not been approved.", errors.OrderRejected),
    ("User or API Wallet 0x0000000000000000000000000000000000000001 does not exist.", errors.OrderRejected),
    ("Too many cumulative requests sent (37986 > 10436) for cumulative volume traded $437.92.", errors.RateLimited),
])
def test_an_action_refused_whole_is_typed(text, kind):
    answer = link().parse(post_answer(10, {"status": "err", "response": text}))
    assert isinstance(answer, OrderAnswer) and type(answer.error) is kind and answer.error.message == text


@pytest.mark.parametrize(("text", "kind"), [
    ("429 Too Many Requests", errors.RateLimited),
    ("418 I'm a Teapot", errors.RateLimited),
    ("503 Service Unavailable", errors.TemporaryError),
    ("500 Internal Server Error", errors.UnknownOutcome),
    ("422 Failed to deserialize the JSON body into the target type", errors.OrderRejected),
])
def test_a_refused_post_is_typed_by_its_http_status(text, kind):
    answer = link().parse(post_answer(11, text, kind="error"))
    assert isinstance(answer, OrderAnswer) and type(answer.error) is kind
    if kind is errors.RateLimited:
        assert answer.error.retry_after_s is None  # the venue names no wait


def test_a_cancel_taken_is_an_answer_without_error():
    answer = link().parse(post_answer(12, {"status": "ok", "response": {"type": "cancel",
                                                                         "data": {"statuses": ["success"]}}}))
    assert answer == OrderAnswer("12")


def test_pongs_other_channels_and_unreadable_frames():
    assert link().ping_frame == '{"method":"ping"}'
    assert link().parse('{"channel":"pong"}') == Pong()
    assert link().parse("Websocket connection established.") is None  # the venue's greeting
    assert link().parse('{"channel":"subscriptionResponse","data":{}}') is None
    assert link().parse('{"channel":"error","data":"Error parsing JSON into valid websocket request: {}"}') is None
    for bad in ("not json", "[1]", '{"channel":"post","data":{"id":"x"}}',
                post_answer(13, {}, kind="info"), order_answer(14, {"mystery": {}})):
        with pytest.raises(ParseError):
            link().parse(bad)


def test_no_login_frames_and_the_key_never_reaches_a_frame():
    sender = link()
    frame = sender.place_frame("1", request())
    assert sender.login_frames() == [] and SDK_KEY[2:] not in frame and SDK_KEY[2:] not in repr(sender.__dict__)


def test_the_registry_builds_the_link_from_the_rest_clients_markets_and_falls_back_to_rest_without_them():
    from perpbot.settings import Settings
    from perpbot.venues.registry import order_link

    cfg = VenueSettings(wallet_address=SDK_WALLET, private_key=SDK_KEY)
    markets = {"BTC/USDC:USDC": {"swap": True, "baseName": "BTC", "baseId": "0"},
               "ETH/USDC:USDC": {"swap": True, "baseName": "ETH", "baseId": "1"},
               "PURR/USDC": {"spot": True, "swap": False, "baseName": "PURR", "baseId": "10000"}}
    instruments = {"BTC": object(), "ETH": object()}
    built = order_link("hyperliquid", Settings(), cfg, instruments, markets)  # type: ignore[arg-type]
    assert isinstance(built, HyperliquidOrderLink) and built.url() == Settings().order_ws_url("hyperliquid")
    assert json.loads(built.place_frame("1", request(symbol="ETH")))["request"]["payload"]["action"]["orders"][0]["a"] == 1
    assert order_link("hyperliquid", Settings(), cfg, instruments) is None  # type: ignore[arg-type]
    assert order_link("hyperliquid", Settings(), cfg, {"DOGE": object()}, markets) is None  # type: ignore[arg-type]
