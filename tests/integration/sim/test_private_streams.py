"""The simulator's private streams, observed by plain `websockets` clients while the real ccxt classes trade
over REST on loopback: logins (bad refused, good accepted), order and fill pushes that agree with what REST
reports (ids, quantities, prices, fee signs, final status), Binance listen-key expiry, and every private fault.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
import websockets
from websockets.asyncio.client import ClientConnection, connect

from perpbot.settings import Settings
from perpbot.sim.private.common import bybit_sign, num, okx_sign
from perpbot.sim.server import Simulator
from perpbot.sim.trading.clients import SIM_WALLET, make_ccxt_client

VENUES = ("okx", "binance", "bybit", "hyperliquid")
NATIVE = {"okx": "BTC-USDT-SWAP", "binance": "BTCUSDT", "bybit": "BTCUSDT", "hyperliquid": "BTC"}
UNIFIED = {"okx": "BTC/USDT:USDT", "binance": "BTC/USDT:USDT", "bybit": "BTC/USDT:USDT",
           "hyperliquid": "BTC/USDC:USDC"}
TIMEOUT = 5.0


def dec(value: Any) -> Decimal:
    return Decimal(str(value))


class Stream:
    """A websockets client that keeps every JSON frame it read and waits for frames with a timeout."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.seen: list[Any] = []

    async def send(self, obj: Any) -> None:
        await self.ws.send(obj if isinstance(obj, str) else json.dumps(obj))

    async def next(self, timeout: float = TIMEOUT) -> Any:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        frame = raw if raw in ("pong",) else json.loads(raw)
        self.seen.append(frame)
        return frame

    async def until(self, pred: Callable[[Any], bool], timeout: float = TIMEOUT) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            frame = await self.next(max(0.01, deadline - asyncio.get_running_loop().time()))
            if pred(frame):
                return frame

    async def collect(self, pred: Callable[[Any], bool], count: int) -> list[Any]:
        return [await self.until(pred) for _ in range(count)]


