"""Nothing on the wire the user did not choose: a recording reverse proxy on 127.0.0.1 between perpbot's real
ccxt client (perpbot.execution.ccxt_client.CcxtClient) and the simulator.

The proxy forwards every request to the simulated venue unchanged and records its method, path, query,
headers and body as they arrived over the socket. For each venue the client loads its markets, places a
marketable IOC order, fetches it, places a resting GTC order and cancels it, and reads positions, balance
and funding payments. Then, on every recorded request: no builder field, no approveBuilderFee, no
setReferrer, no broker id / tag / ccxt client-id prefix, no Referer or third-party header; and every order,
cancel and order query has the venue's request shape in shared/fixtures/<venue>/ccxt_rest_requests.json
(what ccxt sends for the same call, minus ccxt's own attributions: OKX `tag` and ccxt's generated clOrdId,
Hyperliquid's `builder`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from perpbot.core.orders import OrderRequest
from perpbot.execution.ccxt_client import CcxtClient
from perpbot.execution.client_ids import client_order_id
from perpbot.sim.faults import FaultBoard
from perpbot.sim.market import Market
from perpbot.sim.trading import add_trading_routes
from perpbot.venues.registry import transfer_link
from testkit import approved, sim_venue_settings

FIXTURES = Path("/work/shared/fixtures")
VENUES = ["okx", "binance", "bybit", "hyperliquid"]
NATIVE = {"okx": "BTC-USDT-SWAP", "binance": "BTCUSDT", "bybit": "BTCUSDT", "hyperliquid": "BTC"}
NOW_S = 1_700_000_000.0

# Third-party attributions ccxt would add on its own: OKX's broker tag, Binance's x-<broker> client-id
# prefixes, Bybit's Referer/brokerId, Hyperliquid's builder, approval and referrer actions.
CCXT_BUILDER = "0x6530512a6c89c7cfcebc3ba7fcd9ada5f30827a6"
ATTRIBUTION_MARKERS = ("CCXT", "ccxt", "6b9ad766b55dBCDE", "x-cvBPrNm9", "x-xcKtGhcu", "x-TKT5PX2F",
                       "builder", "approveBuilderFee", "setReferrer", "brokerId", CCXT_BUILDER)
# Headers a request may carry: transport, content and each venue's documented authentication headers.
ALLOWED_HEADERS = {
    "host", "accept", "accept-encoding", "user-agent", "content-type", "content-length", "connection",
    "ok-access-key", "ok-access-sign", "ok-access-timestamp", "ok-access-passphrase",  # OKX
    "x-mbx-apikey",  # Binance
    "x-bapi-api-key", "x-bapi-sign", "x-bapi-sign-type", "x-bapi-timestamp", "x-bapi-recv-window",  # Bybit
}


@dataclass(frozen=True, slots=True)
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: str

    def json_body(self) -> Any:
        return json.loads(self.body) if self.body.startswith(("{", "[")) else dict(parse_qsl(self.body))


class RecordingProxy:
    """Reverse proxy to `upstream`: records each request as received, forwards it, returns the answer."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.requests: list[Recorded] = []
        self.session: aiohttp.ClientSession | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.requests.append(Recorded(request.method, request.path, dict(request.query),
                                      {k.lower(): v for k, v in request.headers.items()}, body.decode()))
        forward = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        assert self.session is not None
        async with self.session.request(request.method, self.upstream + request.path_qs, headers=forward,
                                        data=body) as answer:
            payload = await answer.read()
            return web.Response(body=payload, status=answer.status,
                                content_type=answer.content_type, headers={
                                    k: v for k, v in answer.headers.items()
                                    if k.lower() not in ("content-length", "content-type", "content-encoding",
                                                         "transfer-encoding", "date", "server")})


venue_settings = sim_venue_settings


@dataclass
class Wire:
    venue: str
    client: CcxtClient
    market: Market
    proxy: RecordingProxy


