"""The simulator's internal transfers (a venue's funding/spot wallet <-> its futures trading wallet), driven over
loopback by the real ccxt clients (transfer() for OKX, Binance and Hyperliquid, Bybit's implicit
privatePostV5AssetTransferInterTransfer) and by raw requests for the shapes ccxt never sends: the amount moves
exactly, refusals carry the venue's code and move nothing, Bybit's repeated transferId moves once, the private
streams push the new balance, the admin API sets and shows the funding wallets, and the gate's faults apply.
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import aiohttp
import ccxt
import pytest

from perpbot.settings import Settings
from perpbot.sim.private.common import bybit_sign, okx_sign
from perpbot.sim.server import Simulator
from perpbot.sim.trading.clients import SIM_WALLET, make_ccxt_client
from perpbot.sim.trading.exchange import START_BALANCE
from perpbot.sim.trading.transfers import HL_INSUFFICIENT

VENUES = ("okx", "binance", "bybit", "hyperliquid")
QUOTE = {"okx": "USDT", "binance": "USDT", "bybit": "USDT", "hyperliquid": "USDC"}
TIMEOUT = 5.0
UUID_1 = "42c0cfb0-6bca-c242-bc76-4e6df6cbcb16"


def dec(value: Any) -> Decimal:
    return Decimal(str(value))


class Rig:
    def __init__(self, sim: Simulator, http: aiohttp.ClientSession) -> None:
        self.sim = sim
        self.http = http
        self.clients: dict[str, Any] = {}

    def url(self, venue: str, path: str, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.sim.ports[venue]}{path}"

    async def client(self, venue: str) -> Any:
        if venue not in self.clients:
            client = make_ccxt_client(venue, self.url(venue, ""), timeout=3000)
            await client.load_markets()
            self.clients[venue] = client
        return self.clients[venue]

    async def admin(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        async with self.http.request(method, f"http://127.0.0.1:{self.sim.admin_port}{path}", json=body) as resp:
            assert resp.status == status, await resp.text()
            return await resp.json()

    async def fund(self, venue: str, amount: str) -> None:
        answer = await self.admin("POST", "/admin/funding", {"venue": venue, "currency": QUOTE[venue],
                                                              "amount": amount})
        assert dec(answer["funding"]) == dec(amount)

    def wallets(self, venue: str) -> tuple[Decimal, Decimal]:
        """(trading wallet, funding wallet) of `venue` in its quote currency, as the engine holds them."""
        account = self.sim.exchanges[venue].account
        return account.balances[QUOTE[venue]], account.funding_wallet.get(QUOTE[venue], Decimal(0))

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


class Stream:
    """A private socket that keeps reading JSON frames and waits (with a timeout) for one that matches."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def send(self, obj: Any) -> None:
        await self.ws.send_str(json.dumps(obj))

    async def until(self, pred: Any, timeout: float = TIMEOUT) -> Any:
        async def read() -> Any:
            while True:
                msg = await self.ws.receive()
                assert msg.type == aiohttp.WSMsgType.TEXT, msg
                frame = json.loads(msg.data) if msg.data != "pong" else msg.data
                if pred(frame):
                    return frame
        return await asyncio.wait_for(read(), timeout)


@asynccontextmanager
async def ws(r: Rig, venue: str, path: str):
    async with r.http.ws_connect(r.url(venue, path, "ws")) as sock:
        yield Stream(sock)


async def post_json(r: Rig, venue: str, path: str, body: Any) -> tuple[int, Any]:
    async with r.http.post(r.url(venue, path), json=body) as resp:
        text = await resp.text()
        return resp.status, (json.loads(text) if resp.content_type == "application/json" else text)


