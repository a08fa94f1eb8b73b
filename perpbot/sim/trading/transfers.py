"""The simulated venues' internal transfers: a venue's funding/spot wallet <-> its futures trading wallet.

Same venue only, never a withdrawal. Money moves exactly (SimAccount.transfer_to_trading /
transfer_to_funding); each done transfer is listed in SimAccount.transfers and published as an "account"
event without a symbol (reason DEPOSIT into the trading wallet, WITHDRAW out of it: Binance's ACCOUNT_UPDATE
words), so each venue's private stream pushes the new balance (perpbot.sim.private.*).

Wire shapes, as ccxt 4.5.90 sends them (transfer() and the implicit endpoints) and the venues document:

* OKX POST /api/v5/asset/transfer, JSON {"ccy","amt","type":"0","from":"6"|"18","to":"18"|"6","clientId"?}
  -> {"code":"0","msg":"","data":[{"transId","ccy","clientId","from","amt","to"}]}. Refusals HTTP 200 with
  a top-level code, as the simulator's other OKX account calls: 51000 "Parameter {name} error",
  58114 amount not above 0, 58350 "Insufficient balance" (ccxt okx exceptions table).
* Binance POST /sapi/v1/asset/transfer, signed query/form type=MAIN_UMFUTURE|UMFUTURE_MAIN, asset, amount
  -> {"tranId": <int>}. Refusals HTTP 400: -1102 "Mandatory parameter '<name>' was not sent, was
  empty/null, or malformed." (also a type the simulator does not serve), -5013 "Asset transfer failed:
  insufficient balance" (ccxt binance spot table). The simulator checks no Binance signature anywhere; a
  request without the `signature` parameter is refused -1102 like an unsigned one.
* Bybit POST /v5/asset/transfer/inter-transfer, JSON {"transferId": UUID, "coin", "amount",
  "fromAccountType", "toAccountType"} (FUND <-> UNIFIED) -> retCode 0 "success", result {"transferId",
  "status":"SUCCESS"}. Refusals (Bybit v5 error table, asset section): 131203 request parameter error,
  131211 same account types, 131212 insufficient balance, 131214 "TransferId exist" (a repeated transferId
  is refused and moves nothing), 131215 amount error, 131231 / 131232 transfers into / out of an account
  type the simulator does not hold (SPOT, CONTRACT, OPTION, INVESTMENT).
* Hyperliquid POST /exchange, action usdClassTransfer {"type","hyperliquidChain","signatureChainId","amount",
  "toPerp","nonce"} with the request's "nonce" and "signature" -> {"status":"ok","response":{"type":"default"}}.
  A body that does not deserialize (missing field, wrong type, signature not {r, s, v}) -> HTTP 422 as for
  other actions; refusals {"status":"err","response":...}. USDC only.

Faults: every transfer runs through the venue's FaultGate as a private call (maintenance, rate_limit, ip_ban,
rest_5xx apply). The gate applies timeout and lost_response to orders only; a transfer takes them when the
fault says so, params {"on": "transfer"} (or "any"): timeout answers 504 after hold_s (the transfer is done
unless params.placed is false), lost_response does the transfer and drops the connection (params.mode "drop",
default) or answers params.status (default 502).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

import orjson
from aiohttp import web

from perpbot.sim.trading.accounts import TO_TRADING, SimTransfer, dec_str
from perpbot.sim.trading.exchange import SimExchange
from perpbot.sim.trading.gate import FaultGate, _DropConnection, json_response
from perpbot.sim.trading.hyperliquid_wire import DESERIALIZE_ERROR
from perpbot.sim.trading.matching import SimReject

# The event reasons a transfer publishes (Binance's ACCOUNT_UPDATE "m" for a transfer in / out of futures).
REASON_IN, REASON_OUT = "DEPOSIT", "WITHDRAW"
# Plain decimal strings only, as the clients send amounts (no sign, no exponent).
_PLAIN = re.compile(r"^[0-9]+(\.[0-9]+)?$")
_HEX = re.compile(r"^0x[0-9a-fA-F]+$")
_BYBIT_TYPES = ("UNIFIED", "CONTRACT", "SPOT", "OPTION", "INVESTMENT", "FUND")  # docs' AccountType enum
# Binance tranIds are large integers: the account's transfer counter shifted into that range.
BINANCE_TRAN_BASE = 13_526_853_000


def plain_amount(value: Any) -> Decimal | None:
    """The amount of a plain decimal string ("100", "12.5"); None for anything else (numbers, "1e3", "-1")."""
    if not isinstance(value, str) or not _PLAIN.match(value):
        return None
    try:
        return Decimal(value)
    except InvalidOperation:  # pragma: no cover - the pattern only lets valid decimals through
        return None


def transfer(sim: SimExchange, currency: str, amount: Decimal, to_trading: bool,
             client_id: str | None = None) -> SimTransfer:
    """Do one internal transfer on `sim`'s account and publish the balance change; raises SimReject."""
    account = sim.account
    now = sim.now_ms()
    if to_trading:
        done = account.transfer_to_trading(currency, amount, now, client_id)
    else:
        if currency == account.currency:
            # Free = the wallet less the margin in use, and no more than the equity allows (an unrealised
            # loss is not free to take out): the trading wallet can never be left short of its margin.
            m = sim.margin()
            free = min(m["wallet"], m["equity"]) - m["used"]
        else:
            free = account.balances.get(currency, Decimal(0))  # a currency no position margins
        done = account.transfer_to_funding(currency, amount, free, now, client_id)
    sim.publish("account", symbol=None, reason=REASON_IN if done.direction == TO_TRADING else REASON_OUT)
    return done