@pytest.fixture(params=VENUES)
async def wire(request: pytest.FixtureRequest) -> AsyncIterator[Wire]:
    name = request.param
    market = Market(seed=11, clock=lambda: NOW_S)
    app = web.Application()
    add_trading_routes(app, name, market, FaultBoard(), lambda: NOW_S)
    venue_server = TestServer(app, host="127.0.0.1", port=0)
    await venue_server.start_server()
    proxy = RecordingProxy(f"http://127.0.0.1:{venue_server.port}")
    proxy_app = web.Application()
    proxy_app.router.add_route("*", "/{tail:.*}", proxy.handle)
    proxy_server = TestServer(proxy_app, host="127.0.0.1", port=0)
    await proxy_server.start_server()
    proxy.session = aiohttp.ClientSession(auto_decompress=False)
    client = CcxtClient(name, venue_settings(name), f"http://127.0.0.1:{proxy_server.port}", timeout_s=3.0)
    try:
        yield Wire(name, client, market, proxy)
    finally:
        await client.close()
        await proxy.session.close()
        await proxy_server.close()
        await venue_server.close()


async def drive_every_call(w: Wire) -> tuple[str, str]:
    """Markets, an IOC that fills, its query, a resting GTC and its cancel, positions, balance, funding."""
    native = NATIVE[w.venue]
    await w.client.load_instruments([native])
    instrument = w.client.instruments[native]
    bids, asks = w.market.levels(w.venue, native)
    lots = max(3, int(instrument.min_notional * 2 / (asks[0][0] * instrument.contract_size) / instrument.lot_size) + 3)
    qty = min(asks[0][1], instrument.lot_size * lots)
    taker = client_order_id(w.venue, "feed0001", "a", 0)
    filled = await w.client.place_order(approved(OrderRequest(w.venue, native, "buy", qty, asks[0][0], taker)))
    assert filled.filled_qty == qty
    assert (await w.client.fetch_order(native, taker)) is not None
    maker = client_order_id(w.venue, "feed0002", "a", 0)
    low = bids[-1][0]  # far under the touch: rests
    rest_qty = (instrument.min_notional * 2 / (low * instrument.contract_size) / instrument.lot_size)
    rest_qty = instrument.lot_size * max(1, int(rest_qty) + 1)
    resting = await w.client.place_order(approved(OrderRequest(w.venue, native, "buy", rest_qty, low, maker,
                                                               time_in_force="GTC")))
    assert resting.status == "open"
    canceled = await w.client.cancel_order(native, maker)
    assert canceled is not None and canceled.status == "canceled"
    assert [p.symbol for p in await w.client.fetch_positions()] == [native]
    assert (await w.client.fetch_balance()).equity > 0
    await w.client.fetch_funding_payments(int(NOW_S * 1000) - 86_400_000)
    return taker, maker


# ------------------------------------------------------------------------------------ the venues' shapes
def fixture_cases(venue: str) -> list[dict[str, Any]]:
    cases = json.loads((FIXTURES / venue / "ccxt_rest_requests.json").read_text())["cases"]
    return [c for c in cases if isinstance(c, dict)]


def case_keys(case: dict[str, Any]) -> tuple[str, str, set[str]]:
    """(method name, URL path, parameter names) of one ccxt request case: body keys, else query keys."""
    url = urlsplit(case["url"])
    out = case.get("output_json")
    if isinstance(out, list):
        out = out[0] if out else {}
    keys = set(out) if isinstance(out, dict) else {k for k, _ in parse_qsl(url.query)}
    return case["method"], url.path, keys


# ccxt's own attributions in its recorded requests, never ours: OKX's broker `tag`, Hyperliquid's `builder`.
CCXT_ATTRIBUTIONS = {"okx": {"tag"}, "hyperliquid": {"builder"}, "bybit": set(), "binance": set()}
# The venue's client-order-id field, and the order-id field it stands in for on cancel / query (documented:
# OKX "ordId or clOrdId", Bybit "orderId or orderLinkId").
CLIENT_ID = {"okx": ("clOrdId", "ordId"), "bybit": ("orderLinkId", "orderId")}
# Paging / time-window parameters of reads (ccxt's fixtures skip them as volatile).
WINDOW = {"limit", "size", "startTime", "endTime", "cursor"}