# ------------------------------------------------------------------------------------------------ OKX
async def test_okx_transfer_funding_to_trading_moves_exactly_pushes_the_account_and_refuses_with_okx_codes() -> None:
    async with rig() as r:
        await r.fund("okx", "1000")
        okx = await r.client("okx")
        async with ws(r, "okx", "/ws/v5/private") as stream:
            stamp = str(int(time.time()))
            await stream.send({"op": "login", "args": [{"apiKey": "sim-key", "passphrase": "sim-pass",
                                                       "timestamp": stamp, "sign": okx_sign("sim-secret", stamp)}]})
            await stream.until(lambda f: f.get("event") == "login")
            await stream.send({"op": "subscribe", "args": [{"channel": "account"}]})
            await stream.until(lambda f: f.get("arg", {}).get("channel") == "account" and "data" in f)  # snapshot

            done = await okx.transfer("USDT", 100.25, "funding", "trading")
            assert done["info"]["from"] == "6" and done["info"]["to"] == "18" and done["info"]["amt"] == "100.25"
            assert done["id"] and done["fromAccount"] == "funding" and done["toAccount"] == "trading"
            assert r.wallets("okx") == (START_BALANCE + Decimal("100.25"), Decimal("899.75"))
            push = await stream.until(lambda f: f.get("arg", {}).get("channel") == "account" and "data" in f)
            assert dec(push["data"][0]["details"][0]["cashBal"]) == START_BALANCE + Decimal("100.25")

            back = await okx.transfer("USDT", 0.25, "trading", "funding")
            assert back["info"]["from"] == "18" and back["info"]["to"] == "6"
            assert r.wallets("okx") == (START_BALANCE + 100, Decimal(900))
            push = await stream.until(lambda f: f.get("arg", {}).get("channel") == "account" and "data" in f)
            assert dec(push["data"][0]["details"][0]["cashBal"]) == START_BALANCE + 100

        with pytest.raises(ccxt.InsufficientFunds, match="58350"):
            await okx.transfer("USDT", 900.01, "funding", "trading")
        with pytest.raises(ccxt.BadRequest, match="Parameter to error"):
            await okx.privatePostAssetTransfer({"ccy": "USDT", "amt": "1", "type": "0", "from": "6", "to": "6"})
        with pytest.raises(ccxt.BadRequest, match="Parameter amt error"):
            await okx.privatePostAssetTransfer({"ccy": "USDT", "amt": "abc", "type": "0", "from": "6", "to": "18"})
        assert r.wallets("okx") == (START_BALANCE + 100, Decimal(900))
        assert len(r.sim.exchanges["okx"].account.transfers) == 2


# ------------------------------------------------------------------------------------------------ Binance
async def test_binance_spot_to_futures_transfer_moves_exactly_pushes_deposit_and_refuses_minus_5013() -> None:
    async with rig() as r:
        await r.fund("binance", "250.5")
        binance = await r.client("binance")
        async with r.http.post(r.url("binance", "/fapi/v1/listenKey"), headers={"X-MBX-APIKEY": "sim-key"}) as resp:
            key = (await resp.json())["listenKey"]
        async with ws(r, "binance", f"/ws/{key}") as stream:
            done = await binance.transfer("USDT", 200.5, "spot", "swap")  # ccxt: type MAIN_UMFUTURE
            assert isinstance(done["info"]["tranId"], int) and done["id"] == str(done["info"]["tranId"])
            assert r.wallets("binance") == (START_BALANCE + Decimal("200.5"), Decimal(50))
            update = await stream.until(lambda f: f.get("e") == "ACCOUNT_UPDATE")
            assert update["a"]["m"] == "DEPOSIT" and update["a"]["P"] == []
            assert dec(update["a"]["B"][0]["bc"]) == Decimal("200.5")
            assert dec(update["a"]["B"][0]["wb"]) == START_BALANCE + Decimal("200.5")

            await binance.transfer("USDT", 0.5, "swap", "spot")  # UMFUTURE_MAIN
            update = await stream.until(lambda f: f.get("e") == "ACCOUNT_UPDATE")
            assert update["a"]["m"] == "WITHDRAW" and dec(update["a"]["B"][0]["bc"]) == Decimal("-0.5")
            assert r.wallets("binance") == (START_BALANCE + 200, Decimal("50.5"))

        # -5013 sits in ccxt's spot error table, which ccxt only applies on api.binance.com: on this host the
        # code comes back as ExchangeError carrying the venue's body.
        with pytest.raises(ccxt.ExchangeError, match="-5013"):
            await binance.transfer("USDT", 50.51, "spot", "swap")
        with pytest.raises(ccxt.ExchangeError, match="-5013"):
            await binance.transfer("USDT", float(START_BALANCE + 201), "swap", "spot")
        with pytest.raises(ccxt.BadRequest, match="'type'"):
            await binance.sapiPostAssetTransfer({"type": "MAIN_MARGIN", "asset": "USDT", "amount": "1"})
        with pytest.raises(ccxt.BadRequest, match="'amount'"):
            await binance.sapiPostAssetTransfer({"type": "MAIN_UMFUTURE", "asset": "USDT", "amount": "-1"})
        async with r.http.post(r.url("binance", "/sapi/v1/asset/transfer"),
                               data={"type": "MAIN_UMFUTURE", "asset": "USDT", "amount": "1"}) as resp:
            assert resp.status == 400 and (await resp.json())["code"] == -1102  # unsigned
        assert r.wallets("binance") == (START_BALANCE + 200, Decimal("50.5"))