def _transfer_fault(sim: SimExchange, kind: str) -> Any:
    """A timeout / lost_response fault that names transfers (params.on "transfer" or "any"), consumed."""
    fault = sim.faults.active(sim.venue, kind, None)
    if fault is None or fault.params.get("on") not in ("transfer", "any"):
        return None
    return sim.faults.take(sim.venue, kind, None)


async def gated(gate: FaultGate, act: Callable[[], web.Response]) -> web.Response:
    """Run a transfer `act` through the gate as a private call, plus the timeout / lost_response faults."""
    sim = gate.sim
    hit: list[tuple[str, Any]] = []

    def action(_ratio: Decimal | None) -> web.Response:
        for kind in ("timeout", "lost_response"):
            fault = _transfer_fault(sim, kind)
            if fault is not None:
                hit.append((kind, fault))
                if kind == "timeout" and not fault.params.get("placed", True):
                    return web.Response(status=504, text="Gateway Timeout")  # never done
                break
        return act()

    response = await gate.run("private", None, action)
    if not hit:
        return response
    kind, fault = hit[0]
    if kind == "timeout":
        try:  # held like the gate holds an order: released early when the server shuts down
            await asyncio.wait_for(gate._closing.wait(), float(fault.params.get("hold_s", 15)))
        except asyncio.TimeoutError:
            pass
        return web.Response(status=504, text="Gateway Timeout")
    if fault.params.get("mode", "drop") == "drop":
        raise _DropConnection()  # the transfer IS done; only the answer is lost
    return web.Response(status=int(fault.params.get("status", 502)), text="Bad Gateway")


async def _json_body(request: web.Request) -> Any:
    try:
        return orjson.loads(await request.read() or b"{}")
    except orjson.JSONDecodeError:
        return None


# ---------------------------------------------------------------------------------------------- OKX
OKX_FUNDING, OKX_TRADING = "6", "18"