def shapes(venue: str, method: str) -> dict[str, list[set[str]]]:
    """URL path -> the parameter-name sets ccxt sends for `method` (attributions removed)."""
    found: dict[str, list[set[str]]] = {}
    for case in fixture_cases(venue):
        name, path, keys = case_keys(case)
        if name == method:
            found.setdefault(path, []).append(keys - CCXT_ATTRIBUTIONS[venue])
    return found


def params(r: Recorded) -> tuple[set[str], dict[str, Any]]:
    body = r.json_body() if r.body else {}
    if isinstance(body, list):
        body = body[0]
    values = {**r.query, **body}
    return set(values), values


def assert_shape(venue: str, method: str, r: Recorded, client_id: str, stands_for_order_id: bool) -> None:
    """`r` has one of ccxt's shapes for `method` on the same path: the fixture's keys, ours with the
    venue's client-id field in place of its order-id field where it identifies an existing order."""
    known = shapes(venue, method)
    assert r.path in known, (method, r.path, sorted(known))
    keys, values = params(r)
    client_field, order_field = CLIENT_ID[venue]
    assert values[client_field] == client_id  # our id exactly: no prefix, no generated id
    keys = (keys - {client_field}) | ({order_field} if stands_for_order_id else set())
    union = set().union(*known[r.path])
    required = set.intersection(*known[r.path]) - {client_field}
    assert required <= keys <= union | WINDOW, (method, sorted(keys), sorted(union))


def assert_hygiene(w: Wire) -> None:
    """Nothing third-party on any request: no attribution marker anywhere, only the venue's own headers."""
    assert w.proxy.requests
    for r in w.proxy.requests:
        sent = " ".join([r.method, r.path, json.dumps(r.query), r.body, *r.headers.values()])
        for marker in ATTRIBUTION_MARKERS:
            assert marker not in sent, (marker, r)
        assert "referer" not in r.headers, r
        allowed = ALLOWED_HEADERS | ({"x-simulated-trading"} if w.venue == "okx" else set())  # OKX demo flag
        assert set(r.headers) <= allowed, sorted(set(r.headers) - allowed)
        if r.body.startswith(("{", "[")):
            body = json.loads(r.body)
            for item in body if isinstance(body, list) else [body]:
                assert "tag" not in item and "builder" not in item.get("action", {}), r