async def test_a_transfer_out_never_takes_the_margin_in_use() -> None:
    async with rig() as r:
        binance = await r.client("binance")
        exchange = r.sim.exchanges["binance"]
        _bids, asks = r.sim.market.levels("binance", "BTCUSDT")
        exchange.set_leverage("BTCUSDT", Decimal(2))
        # A resting buy far below the book: margin in use, no fill, the wallet untouched.
        price = (asks[0][0] / 2).quantize(Decimal(1))
        await binance.create_order("BTC/USDT:USDT", "limit", "buy", 1, float(price))
        used = exchange.margin()["used"]
        assert used > 0
        free = START_BALANCE - used
        with pytest.raises(ccxt.ExchangeError, match="-5013"):
            await binance.transfer("USDT", float(free.quantize(Decimal("0.01")) + Decimal(1)), "swap", "spot")
        assert r.wallets("binance") == (START_BALANCE, Decimal(0))
        await binance.transfer("USDT", 1000, "swap", "spot")
        assert r.wallets("binance") == (START_BALANCE - 1000, Decimal(1000))


# ------------------------------------------------------------------------------------------------ Bybit
async def test_bybit_inter_transfer_moves_once_per_transfer_id_and_pushes_the_wallet() -> None:
    async with rig() as r:
        await r.fund("bybit", "300")
        bybit = await r.client("bybit")
        body = {"transferId": UUID_1, "coin": "USDT", "amount": "120.75", "fromAccountType": "FUND",
                "toAccountType": "UNIFIED"}
        async with ws(r, "bybit", "/v5/private") as stream:
            expires = int(time.time() * 1000) + 10_000
            await stream.send({"op": "auth", "args": ["sim-key", expires, bybit_sign("sim-secret", expires)]})
            assert (await stream.until(lambda f: f.get("op") == "auth"))["success"] is True
            await stream.send({"op": "subscribe", "args": ["wallet"]})
            await stream.until(lambda f: f.get("op") == "subscribe")

            answer = await bybit.privatePostV5AssetTransferInterTransfer(body)
            assert answer["retCode"] == 0 and answer["retMsg"] == "success"
            assert answer["result"] == {"transferId": UUID_1, "status": "SUCCESS"}
            assert r.wallets("bybit") == (START_BALANCE + Decimal("120.75"), Decimal("179.25"))
            wallet = await stream.until(lambda f: f.get("topic") == "wallet")
            assert dec(wallet["data"][0]["coin"][0]["walletBalance"]) == START_BALANCE + Decimal("120.75")

        # The same transferId again: refused as Bybit's docs list it (131214), and the money moved once.
        with pytest.raises(ccxt.BadRequest, match="131214"):
            await bybit.privatePostV5AssetTransferInterTransfer(body)
        assert r.wallets("bybit") == (START_BALANCE + Decimal("120.75"), Decimal("179.25"))
        assert [t.client_id for t in r.sim.exchanges["bybit"].account.transfers] == [UUID_1]

        def another(**change: str) -> dict[str, str]:
            return {**body, "transferId": "5b4e1c2a-0000-4000-8000-00000000000" + str(len(change)), **change}
        with pytest.raises(ccxt.InsufficientFunds, match="131212"):
            await bybit.privatePostV5AssetTransferInterTransfer(another(amount="179.26"))
        with pytest.raises(ccxt.BadRequest, match="131203"):
            await bybit.privatePostV5AssetTransferInterTransfer(another(fromAccountType="WALLET"))
        with pytest.raises(ccxt.BadRequest, match="131211"):
            await bybit.privatePostV5AssetTransferInterTransfer(another(toAccountType="FUND"))
        with pytest.raises(ccxt.ExchangeError, match="131232"):
            await bybit.privatePostV5AssetTransferInterTransfer(another(fromAccountType="SPOT"))
        with pytest.raises(ccxt.BadRequest, match="131215"):
            await bybit.privatePostV5AssetTransferInterTransfer(another(amount="0"))
        assert r.wallets("bybit") == (START_BALANCE + Decimal("120.75"), Decimal("179.25"))

        back = await bybit.privatePostV5AssetTransferInterTransfer(
            {**body, "transferId": "9d1a9d6e-7a43-4c7e-9a43-5d9a6f2b2c11", "amount": "0.75",
             "fromAccountType": "UNIFIED", "toAccountType": "FUND"})
        assert back["retCode"] == 0
        assert r.wallets("bybit") == (START_BALANCE + 120, Decimal(180))


# ------------------------------------------------------------------------------------------------ Hyperliquid
def hl_body(amount: str = "10", to_perp: bool = True, nonce: int = 1_700_000_000_000, **extra: Any) -> dict[str, Any]:
    action = {"type": "usdClassTransfer", "hyperliquidChain": "Mainnet", "signatureChainId": "0x66eee",
              "amount": amount, "toPerp": to_perp, "nonce": nonce}
    body: dict[str, Any] = {"action": action, "nonce": nonce,
                            "signature": {"r": "0x" + "1" * 64, "s": "0x" + "2" * 64, "v": 27}}
    body.update(extra)
    return body


