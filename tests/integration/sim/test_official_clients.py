"""Each venue's OFFICIAL client library against the simulator's private streams, pointed at it by base URL.

Test-only dependencies (pyproject's `test` extra): hyperliquid-python-sdk, python-okx, pybit and
Binance's official USD-M futures SDK (binance-sdk-derivatives-trading-usds-futures). Each test starts
the simulator on ephemeral loopback ports, lets the library log in / create its listen key / subscribe
as it does against the venue, places a marketable IOC order (through the library's own REST call where
it can be pointed at the simulator) and waits, with a timeout, for the library's private-stream callback
to hand it the order update and the fills; the ids, quantities and prices must match the simulator's
book. The thread-based SDKs (Hyperliquid's websocket-client manager, the blocking REST clients) run off
the event loop (asyncio.to_thread) and hand their frames over through queue.Queue.

What could not be pointed at the simulator by configuration alone is pinned by a test too (see
test_pybit_* and test_okx_*): pybit formats wss://{SUBDOMAIN}.{DOMAIN}.{TLD} itself, and python-okx's
WsPrivateAsync always passes an ssl context, which websockets refuses for a ws:// URL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest

from perpbot.settings import Settings
from perpbot.sim.private.common import SIM_API_KEY, SIM_PASSPHRASE, SIM_SECRET
from perpbot.sim.server import Simulator
from perpbot.sim.trading.clients import SIM_PRIVATE_KEY, SIM_WALLET

VENUES = ("okx", "binance", "bybit", "hyperliquid")
NATIVE = {"okx": "BTC-USDT-SWAP", "binance": "BTCUSDT", "bybit": "BTCUSDT", "hyperliquid": "BTC"}
TIMEOUT = 5.0

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # httpx's, inside python-okx


def dec(value: Any) -> Decimal:
    return Decimal(str(value))


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Every socket connect of these tests (ours, the SDKs' threads, their event loops) must go to loopback:
    a library reaching for its venue (a server-time call, a metadata fetch) fails the test."""
    import ipaddress
    import socket

    elsewhere: list[Any] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

    def check(address: Any) -> None:
        if isinstance(address, tuple) and not ipaddress.ip_address(address[0]).is_loopback:
            elsewhere.append(address)
            raise OSError(f"test: connection to {address} refused (loopback only)")

    def connect(self: socket.socket, address: Any) -> None:
        check(address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check(address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    yield
    assert not elsewhere, f"non-loopback connections attempted: {elsewhere}"


class Inbox:
    """A callback target for a library's thread (or loop): every message, and a wait with a timeout."""

    def __init__(self) -> None:
        self.q: queue.Queue[Any] = queue.Queue()
        self.seen: list[Any] = []

    def __call__(self, message: Any) -> None:
        self.q.put(message)

    async def until(self, pred: Callable[[Any], bool], timeout: float = TIMEOUT) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching message within {timeout}s; seen: {self.seen[-5:]}")
            try:
                message = await asyncio.to_thread(self.q.get, True, min(left, 0.5))
            except queue.Empty:
                continue
            self.seen.append(message)
            if pred(message):
                return message


class Rig:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def url(self, venue: str, scheme: str = "http", path: str = "") -> str:
        return f"{scheme}://127.0.0.1:{self.sim.ports[venue]}{path}"

    def sweep(self, venue: str, levels: int = 2) -> tuple[Decimal, Decimal, list[tuple[Decimal, Decimal]]]:
        """A buy through the first `levels` ask levels: (qty in the venue's units, limit price, the levels)."""
        inst = self.sim.market.instrument(venue, NATIVE[venue])
        _bids, asks = self.sim.market.levels(venue, NATIVE[venue])
        least = max(inst.lot * 2, inst.min_qty, inst.min_notional * 2 / (asks[0][0] * inst.contract_size))
        least = (least / inst.lot).to_integral_value(rounding="ROUND_CEILING") * inst.lot
        qty = sum((q for _, q in asks[: levels - 1]), Decimal(0)) + least
        self.sim.exchanges[venue].set_leverage(NATIVE[venue], Decimal(10))  # room for a sweep of the book
        return qty, asks[levels - 1][0], [(p, q) for p, q in asks[:levels]]


@asynccontextmanager
async def rig():
    settings = Settings(sim={"ports": {v: 0 for v in VENUES}, "admin_port": 0, "tick_interval_s": 0.02, "seed": 5})
    async with Simulator(settings, autotick=False) as sim:
        yield Rig(sim)


def expected_fills(qty: Decimal, levels: list[tuple[Decimal, Decimal]]) -> list[tuple[Decimal, Decimal]]:
    """(price, qty) of each fill of a buy of `qty` through `levels`."""
    fills, left = [], qty
    for price, size in levels:
        take = min(left, size)
        fills.append((price, take))
        left -= take
    return [f for f in fills if f[1] > 0]


# --------------------------------------------------------------------------------------- Hyperliquid
async def test_hyperliquid_sdk_receives_order_updates_and_user_fills() -> None:
    from eth_account import Account
    from hyperliquid.exchange import Exchange
    from hyperliquid.info import Info

    async with rig() as r:
        base = r.url("hyperliquid")
        info = await asyncio.to_thread(Info, base, False)  # skip_ws=False: the SDK's own ws manager thread
        try:
            orders, fills, events, others = Inbox(), Inbox(), Inbox(), Inbox()
            stranger = "0x" + "ab" * 20
            # Another address's fills first: frames on one socket are ordered, so once our own fill has
            # arrived, anything pushed for the stranger would have arrived before it.
            await asyncio.to_thread(info.subscribe, {"type": "userFills", "user": stranger}, others)
            await asyncio.to_thread(info.subscribe, {"type": "orderUpdates", "user": SIM_WALLET}, orders)
            await asyncio.to_thread(info.subscribe, {"type": "userEvents", "user": SIM_WALLET}, events)
            # Last: its snapshot says every subscription before it on this socket has been taken.
            await asyncio.to_thread(info.subscribe, {"type": "userFills", "user": SIM_WALLET}, fills)
            snapshot = await fills.until(lambda m: m["data"].get("isSnapshot"))
            assert snapshot["data"]["user"] == SIM_WALLET and snapshot["data"]["fills"] == []

            exchange = await asyncio.to_thread(Exchange, Account.from_key(SIM_PRIVATE_KEY), base)
            qty, px, levels = r.sweep("hyperliquid")
            result = await asyncio.to_thread(exchange.order, "BTC", True, float(qty), float(px),
                                             {"limit": {"tif": "Ioc"}})
            assert result["status"] == "ok", result
            filled = result["response"]["data"]["statuses"][0]["filled"]
            oid = filled["oid"]
            assert dec(filled["totalSz"]) == qty

            want = expected_fills(qty, levels)
            pushed: list[dict[str, Any]] = []
            while len(pushed) < len(want):
                message = await fills.until(lambda m: not m["data"].get("isSnapshot"))
                pushed += message["data"]["fills"]
            assert [(dec(f["px"]), dec(f["sz"])) for f in pushed] == want
            assert all(f["oid"] == oid and f["coin"] == "BTC" and f["side"] == "B" for f in pushed)
            assert len({f["tid"] for f in pushed}) == len(want)

            user_fills: list[dict[str, Any]] = []  # userEvents (channel "user"): the same fills
            while len(user_fills) < len(pushed):
                user_fills += (await events.until(lambda m: m["channel"] == "user" and "fills" in m["data"]))["data"]["fills"]
            assert [(f["tid"], f["oid"], f["sz"]) for f in user_fills] == [(f["tid"], f["oid"], f["sz"]) for f in pushed]

            final = await orders.until(lambda m: any(u["status"] == "filled" for u in m["data"]))
            update = next(u for u in final["data"] if u["status"] == "filled")
            assert update["order"]["oid"] == oid and dec(update["order"]["origSz"]) == qty
            assert dec(update["order"]["sz"]) == 0

            # The stranger's subscription got its (empty) snapshot and nothing of our account.
            stranger_frames = [others.q.get_nowait() for _ in range(others.q.qsize())]
            assert stranger_frames and all(m["data"]["user"] == stranger and m["data"]["fills"] == []
                                           for m in stranger_frames)
        finally:
            if info.ws_manager is not None:
                await asyncio.to_thread(info.disconnect_websocket)


# ------------------------------------------------------------------------------------------ Binance
def binance_client(r: Rig, secret: str = SIM_SECRET, key: str = SIM_API_KEY) -> Any:
    from binance_common.configuration import ConfigurationRestAPI, ConfigurationWebSocketStreams
    from binance_sdk_derivatives_trading_usds_futures.derivatives_trading_usds_futures import (
        DerivativesTradingUsdsFutures,
    )

    return DerivativesTradingUsdsFutures(
        config_rest_api=ConfigurationRestAPI(api_key=key, api_secret=secret, base_path=r.url("binance"),
                                             timeout=3000, retries=0),
        config_ws_streams=ConfigurationWebSocketStreams(stream_url=r.url("binance", "ws")),
    )


async def test_binance_sdk_user_data_stream_pushes_trade_lite_and_order_trade_updates() -> None:
    from binance_sdk_derivatives_trading_usds_futures.rest_api.models import (
        NewOrderSideEnum, NewOrderTimeInForceEnum, NewOrderTypeEnum,
    )

    async with rig() as r:
        client = binance_client(r)
        listen_key = (await asyncio.to_thread(client.rest_api.start_user_data_stream)).data().listen_key
        streams = client.websocket_streams
        connection = await streams.create_connection()
        try:
            events = Inbox()
            handle = await connection.user_data(listen_key)
            handle.on("message", events)
            # user_data() sends the SUBSCRIBE without awaiting its reply; wait for the reply (the SDK's own
            # pending-request futures) so the order below cannot overtake the subscription.
            private = next(c for c in streams.connections if c.url_path == "private")
            await asyncio.wait_for(asyncio.gather(*private.pending_request.values()), TIMEOUT)
            qty, px, levels = r.sweep("binance")
            placed = (await asyncio.to_thread(
                client.rest_api.new_order, symbol="BTCUSDT", side=NewOrderSideEnum.BUY, type=NewOrderTypeEnum.LIMIT,
                time_in_force=NewOrderTimeInForceEnum.IOC, quantity=float(qty), price=float(px))).data()
            order_id = placed.order_id

            def event(message: Any, kind: str) -> Any:
                """The SDK's parsed event (UserDataStreamEventsResponse.actual_instance) when of model `kind`."""
                inner = message.actual_instance
                return inner if type(inner).__name__ == kind else None

            new = await events.until(lambda m: event(m, "OrderTradeUpdate") is not None)
            assert new.actual_instance.o.x == "NEW" and new.actual_instance.o.i == order_id
            want = expected_fills(qty, levels)
            trades = []
            while len(trades) < len(want):
                m = await events.until(lambda m: (u := event(m, "OrderTradeUpdate")) is not None and u.o.x == "TRADE")
                trades.append(m.actual_instance.o)
            assert [(dec(t.L), dec(t.l)) for t in trades] == want
            assert all(t.i == order_id and t.s == "BTCUSDT" and t.S == "BUY" and t.N == "USDT" for t in trades)
            assert [t.X for t in trades] == ["PARTIALLY_FILLED"] * (len(want) - 1) + ["FILLED"]
            assert dec(trades[-1].z) == qty and len({t.t for t in trades}) == len(want)
            lite = [u for m in events.seen if (u := event(m, "TradeLite")) is not None]
            assert [(dec(t.L), dec(t.l)) for t in lite] == want and all(t.i == order_id for t in lite)
            account = await events.until(lambda m: (u := event(m, "AccountUpdate")) is not None
                                         and dec(u.a.P[0].pa) == qty)
            assert account.actual_instance.a.m == "ORDER"
        finally:
            await streams.close_connection(close_session=True)


async def test_binance_sdk_listen_key_refused_with_a_bad_api_key_and_an_unknown_key_gets_no_stream() -> None:
    """The user data stream's only credential is the API key (the listen key needs no signature)."""
    async with rig() as r:
        with pytest.raises(Exception, match="Invalid API-key"):  # -2015
            await asyncio.to_thread(binance_client(r, key="wrong-key").rest_api.start_user_data_stream)
        # A listen key the account does not have: the SUBSCRIBE is refused and no data comes.
        # The SDK does not await its SUBSCRIBE's reply: it logs the error reply (logging.error) and fails the
        # request's future; the log record is what a user sees.
        errors = Inbox()
        handler = logging.Handler(logging.ERROR)
        handler.emit = lambda record: errors(record.getMessage())  # type: ignore[method-assign]
        logging.getLogger().addHandler(handler)
        streams = binance_client(r).websocket_streams
        connection = await streams.create_connection()
        try:
            await connection.user_data("x" * 64)
            refused = await errors.until(lambda text: "Error received from server" in text)
            assert "unknown stream" in refused and "'code': 2" in refused
        finally:
            logging.getLogger().removeHandler(handler)
            await streams.close_connection(close_session=True)


# ---------------------------------------------------------------------------------------------- OKX
@asynccontextmanager
async def okx_tls(r: Rig, monkeypatch: pytest.MonkeyPatch):
    """The simulator's OKX app served over TLS as well, on another loopback port; yields its wss:// base.

    python-okx's WebSocketFactory always connects with an ssl context (certifi's roots plus the default
    verify paths), which websockets refuses for a ws:// URL: the library can only reach a wss:// endpoint.
    So the same aiohttp app (same routes, same SimExchange) gets a second TLS site with a throwaway CA,
    and SSL_CERT_FILE makes the default verify paths trust that CA: configuration, not a code change.
    """
    import ssl

    import trustme
    from aiohttp import web

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    runner = next(run for run in r.sim._runners if any(a[1] == r.sim.ports["okx"] for a in run.addresses))
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    with ca.cert_pem.tempfile() as ca_file:
        monkeypatch.setenv("SSL_CERT_FILE", ca_file)
        try:
            yield f"wss://127.0.0.1:{port}"
        finally:
            await site.stop()


async def okx_ws(url: str, secret: str = SIM_SECRET) -> Any:
    from okx.websocket.WsPrivateAsync import WsPrivateAsync

    ws = WsPrivateAsync(apiKey=SIM_API_KEY, passphrase=SIM_PASSPHRASE, secretKey=secret, url=url + "/ws/v5/private")
    await ws.start()
    assert ws.websocket is not None, "python-okx could not connect"
    return ws


def okx_message(raw: str) -> Any:
    return raw if raw == "pong" else json.loads(raw)


async def test_okx_python_okx_logs_in_and_receives_orders_pushes(monkeypatch: pytest.MonkeyPatch) -> None:
    from okx.Trade import TradeAPI

    async with rig() as r, okx_tls(r, monkeypatch) as wss:
        inbox = Inbox()
        ws = await okx_ws(wss)
        try:
            args = [{"channel": "orders", "instType": "SWAP"}, {"channel": "positions", "instType": "SWAP"}]
            # python-okx's documented flow: subscribe() logs in, waits 5 s, then subscribes.
            await ws.subscribe(args, callback=lambda raw: inbox(okx_message(raw)))
            login = await inbox.until(lambda m: m.get("event") in ("login", "error"))
            assert login["event"] == "login" and login["code"] == "0", login
            await inbox.until(lambda m: m.get("event") == "subscribe" and m["arg"]["channel"] == "orders")
            await inbox.until(lambda m: m.get("event") == "subscribe" and m["arg"]["channel"] == "positions")

            # flag="0": live trading (python-okx sends x-simulated-trading: 0); domain = the simulator.
            trade = TradeAPI(SIM_API_KEY, SIM_SECRET, SIM_PASSPHRASE, flag="0", domain=r.url("okx"))
            qty, px, levels = r.sweep("okx")
            placed = await asyncio.to_thread(trade.place_order, instId="BTC-USDT-SWAP", tdMode="cross", side="buy",
                                             ordType="ioc", sz=str(qty), px=str(px), clOrdId="official1")
            assert placed["code"] == "0", placed
            ord_id = placed["data"][0]["ordId"]

            want = expected_fills(qty, levels)
            pushes = []
            while len(pushes) < len(want):
                m = await inbox.until(lambda m: m.get("arg", {}).get("channel") == "orders" and "data" in m
                                      and m["data"][0]["tradeId"] != "")
                pushes.append(m["data"][0])
            assert [(dec(p["fillPx"]), dec(p["fillSz"])) for p in pushes] == want
            assert all(p["ordId"] == ord_id and p["clOrdId"] == "official1" and p["instId"] == "BTC-USDT-SWAP"
                       for p in pushes)
            assert pushes[-1]["state"] == "filled" and dec(pushes[-1]["accFillSz"]) == qty
            live = [m["data"][0] for m in inbox.seen
                    if m.get("arg", {}).get("channel") == "orders" and "data" in m and m["data"][0]["tradeId"] == ""]
            assert [p["state"] for p in live] == ["live"] and live[0]["ordId"] == ord_id
            position = await inbox.until(lambda m: m.get("arg", {}).get("channel") == "positions" and m["data"])
            assert dec(position["data"][0]["pos"]) == qty and position["data"][0]["instId"] == "BTC-USDT-SWAP"
            await asyncio.to_thread(trade.close)
        finally:
            await ws.stop()


async def test_okx_python_okx_login_with_a_bad_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    async with rig() as r, okx_tls(r, monkeypatch) as wss:
        inbox = Inbox()
        ws = await okx_ws(wss, secret="wrong-secret")
        try:
            ws.callback = lambda raw: inbox(okx_message(raw))  # what subscribe() sets before it logs in
            await ws.login()
            refused = await inbox.until(lambda m: m.get("event") in ("login", "error"))
            assert refused["event"] == "error" and refused["code"] == "60007", refused  # invalid sign
            await ws.send("subscribe", [{"channel": "orders", "instType": "SWAP"}])
            assert (await inbox.until(lambda m: m.get("event") == "error"))["code"] == "60011"  # not logged in
        finally:
            await ws.stop()


async def test_okx_python_okx_websocket_cannot_use_a_plain_ws_url() -> None:
    """The evidence for the TLS site above: python-okx passes ssl= for every URL, websockets refuses ws://."""
    from okx.websocket.WsPrivateAsync import WsPrivateAsync

    async with rig() as r:
        ws = WsPrivateAsync(apiKey=SIM_API_KEY, passphrase=SIM_PASSPHRASE, secretKey=SIM_SECRET,
                            url=r.url("okx", "ws", "/ws/v5/private"))
        await ws.connect()
        assert ws.websocket is None  # WebSocketFactory logged "ssl argument is incompatible with a ws:// URI"


# -------------------------------------------------------------------------------------------- Bybit
def test_pybit_cannot_be_pointed_at_a_loopback_base_url() -> None:
    """pybit has no base-URL parameter: it formats https://{SUBDOMAIN}.{DOMAIN}.{TLD} (REST) and
    wss://{SUBDOMAIN}.{DOMAIN}.{TLD}/v5/private itself, SUBDOMAIN being api / stream (-testnet, -demo).
    `domain` and `tld` only change the registered name under that fixed prefix, always TLS on port 443,
    so no configuration reaches 127.0.0.1:<port>; the simulator's Bybit private stream is covered by
    tests/integration/sim/test_private_streams.py (websockets + ccxt) instead. Pinned so that a pybit
    release with a base-URL option shows up here."""
    from pybit import unified_trading
    from pybit._http_manager import HTTP_URL

    assert HTTP_URL == "https://{SUBDOMAIN}.{DOMAIN}.{TLD}"
    assert unified_trading.PRIVATE_WSS == "wss://{SUBDOMAIN}.{DOMAIN}.{TLD}/v5/private"
    http = unified_trading.HTTP(testnet=False, domain="127.0.0", tld="1", api_key=SIM_API_KEY,
                                api_secret=SIM_SECRET)
    assert http.endpoint == "https://api.127.0.0.1"  # a DNS name under "api.", not the loopback address


# -------------------------------------------------------------------------------------- test-only deps
def test_perpbot_imports_none_of_the_official_client_libraries() -> None:
    """The SDKs are test dependencies only: importing every perpbot and strategies module loads none."""
    import subprocess
    import sys

    code = (
        "import importlib, pkgutil, sys\n"
        "import perpbot, strategies\n"
        "for pkg in (perpbot, strategies):\n"
        "    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "        importlib.import_module(m.name)\n"
        "sdks = ('okx', 'pybit', 'hyperliquid', 'binance_common', 'binance_sdk_derivatives_trading_usds_futures',\n"
        "        'eth_account', 'websocket', 'httpx')\n"
        "print(sorted(n for n in sys.modules if n.split('.')[0] in sdks))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


async def test_binance_listen_key_is_a_stream_on_every_private_path() -> None:
    """The simulator side of the SDK's flow, with a plain client: /private/stream?streams=<key> (wrapped),
    bare /private/ws + SUBSCRIBE (raw), LIST_SUBSCRIPTIONS, UNSUBSCRIBE, and an unknown key's handshake."""
    import aiohttp

    from perpbot.sim.trading.clients import make_ccxt_client

    async with rig() as r, aiohttp.ClientSession() as http:
        async with http.post(r.url("binance", path="/fapi/v1/listenKey"), headers={"X-MBX-APIKEY": SIM_API_KEY}) as resp:
            key = (await resp.json())["listenKey"]
        async with http.ws_connect(r.url("binance", "ws", f"/private/stream?streams={key}")) as wrapped, \
                http.ws_connect(r.url("binance", "ws", "/private/ws")) as raw:
            await raw.send_json({"method": "SUBSCRIBE", "params": [key], "id": 7})
            assert await raw.receive_json(timeout=TIMEOUT) == {"result": None, "id": 7}
            await raw.send_json({"method": "LIST_SUBSCRIPTIONS", "id": 8})
            assert await raw.receive_json(timeout=TIMEOUT) == {"result": [key], "id": 8}
            client = make_ccxt_client("binance", r.url("binance"), timeout=3000)
            try:
                await client.load_markets()
                qty, px, _levels = r.sweep("binance", levels=1)
                order = await client.create_order("BTC/USDT:USDT", "limit", "buy", float(qty), float(px),
                                                  {"timeInForce": "IOC"})
            finally:
                await client.close()
            while (envelope := await wrapped.receive_json(timeout=TIMEOUT))["data"]["e"] != "TRADE_LITE":
                assert envelope["stream"] == key
            assert envelope["stream"] == key and str(envelope["data"]["i"]) == order["id"]
            while (pushed := await raw.receive_json(timeout=TIMEOUT))["e"] != "TRADE_LITE":
                pass
            assert pushed == envelope["data"]  # the same event, raw on /private/ws
            await raw.send_json({"method": "UNSUBSCRIBE", "params": [key], "id": 9})
            while (reply := await raw.receive_json(timeout=TIMEOUT)).get("id") != 9:
                assert "e" in reply  # the rest of the order's pushes, then the ack
            assert reply == {"result": None, "id": 9}
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(r.url("binance", "ws", f"/private/stream?streams={'y' * 64}"))
        assert refused.value.status == 400