class Rig:
    def __init__(self, sim: Simulator, http: aiohttp.ClientSession) -> None:
        self.sim = sim
        self.http = http
        self.clients: dict[str, Any] = {}

    def url(self, venue: str, path: str, scheme: str = "ws") -> str:
        return f"{scheme}://127.0.0.1:{self.sim.ports[venue]}{path}"

    async def client(self, venue: str) -> Any:
        if venue not in self.clients:
            client = make_ccxt_client(venue, self.url(venue, "", "http"), timeout=3000)
            await client.load_markets()
            self.clients[venue] = client
        return self.clients[venue]

    async def admin(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        async with self.http.request(method, f"http://127.0.0.1:{self.sim.admin_port}{path}", json=body) as resp:
            assert resp.status == status, await resp.text()
            return await resp.json()

    async def fault(self, **body: Any) -> None:
        await self.admin("POST", "/admin/faults", body, 201)

    async def clear_faults(self) -> None:
        await self.admin("DELETE", "/admin/faults")

    async def fired(self) -> dict[str, dict[str, int]]:
        return (await self.admin("GET", "/admin/stats"))["faults_fired"]

    async def sweep_buy(self, venue: str, levels: int = 2) -> dict[str, Any]:
        """An IOC buy through the first `levels` ask levels (one fill per level), placed with ccxt."""
        inst = self.sim.market.instrument(venue, NATIVE[venue])
        _bids, asks = self.sim.market.levels(venue, NATIVE[venue])
        # The smallest order the venue takes (lot, minimum size and notional), through the first levels.
        least = max(inst.lot * 2, inst.min_qty, inst.min_notional * 2 / (asks[0][0] * inst.contract_size))
        least = (least / inst.lot).to_integral_value(rounding="ROUND_CEILING") * inst.lot
        qty = sum((q for _, q in asks[: levels - 1]), Decimal(0)) + least
        self.sim.exchanges[venue].set_leverage(NATIVE[venue], Decimal(10))  # room for a sweep of the book
        return await (await self.client(venue)).create_order(UNIFIED[venue], "limit", "buy", float(qty),
                                                             float(asks[levels - 1][0]), {"timeInForce": "IOC"})

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()


@asynccontextmanager
async def rig():
    settings = Settings(sim={"ports": {v: 0 for v in VENUES}, "admin_port": 0, "tick_interval_s": 0.02, "seed": 5})
    async with Simulator(settings, autotick=False) as sim, aiohttp.ClientSession() as http:
        r = Rig(sim, http)
        try:
            yield r
        finally:
            await r.close()


@asynccontextmanager
async def stream(url: str):
    async with connect(url, open_timeout=TIMEOUT) as ws:
        yield Stream(ws)


# ------------------------------------------------------------------------------------------- logins
def okx_login(key: str = "sim-key", secret: str = "sim-secret", passphrase: str = "sim-pass") -> dict[str, Any]:
    stamp = str(int(time.time()))
    return {"op": "login", "args": [{"apiKey": key, "passphrase": passphrase, "timestamp": stamp,
                                     "sign": okx_sign(secret, stamp)}]}


def bybit_auth(key: str = "sim-key", secret: str = "sim-secret", ahead_ms: int = 10_000) -> dict[str, Any]:
    expires = int(time.time() * 1000) + ahead_ms
    return {"op": "auth", "args": [key, expires, bybit_sign(secret, expires)], "req_id": "a1"}


@asynccontextmanager
async def okx_private(r: Rig):
    async with stream(r.url("okx", "/ws/v5/private")) as ws:
        await ws.send(okx_login())
        assert (await ws.next())["event"] == "login"
        for arg in ({"channel": "orders", "instType": "SWAP"}, {"channel": "positions", "instType": "SWAP"},
                    {"channel": "account"}):
            await ws.send({"op": "subscribe", "args": [arg]})
            await ws.until(lambda f, a=arg: f.get("event") == "subscribe" and f["arg"] == a)
        yield ws


@asynccontextmanager
async def bybit_private(r: Rig):
    async with stream(r.url("bybit", "/v5/private")) as ws:
        await ws.send(bybit_auth())
        assert (await ws.next())["success"] is True
        await ws.send({"op": "subscribe", "args": ["order", "execution", "position", "wallet"]})
        assert (await ws.next())["success"] is True
        yield ws


async def agrees_with_rest(r: Rig, venue: str, order: dict[str, Any], pushed: list[tuple]) -> dict[str, Any]:
    """Pushed fills (trade id, order id, qty, price, fee as a cost) == REST's trades; returns REST's order."""
    client = r.clients[venue]
    trades = {str(t["id"]): t for t in await client.fetch_my_trades(UNIFIED[venue])}
    assert {str(p[0]) for p in pushed} == set(trades) and len(trades) == len(pushed) == 2
    for trade_id, order_id, qty, price, fee in pushed:
        trade = trades[str(trade_id)]
        assert str(order_id) == order["id"] == trade["order"]
        assert dec(qty) == dec(trade["amount"]) and dec(price) == dec(trade["price"])
        assert dec(fee) > 0 and dec(fee) == dec(trade["fee"]["cost"])
    return await client.fetch_order(order["id"], UNIFIED[venue])


async def test_okx_login_is_verified_and_orders_push_every_fill_as_rest_reports_it() -> None:
    async with rig() as r:
        async with stream(r.url("okx", "/ws/v5/private")) as ws:
            await ws.send({"op": "subscribe", "args": [{"channel": "orders", "instType": "SWAP"}]})
            assert (await ws.next())["code"] == "60011"  # subscribe before login
            for bad, code in (({"secret": "x"}, "60007"), ({"passphrase": "x"}, "60024"), ({"key": "x"}, "60005")):
                await ws.send(okx_login(**bad))
                refused = await ws.next()
                assert refused["event"] == "error" and refused["code"] == code
            await ws.send("ping")
            assert await ws.next() == "pong"
            await ws.send(okx_login())
            login = await ws.next()
            assert login["event"] == "login" and login["code"] == "0" and login["connId"]
    async with rig() as r, okx_private(r) as ws:
        order = await r.sweep_buy("okx")
        pushes = await ws.collect(lambda f: f.get("arg", {}).get("channel") == "orders", 3)
        assert pushes[0]["data"][0]["state"] == "live" and pushes[0]["arg"] == {"channel": "orders", "instType": "SWAP"}
        fills = [p["data"][0] for p in pushes[1:]]
        fetched = await agrees_with_rest(r, "okx", order, [
            (f["tradeId"], f["ordId"], f["fillSz"], f["fillPx"], -dec(f["fillFee"])) for f in fills])
        assert all(f["fillFeeCcy"] == "USDT" and f["execType"] == "T" for f in fills)
        assert fills[-1]["state"] == "filled" and fetched["status"] == "closed"
        assert dec(fills[-1]["accFillSz"]) == dec(fetched["filled"])
        assert dec(fills[-1]["fee"]) == -dec(fetched["fee"]["cost"])
        position = await ws.until(lambda f: f.get("arg", {}).get("channel") == "positions" and f["data"])
        assert dec(position["data"][0]["pos"]) == dec(fetched["filled"])


async def test_bybit_auth_is_verified_and_execution_and_order_topics_agree_with_rest() -> None:
    async with rig() as r:
        async with stream(r.url("bybit", "/v5/private")) as ws:
            await ws.send({"op": "subscribe", "args": ["order"]})
            refused = await ws.next()
            assert refused["success"] is False and refused["op"] == "subscribe"
            await ws.send(bybit_auth(ahead_ms=-1000))
            assert (await ws.next()) | {"conn_id": ""} == {"success": False, "ret_msg": "Params Error", "op": "auth",
                                                            "conn_id": "", "req_id": "a1"}
            await ws.send(bybit_auth(secret="wrong"))
            assert (await ws.next())["success"] is False
            await ws.send({"op": "ping", "req_id": "p"})
            assert (await ws.next())["op"] == "pong"
    async with rig() as r, bybit_private(r) as ws:
        order = await r.sweep_buy("bybit")
        executions = [f["data"][0] for f in await ws.collect(lambda f: f.get("topic") == "execution", 2)]
        final = await ws.until(lambda f: f.get("topic") == "order" and f["data"][0]["orderStatus"] == "Filled")
        fetched = await agrees_with_rest(r, "bybit", order, [
            (e["execId"], e["orderId"], e["execQty"], e["execPrice"], e["execFee"]) for e in executions])
        assert fetched["status"] == "closed" and dec(final["data"][0]["cumExecQty"]) == dec(fetched["filled"])
        wallet = await ws.until(lambda f: f.get("topic") == "wallet")
        assert dec(wallet["data"][0]["coin"][0]["walletBalance"]) == r.sim.exchanges["bybit"].account.wallet
        # match_on_tick: a resting order fills as the market moves through it, pushed as a maker execution.
        await r.admin("POST", "/admin/private", {"match_on_tick": True})
        bid = r.sim.market.levels("bybit", NATIVE["bybit"])[0][0][0]
        resting = await r.clients["bybit"].create_order(UNIFIED["bybit"], "limit", "buy", 0.002, float(bid))
        r.sim.market.apply_jump("bybit", NATIVE["bybit"], -100.0)
        await r.sim.advance(1)
        maker = await ws.until(lambda f: f.get("topic") == "execution" and f["data"][0]["orderId"] == resting["id"])
        assert maker["data"][0]["isMaker"] is True and maker["data"][0]["execPrice"] == num(bid)


async def listen_key(r: Rig, method: str = "POST", headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with r.http.request(method, r.url("binance", "/fapi/v1/listenKey", "http"),
                              headers={"X-MBX-APIKEY": "sim-key"} if headers is None else headers) as resp:
        return resp.status, await resp.json()


async def test_binance_listen_key_stream_pushes_order_trade_and_account_updates_as_rest_reports() -> None:
    async with rig() as r:
        assert (await listen_key(r, headers={}))[1]["code"] == -2014
        status, body = await listen_key(r)
        assert status == 200 and len(key := body["listenKey"]) == 64
        assert (await listen_key(r))[1]["listenKey"] == key  # the active key again
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            async with connect(r.url("binance", "/ws/" + "x" * 64)):
                pass
        assert refused.value.response.status_code == 400
        assert json.loads(refused.value.response.body)["code"] == -1125
        async with stream(r.url("binance", f"/private/ws/{key}")) as ws:
            order = await r.sweep_buy("binance")
            lites = await ws.collect(lambda f: f.get("e") == "TRADE_LITE", 2)
            final = await ws.until(lambda f: f.get("e") == "ORDER_TRADE_UPDATE" and f["o"]["X"] == "FILLED")
            updates = [f["o"] for f in ws.seen if f.get("e") == "ORDER_TRADE_UPDATE"]
            assert updates[0]["x"] == "NEW" and [u["x"] for u in updates[1:]] == ["TRADE", "TRADE"]
            account = await ws.until(lambda f: f.get("e") == "ACCOUNT_UPDATE")
            assert [lite["t"] for lite in lites] == [u["t"] for u in updates[1:]]
            fetched = await agrees_with_rest(r, "binance", order,
                                             [(u["t"], u["i"], u["l"], u["L"], u["n"]) for u in updates[1:]])
            assert fetched["status"] == "closed" and dec(final["o"]["z"]) == dec(fetched["filled"])
            assert account["a"]["m"] == "ORDER" and dec(account["a"]["P"][0]["pa"]) == dec(fetched["filled"])

            # Funding settles: ACCOUNT_UPDATE m=FUNDING_FEE with the balance change only.
            exchange = r.sim.exchanges["binance"]
            exchange.settle_funding(now_ms=exchange.now_ms() + 9 * 3_600_000)
            funding = await ws.until(lambda f: f.get("e") == "ACCOUNT_UPDATE" and f["a"]["m"] == "FUNDING_FEE")
            assert "P" not in funding["a"] and dec(funding["a"]["B"][0]["bc"]) == exchange.account.funding[0].amount


async def test_binance_listen_key_expires_without_keepalive_and_is_unknown_after() -> None:
    async with rig() as r:
        key = (await listen_key(r))[1]["listenKey"]
        async with stream(r.url("binance", f"/ws/{key}")) as ws:
            assert (await listen_key(r, "PUT"))[1] == {"listenKey": key}  # keepalive
            await r.admin("POST", "/admin/private", {"venue": "binance", "listen_key_ttl_s": 0.2})
            expired = await ws.until(lambda f: f.get("e") == "listenKeyExpired")
            assert expired["listenKey"] == key
        status, body = await listen_key(r, "PUT")
        assert status == 400 and body == {"code": -1125, "msg": "This listenKey does not exist."}
        # listenkey_expire fault: a fresh key expires at once.
        await r.admin("POST", "/admin/private", {"venue": "binance", "listen_key_ttl_s": 3600})
        key2 = (await listen_key(r))[1]["listenKey"]
        assert key2 != key
        async with stream(r.url("binance", f"/ws/{key2}")) as ws:
            await r.fault(kind="listenkey_expire", venue="binance")
            assert (await ws.until(lambda f: f.get("e") == "listenKeyExpired"))["listenKey"] == key2
        assert (await listen_key(r, "PUT"))[1]["code"] == -1125
        assert (await r.fired())["binance"]["listenkey_expire"] == 1


async def test_hyperliquid_user_subscriptions_share_the_public_socket_and_agree_with_rest() -> None:
    async with rig() as r, stream(r.url("hyperliquid", "/ws")) as ws:
        await ws.send({"method": "subscribe", "subscription": {"type": "l2Book", "coin": "BTC"}})
        await ws.until(lambda f: f.get("channel") == "l2Book")
        for kind in ("orderUpdates", "userEvents", "userFills", "userFundings", "clearinghouseState"):
            await ws.send({"method": "subscribe", "subscription": {"type": kind, "user": SIM_WALLET}})
            ack = await ws.until(lambda f: f.get("channel") == "subscriptionResponse")
            assert ack["data"]["subscription"] == {"type": kind, "user": SIM_WALLET}
        assert next(f for f in ws.seen if f.get("channel") == "userFills")["data"] == {
            "isSnapshot": True, "user": SIM_WALLET, "fills": []}
        await ws.send({"method": "subscribe", "subscription": {"type": "orderUpdates"}})
        assert (await ws.until(lambda f: f.get("channel") == "error"))["data"].startswith("Invalid subscription")

        order = await r.sweep_buy("hyperliquid")
        fills = [f["data"]["fills"][0] for f in await ws.collect(lambda f: f.get("channel") == "userFills", 2)]
        final = await ws.until(lambda f: f.get("channel") == "orderUpdates" and f["data"][0]["status"] == "filled")
        events = [f for f in ws.seen if f.get("channel") == "user"]
        assert [e["data"]["fills"][0] for e in events] == fills
        fetched = await agrees_with_rest(r, "hyperliquid", order,
                                         [(f["tid"], f["oid"], f["sz"], f["px"], f["fee"]) for f in fills])
        assert fetched["status"] == "closed" and str(final["data"][0]["order"]["oid"]) == order["id"]
        state = await ws.until(lambda f: f.get("channel") == "clearinghouseState"
                               and f["data"]["clearinghouseState"]["assetPositions"])
        position = state["data"]["clearinghouseState"]["assetPositions"][0]["position"]
        assert dec(position["szi"]) == dec(fetched["filled"])
        exchange = r.sim.exchanges["hyperliquid"]
        exchange.settle_funding(now_ms=exchange.now_ms() + 2 * 3_600_000)
        funding = await ws.until(lambda f: f.get("channel") == "userFundings")
        assert dec(funding["data"]["fundings"][0]["usdc"]) == exchange.account.funding[0].amount


# ------------------------------------------------------------------------------------------- faults
async def test_private_drop_closes_the_private_socket() -> None:
    async with rig() as r, okx_private(r) as ws:
        await r.fault(kind="private_drop", venue="okx")
        await r.sweep_buy("okx", levels=1)
        with pytest.raises(websockets.exceptions.ConnectionClosed):
            await ws.until(lambda f: False)
        assert (await r.fired())["okx"]["private_drop"] == 1


async def test_private_stall_swallows_pushes_and_keeps_the_socket_open() -> None:
    async with rig() as r, bybit_private(r) as ws:
        await r.fault(kind="private_stall", venue="bybit", duration_s=30)
        stalled = await r.sweep_buy("bybit", levels=1)
        await r.clear_faults()
        after = await r.sweep_buy("bybit", levels=1)
        first = await ws.until(lambda f: f.get("topic") in ("order", "execution"))
        assert first["data"][0]["orderId"] == after["id"] != stalled["id"]  # still open; nothing of the stalled
        assert (await r.fired())["bybit"]["private_stall"] >= 1


async def test_fill_duplicate_pushes_the_fill_twice() -> None:
    async with rig() as r, bybit_private(r) as ws:
        await r.fault(kind="fill_duplicate", venue="bybit")
        await r.sweep_buy("bybit", levels=1)
        first, second = await ws.collect(lambda f: f.get("topic") == "execution", 2)
        assert first["data"] == second["data"]
        assert (await r.fired())["bybit"]["fill_duplicate"] == 1


async def test_fill_out_of_order_pushes_the_final_state_before_the_fill() -> None:
    async with rig() as r, bybit_private(r) as ws, okx_private(r) as okx:
        await r.fault(kind="fill_out_of_order", venue="bybit")
        await r.fault(kind="fill_out_of_order", venue="okx")
        await r.sweep_buy("bybit", levels=1)
        await ws.until(lambda f: f.get("topic") == "execution")
        topics = [f["topic"] for f in ws.seen if f.get("topic") in ("order", "execution")]
        statuses = [f["data"][0]["orderStatus"] for f in ws.seen if f.get("topic") == "order"]
        assert topics == ["order", "order", "execution"] and statuses == ["New", "Filled"]
        await r.sweep_buy("okx", levels=1)
        await okx.until(lambda f: f.get("arg", {}).get("channel") == "orders" and f["data"][0]["tradeId"])
        pushes = [f["data"][0] for f in okx.seen if f.get("arg", {}).get("channel") == "orders" and "data" in f]
        assert [(p["state"], bool(p["tradeId"])) for p in pushes] == [("live", False), ("filled", False),
                                                                      ("filled", True)]
        assert {(await r.fired())[v]["fill_out_of_order"] for v in ("bybit", "okx")} == {1}


async def test_stream_lag_lets_rest_be_ahead_of_the_stream() -> None:
    async with rig() as r, bybit_private(r) as ws:
        await r.fault(kind="stream_lag", venue="bybit", count=10, params={"ms": 400})
        loop = asyncio.get_running_loop()
        started = loop.time()
        order = await r.sweep_buy("bybit", levels=1)
        fetched = await r.clients["bybit"].fetch_order(order["id"], UNIFIED["bybit"])
        rest_at = loop.time()
        assert fetched["status"] == "closed"
        await ws.until(lambda f: f.get("topic") == "execution")
        assert loop.time() - started >= 0.4 and loop.time() > rest_at
        assert (await r.fired())["bybit"]["stream_lag"] >= 1


@pytest.mark.parametrize("venue", VENUES)
async def test_rest_lag_hides_the_newest_fills_from_rest_while_the_engine_has_them(venue: str) -> None:
    async with rig() as r:
        await r.fault(kind="rest_lag", venue=venue, duration_s=60, params={"ms": 60_000})
        order = await r.sweep_buy(venue, levels=1)
        client = r.clients[venue]
        lagged = await client.fetch_order(order["id"], UNIFIED[venue])
        assert dec(lagged["filled"] or 0) == 0 and lagged["status"] == "open"
        assert await client.fetch_my_trades(UNIFIED[venue]) == []
        assert r.sim.exchanges[venue].account.fills  # the engine has them
        await r.clear_faults()
        fetched = await client.fetch_order(order["id"], UNIFIED[venue])
        assert fetched["status"] == "closed" and len(await client.fetch_my_trades(UNIFIED[venue])) == 1
        assert (await r.fired())[venue]["rest_lag"] >= 2