async def test_nothing_on_the_wire_the_user_did_not_choose(wire: Wire) -> None:
    taker, maker = await drive_every_call(wire)
    assert_hygiene(wire)
    requests = wire.proxy.requests
    venue = wire.venue
    if venue in ("okx", "bybit"):
        create = {"okx": "/api/v5/trade/batch-orders", "bybit": "/v5/order/create"}[venue]
        cancel = {"okx": "/api/v5/trade/cancel-order", "bybit": "/v5/order/cancel"}[venue]
        query = {"okx": "/api/v5/trade/order", "bybit": "/v5/order/realtime"}[venue]
        fetch_name = {"okx": "fetchOrder", "bybit": "fetchOpenOrder"}[venue]
        placed = [r for r in requests if r.path == create]
        assert [params(r)[1][CLIENT_ID[venue][0]] for r in placed] == [taker, maker]
        for r, cid in zip(placed, (taker, maker)):
            assert_shape(venue, "createOrder", r, cid, stands_for_order_id=False)
        [canceled] = [r for r in requests if r.path == cancel]
        assert_shape(venue, "cancelOrder", canceled, maker, stands_for_order_id=True)
        queries = [r for r in requests if r.path == query]
        assert queries
        for r in queries:
            assert_shape(venue, fetch_name, r, params(r)[1][CLIENT_ID[venue][0]], stands_for_order_id=True)
        # Positions, balance, funding: the fixture's parameters for the same path (plus paging).
        reads: dict[str, set[str]] = {}
        for method in ("fetchPositions", "fetchBalance", "fetchFundingHistory", "fetchLeverage"):
            for path, keysets in shapes(venue, method).items():
                reads[path] = reads.get(path, set()).union(*keysets)
        checked = [r for r in requests if r.path in reads]
        assert checked
        for r in checked:
            assert params(r)[0] <= reads[r.path] | WINDOW, r
    elif venue == "binance":
        # The file has no USD-M order case (its notes); its one signed request fixes the envelope:
        # timestamp, recvWindow and signature on every private call, ids as given.
        [envelope] = [case_keys(c)[2] for c in fixture_cases("binance")]
        assert {"timestamp", "recvWindow", "signature"} <= envelope
        private = [r for r in requests if "x-mbx-apikey" in r.headers]
        assert private and all({"timestamp", "recvWindow", "signature"} <= params(r)[0] for r in private)
        orders = [params(r)[1] for r in requests if r.path == "/fapi/v1/order" and r.method == "POST"]
        assert [o["newClientOrderId"] for o in orders] == [taker, maker]
        [canceled] = [params(r)[1] for r in requests if r.method == "DELETE"]
        assert canceled["origClientOrderId"] == maker and "orderId" not in canceled
    else:
        check_hyperliquid(requests, wire)


def check_hyperliquid(requests: list[Recorded], w: Wire) -> None:
    """Orders: ccxt's action shape without its builder; cancel by cloid; orderStatus as ccxt's query."""
    [order_case] = [c for c in fixture_cases("hyperliquid")
                    if c["method"] == "createOrder" and c["description"] == "order with clientOrderId"]
    order_shape = order_case["output_json"]
    exchange = [r.json_body() for r in requests if r.path == "/exchange"]
    assert [b["action"]["type"] for b in exchange] == ["order", "order", "cancelByCloid"]
    for body in exchange:
        assert set(body) == set(order_shape) - {"vaultAddress"}  # action, nonce, signature
    for body in exchange[:2]:
        action = body["action"]
        assert set(action) == set(order_shape["action"]) - CCXT_ATTRIBUTIONS["hyperliquid"]
        [wire_order] = action["orders"]
        assert set(wire_order) == set(order_shape["action"]["orders"][0])  # a, b, p, s, r, t, c
    cancel = exchange[2]["action"]["cancels"][0]
    assert set(cancel) == {"asset", "cloid"}  # the venue's cancelByCloid (ccxt's fixture cancels by oid)
    assert cancel["cloid"] == exchange[1]["action"]["orders"][0]["c"]
    [status_case] = [c for c in fixture_cases("hyperliquid") if c["method"] == "fetchOrder"][:1]
    statuses = [r.json_body() for r in requests if r.path == "/info" and r.json_body().get("type") == "orderStatus"]
    assert statuses and all(set(s) == set(status_case["output_json"]) for s in statuses)