async def test_hyperliquid_usd_class_transfer_moves_spot_usdc_to_perp_and_refuses_bad_requests() -> None:
    async with rig() as r:
        await r.fund("hyperliquid", "500")
        hl = await r.client("hyperliquid")
        async with ws(r, "hyperliquid", "/ws") as stream:
            await stream.send({"method": "subscribe", "subscription": {"type": "clearinghouseState",
                                                                       "user": SIM_WALLET}})
            await stream.until(lambda f: f.get("channel") == "clearinghouseState")  # the snapshot
            done = await hl.transfer("USDC", 123.45, "spot", "swap")  # ccxt signs a usdClassTransfer
            assert done["status"] == "ok" and done["info"] == {"status": "ok", "response": {"type": "default"}}
            assert r.wallets("hyperliquid") == (START_BALANCE + Decimal("123.45"), Decimal("376.55"))
            state = await stream.until(lambda f: f.get("channel") == "clearinghouseState")
            summary = state["data"]["clearinghouseState"]["marginSummary"]
            assert dec(summary["totalRawUsd"]) == START_BALANCE + Decimal("123.45")

        await hl.transfer("USDC", 0.45, "swap", "spot")
        assert r.wallets("hyperliquid") == (START_BALANCE + 123, Decimal(377))

        assert await post_json(r, "hyperliquid", "/exchange", hl_body("377.01")) == (
            200, {"status": "err", "response": HL_INSUFFICIENT})
        status, answer = await post_json(r, "hyperliquid", "/exchange", hl_body(nonce=5) | {"nonce": 6})
        assert status == 200 and answer["status"] == "err"
        for amount in ("1e3", "-1", "0", "10 subaccount:0xabc"):
            status, answer = await post_json(r, "hyperliquid", "/exchange", hl_body(amount))
            assert status == 200 and answer["status"] == "err", amount
        missing = hl_body()
        del missing["signature"]
        assert (await post_json(r, "hyperliquid", "/exchange", missing))[0] == 422
        assert (await post_json(r, "hyperliquid", "/exchange", hl_body(signature={"r": "0x1"})))[0] == 422
        bad_flag = hl_body()
        bad_flag["action"]["toPerp"] = "yes"
        assert (await post_json(r, "hyperliquid", "/exchange", bad_flag))[0] == 422
        assert r.wallets("hyperliquid") == (START_BALANCE + 123, Decimal(377))
        assert len(r.sim.exchanges["hyperliquid"].account.transfers) == 2


# ------------------------------------------------------------------------------------------------ admin, faults
async def test_admin_funding_sets_the_wallet_and_accounts_show_wallets_and_transfers() -> None:
    async with rig() as r:
        await r.admin("POST", "/admin/funding", {"venue": "okx", "amount": "1234.5"})  # currency: the quote
        await r.admin("POST", "/admin/funding", {"venue": "nowhere", "amount": "1"}, status=400)
        await r.admin("POST", "/admin/funding", {"venue": "okx", "amount": "-1"}, status=400)
        await r.admin("POST", "/admin/funding", {"venue": "okx", "amount": "lots"}, status=400)
        await r.admin("POST", "/admin/funding", {"venue": "okx"}, status=400)
        await (await r.client("okx")).transfer("USDT", 34.5, "funding", "trading")
        accounts = await r.admin("GET", "/admin/accounts")
        assert accounts["okx"]["funding_wallet"] == {"USDT": "1200"}
        assert dec(accounts["okx"]["balances"]["USDT"]) == START_BALANCE + Decimal("34.5")
        [done] = accounts["okx"]["transfers"]
        assert done["currency"] == "USDT" and done["amount"] == "34.5" and done["direction"] == "to_trading"
        assert done["ts_ms"] > 0 and done["transfer_id"]
        assert accounts["binance"]["funding_wallet"] == {} and accounts["binance"]["transfers"] == []


async def test_gate_faults_apply_to_transfers() -> None:
    async with rig() as r:
        await r.fund("okx", "100")
        okx = await r.client("okx")
        await r.admin("POST", "/admin/faults", {"kind": "rest_5xx", "venue": "okx"}, 201)
        with pytest.raises(ccxt.ExchangeNotAvailable):
            await okx.transfer("USDT", 10, "funding", "trading")
        assert r.wallets("okx") == (START_BALANCE, Decimal(100))  # refused before it reached the wallets

        # A lost answer: the transfer is done, the caller only sees the connection drop.
        await r.admin("POST", "/admin/faults", {"kind": "lost_response", "venue": "okx", "params": {"on": "transfer"}},
                      201)
        with pytest.raises(ccxt.NetworkError):
            await okx.transfer("USDT", 10, "funding", "trading")
        assert r.wallets("okx") == (START_BALANCE + 10, Decimal(90))
        assert (await r.admin("GET", "/admin/stats"))["faults_fired"]["okx"]["lost_response"] == 1