def add_okx_transfer_routes(app: web.Application, sim: SimExchange, gate: FaultGate) -> None:
    def error(code: str, msg: str) -> web.Response:
        return json_response({"code": code, "msg": msg, "data": []})

    async def post_transfer(request: web.Request) -> web.Response:
        body = await _json_body(request)

        def act() -> web.Response:
            if not isinstance(body, dict):
                return error("50002", "JSON syntax error")
            ccy, raw = body.get("ccy"), body.get("amt")
            if not isinstance(ccy, str) or not ccy:
                return error("51000", "Parameter ccy error")
            if isinstance(raw, (int, float)) and not isinstance(raw, bool):
                raw = str(raw)  # OKX takes a JSON number too; ccxt sends a string
            amount = plain_amount(raw)
            if amount is None:
                return error("51000", "Parameter amt error")
            if amount <= 0:
                return error("58114", "Transfer amount must be more than 0")
            if str(body.get("type", "0")) != "0":  # 1-4: master/sub-account transfers, not simulated
                return error("51000", "Parameter type error")
            source, target = str(body.get("from", "")), str(body.get("to", ""))
            if source not in (OKX_FUNDING, OKX_TRADING):
                return error("51000", "Parameter from error")
            if target not in (OKX_FUNDING, OKX_TRADING) or target == source:
                return error("51000", "Parameter to error")
            client_id = body.get("clientId")
            try:
                done = transfer(sim, ccy, amount, target == OKX_TRADING)
            except SimReject as reject:
                if reject.reason.startswith("transfer_insufficient"):
                    return error("58350", "Insufficient balance")
                raise
            return json_response({"code": "0", "msg": "", "data": [{
                "transId": done.transfer_id, "ccy": ccy, "clientId": str(client_id or ""), "from": source,
                "amt": dec_str(done.amount), "to": target}]})
        return await gated(gate, act)

    app.router.add_post("/api/v5/asset/transfer", post_transfer)


# ---------------------------------------------------------------------------------------------- Binance
BINANCE_TYPES = {"MAIN_UMFUTURE": True, "UMFUTURE_MAIN": False}  # type -> into the trading (USD-M) wallet