# ------------------------------------------------------------------- the proxy sees what ccxt would add
async def test_the_proxy_records_ccxts_own_attributions_when_they_are_not_taken_off() -> None:
    """The same proxy in front of plain ccxt classes with ccxt's defaults: Bybit's POST carries
    `Referer: CCXT`, and a Hyperliquid order names ccxt's builder, which the simulator refuses as the venue
    does ("Builder fee has not been approved."). What the checks above look for is really on the wire."""
    import ccxt.async_support as ccxt_async  # type: ignore[import-untyped]

    from perpbot.sim.trading.clients import ccxt_config

    for venue in ("bybit", "hyperliquid"):
        market = Market(seed=11, clock=lambda: NOW_S)
        app = web.Application()
        sim = add_trading_routes(app, venue, market, FaultBoard(), lambda: NOW_S)
        venue_server = TestServer(app, host="127.0.0.1", port=0)
        await venue_server.start_server()
        proxy = RecordingProxy(f"http://127.0.0.1:{venue_server.port}")
        proxy_app = web.Application()
        proxy_app.router.add_route("*", "/{tail:.*}", proxy.handle)
        proxy_server = TestServer(proxy_app, host="127.0.0.1", port=0)
        await proxy_server.start_server()
        proxy.session = aiohttp.ClientSession(auto_decompress=False)
        cls = getattr(ccxt_async, {"bybit": "bybit", "hyperliquid": "hyperliquid"}[venue])
        config = ccxt_config(venue, f"http://127.0.0.1:{proxy_server.port}", cls().describe()["urls"])
        if venue == "hyperliquid":  # ccxt's defaults: its builder on every order (approval taken as done)
            config["options"].update(approvedBuilderFee=True, builderFee=True)
        client = cls(config)
        try:
            await client.load_markets()
            _bids, asks = market.levels(venue, NATIVE[venue])
            price, size = asks[0]
            qty = min(size, (Decimal(20) / price).quantize(Decimal("0.001"), rounding="ROUND_UP"))
            symbol = {"bybit": "BTC/USDT:USDT", "hyperliquid": "BTC/USDC:USDC"}[venue]
            if venue == "bybit":
                await client.create_order(symbol, "limit", "buy", float(qty), float(price), {"timeInForce": "IOC"})
                [posted] = [r for r in proxy.requests if r.path == "/v5/order/create"]
                assert posted.headers.get("referer") == "CCXT"
            else:
                with pytest.raises(Exception, match="Builder fee has not been approved."):
                    await client.create_order(symbol, "limit", "buy", float(qty), float(price),
                                              {"timeInForce": "IOC"})
                [posted] = [r for r in proxy.requests if r.path == "/exchange"]
                assert posted.json_body()["action"]["builder"]["b"] == CCXT_BUILDER
                assert sim.account.fills == []  # refused: nothing traded
        finally:
            await client.close()
            await proxy.session.close()
            await proxy_server.close()
            await venue_server.close()


# --------------------------------------------------------------------------- internal transfers on the wire
async def test_an_internal_transfer_carries_exactly_the_venues_own_fields(wire: Wire) -> None:
    """perpbot's internal transfer (risk.internal_transfers) as it leaves through the real client: the link's
    parameters and nothing else (Binance adds only its signed envelope), no attribution anywhere. The simulated
    funding wallet is empty, so the venue refuses it: what was sent is what is checked, and nothing moves."""
    await wire.client.load_instruments([NATIVE[wire.venue]])
    link = transfer_link(wire.venue, sim_venue_settings(wire.venue))
    assert link is not None
    call = link.to_trading(Decimal("12.34"), "0f8e6a2b4c1d4e7fa9b3c5d7e9f1a2b3")
    before = len(wire.proxy.requests)
    with pytest.raises(Exception) as refused:  # noqa: PT011 - the venue's refusal, whatever class ccxt gives it
        answer = await wire.client.transfer(call)
        link.venue_id(answer)  # an answer that is not an acceptance raises ValueError
    assert "insufficient" in str(refused.value).lower(), refused.value
    [sent] = wire.proxy.requests[before:]
    assert sent.method == "POST"
    assert sent.path == {"okx": "/api/v5/asset/transfer", "binance": "/sapi/v1/asset/transfer",
                         "bybit": "/v5/asset/transfer/inter-transfer", "hyperliquid": "/exchange"}[wire.venue]
    keys, values = params(sent)
    if wire.venue == "binance":
        assert keys == set(call.params) | {"timestamp", "recvWindow", "signature"}
        assert {k: values[k] for k in call.params} == call.params
    else:
        assert sent.json_body() == json.loads(json.dumps(call.params))
    assert_hygiene(wire)