def add_binance_transfer_routes(app: web.Application, sim: SimExchange, gate: FaultGate) -> None:
    def error(code: int, msg: str) -> web.Response:
        return json_response({"code": code, "msg": msg}, status=400)

    def malformed(name: str) -> web.Response:
        return error(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")

    async def post_transfer(request: web.Request) -> web.Response:
        params = dict(request.query)
        if request.can_read_body:
            params.update({k: str(v) for k, v in (await request.post()).items()})

        def act() -> web.Response:
            if not params.get("signature"):
                return malformed("signature")
            kind = params.get("type", "")
            if kind not in BINANCE_TYPES:  # other wallets (margin, COIN-M, options, ...) are not simulated
                return malformed("type")
            asset = params.get("asset", "")
            if not asset:
                return malformed("asset")
            amount = plain_amount(params.get("amount"))
            if amount is None or amount <= 0:
                return malformed("amount")
            try:
                done = transfer(sim, asset, amount, BINANCE_TYPES[kind])
            except SimReject as reject:
                if reject.reason.startswith("transfer_insufficient"):
                    return error(-5013, "Asset transfer failed: insufficient balance")
                raise
            return json_response({"tranId": BINANCE_TRAN_BASE + int(done.transfer_id)})
        return await gated(gate, act)

    app.router.add_post("/sapi/v1/asset/transfer", post_transfer)


# ---------------------------------------------------------------------------------------------- Bybit
def add_bybit_transfer_routes(app: web.Application, sim: SimExchange, gate: FaultGate) -> None:
    def answer(result: Any, code: int = 0, msg: str = "success") -> web.Response:
        return json_response({"retCode": code, "retMsg": msg, "result": result, "retExtInfo": {},
                              "time": sim.now_ms()})

    async def post_transfer(request: web.Request) -> web.Response:
        body = await _json_body(request)

        def act() -> web.Response:
            if not isinstance(body, dict):
                return answer({}, 10001, "Request parameter error")
            transfer_id, coin = body.get("transferId"), body.get("coin")
            source, target = body.get("fromAccountType"), body.get("toAccountType")
            try:
                uuid.UUID(str(transfer_id))
            except ValueError:
                return answer({}, 131203, "Request parameter error")
            if not isinstance(coin, str) or not coin or source not in _BYBIT_TYPES or target not in _BYBIT_TYPES:
                return answer({}, 131203, "Request parameter error")
            amount = plain_amount(body.get("amount"))
            if amount is None or amount <= 0:
                return answer({}, 131215, "Amount error")
            if source == target:
                return answer({}, 131211, "fromAccountType can't be the same as toAccountType")
            if source not in ("FUND", "UNIFIED"):
                return answer({}, 131232, "Transfers out this account are not supported")
            if target not in ("FUND", "UNIFIED"):
                return answer({}, 131231, "Transfers into this account are not supported")
            if str(transfer_id) in sim.account.transfer_client_ids:
                # Bybit's docs list 131214 "TransferId exist": a repeated id is refused, nothing moves again.
                return answer({}, 131214, "TransferId exist")
            try:
                transfer(sim, coin, amount, target == "UNIFIED", client_id=str(transfer_id))
            except SimReject as reject:
                if reject.reason.startswith("transfer_insufficient"):
                    return answer({}, 131212, "Insufficient balance")
                raise
            return answer({"transferId": str(transfer_id), "status": "SUCCESS"})
        return await gated(gate, act)

    app.router.add_post("/v5/asset/transfer/inter-transfer", post_transfer)


# ---------------------------------------------------------------------------------------------- Hyperliquid
HL_CHAINS = ("Mainnet", "Testnet")
HL_INSUFFICIENT = "Insufficient balance for transfer"  # the simulator's text: no recorded venue answer


def _hl_signature_ok(signature: Any) -> bool:
    """The shape of a user-signed action's signature: {"r": 0x-hex, "s": 0x-hex, "v": 27 | 28}.

    Only the shape: the simulator may not import the bot's signer (perpbot.venues; an import-linter contract
    keeps the two apart) and, like its other /exchange actions, does not recover the signer."""
    if not isinstance(signature, dict):
        return False
    r, s, v = signature.get("r"), signature.get("s"), signature.get("v")
    return (isinstance(r, str) and bool(_HEX.match(r)) and len(r) <= 66 and isinstance(s, str)
            and bool(_HEX.match(s)) and len(s) <= 66 and not isinstance(v, bool) and v in (27, 28))


def hyperliquid_usd_class_transfer(sim: SimExchange, body: dict[str, Any]) -> web.Response:
    """usdClassTransfer: spot USDC -> perp (toPerp true) or perp -> spot; `body` is the whole /exchange body."""
    action = body["action"]
    nonce, amount_text, to_perp = action.get("nonce"), action.get("amount"), action.get("toPerp")
    chain_id = action.get("signatureChainId")
    if (not isinstance(amount_text, str) or not isinstance(to_perp, bool) or isinstance(nonce, bool)
            or not isinstance(nonce, int) or action.get("hyperliquidChain") not in HL_CHAINS
            or not isinstance(chain_id, str) or not _HEX.match(chain_id)
            or not _hl_signature_ok(body.get("signature"))):
        return web.Response(status=422, text=DESERIALIZE_ERROR)
    if body.get("nonce") != nonce:
        # The venue signs the action's nonce and checks the request's: the sim's text, none recorded.
        return json_response({"status": "err", "response": "Nonce in action does not match request nonce."})
    amount = plain_amount(amount_text)  # a vault's "<amount> subaccount:<address>" is not simulated either
    if amount is None or amount <= 0:
        return json_response({"status": "err", "response": f"Invalid amount {amount_text!r}."})
    try:
        transfer(sim, "USDC", amount, to_perp)
    except SimReject as reject:
        if reject.reason.startswith("transfer_insufficient"):
            return json_response({"status": "err", "response": HL_INSUFFICIENT})
        raise
    return json_response({"status": "ok", "response": {"type": "default"}})


TRANSFER_ROUTES = {"okx": add_okx_transfer_routes, "binance": add_binance_transfer_routes,
                   "bybit": add_bybit_transfer_routes}


def add_transfer_routes(app: web.Application, venue: str, sim: SimExchange, gate: FaultGate) -> None:
    """Mount `venue`'s transfer endpoint (Hyperliquid's usdClassTransfer is an /exchange action:
    perpbot.sim.trading.hyperliquid dispatches it to hyperliquid_usd_class_transfer)."""
    mount = TRANSFER_ROUTES.get(venue)
    if mount is not None:
        mount(app, sim, gate)


__all__ = ["REASON_IN", "REASON_OUT", "add_transfer_routes", "hyperliquid_usd_class_transfer", "plain_amount",
           "transfer"]
