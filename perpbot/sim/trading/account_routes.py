"""The simulated venues' account-setup REST calls: position mode, margin mode, leverage reads, fee rates.

Settable and refused as the venues do (SimExchange.set_position_mode / set_margin_mode refuse a change while
a position or an order is open; a change to what is already set is answered "not modified" where the venue
does so):

* Binance USD-M: GET/POST /fapi/v1/positionSide/dual (-4059 no need to change, -4068 position exists),
  GET /fapi/v1/symbolConfig, POST /fapi/v1/marginType (-4046 no need to change, -4048 position exists),
  GET /fapi/v1/commissionRate.
* OKX: GET /api/v5/account/config (posMode), POST /api/v5/account/set-position-mode (59000 positions or
  orders open), GET /api/v5/account/leverage-info, GET /api/v5/account/trade-fee. (OKX has no per-symbol
  margin mode: each order names it, tdMode; set-leverage takes mgnMode.)
* Bybit v5: POST /v5/position/switch-mode (110025 not modified, 110024 position exists),
  POST /v5/account/set-margin-mode (account-wide: REGULAR_MARGIN cross, ISOLATED_MARGIN isolated),
  GET /v5/account/fee-rate.
Hyperliquid's updateLeverage (isCross) is in perpbot.sim.trading.hyperliquid; it has no hedge mode.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from perpbot.sim.trading.accounts import dec_str
from perpbot.sim.trading.exchange import SimExchange
from perpbot.sim.trading.gate import FaultGate, json_response
from perpbot.sim.trading.margin import CROSS, HEDGE, ISOLATED, ONE_WAY
from perpbot.sim.trading.matching import SimReject


def _refused(call: Any, *args: Any) -> bool:
    """Run a mode change; True when the engine refused it (a position or order open)."""
    try:
        call(*args)
    except SimReject as reject:
        if reject.reason == "mode_change_refused":
            return True
        raise
    return False


# ---------------------------------------------------------------------------------------------- Binance
def add_binance_account_routes(app: web.Application, sim: SimExchange, gate: FaultGate) -> None:
    async def params(request: web.Request) -> dict[str, str]:
        merged = dict(request.query)
        if request.can_read_body:
            merged.update({k: str(v) for k, v in (await request.post()).items()})
        return merged

    def error(code: int, msg: str) -> web.Response:
        return json_response({"code": code, "msg": msg}, status=400)

    async def get_dual(request: web.Request) -> web.Response:
        return await gate.run("private", None, lambda _: json_response(
            {"dualSidePosition": sim.account.position_mode == HEDGE}))

    async def post_dual(request: web.Request) -> web.Response:
        p = await params(request)

        def act(_: Any) -> web.Response:
            mode = HEDGE if str(p.get("dualSidePosition", "")).lower() == "true" else ONE_WAY
            if mode == sim.account.position_mode:
                return error(-4059, "No need to change position side.")
            if _refused(sim.set_position_mode, mode):
                return error(-4068, "Position side cannot be changed if there exists position.")
            return json_response({"code": 200, "msg": "success"})
        return await gate.run("private", None, act)

    async def symbol_config(request: web.Request) -> web.Response:
        wanted = request.query.get("symbol")

        def act(_: Any) -> web.Response:
            rows = [{"symbol": s, "marginType": "ISOLATED" if sim.account.margin_mode_of(s) == ISOLATED else "CROSSED",
                     "isAutoAddMargin": "false", "leverage": int(sim.account.leverage_of(s)),
                     "maxNotionalValue": "1000000000"} for s in sim.symbols() if wanted in (None, s)]
            return json_response(rows)
        return await gate.run("private", wanted, act)

    async def margin_type(request: web.Request) -> web.Response:
        p = await params(request)

        def act(_: Any) -> web.Response:
            symbol = p["symbol"]
            mode = ISOLATED if str(p.get("marginType", "")).upper() == "ISOLATED" else CROSS
            if mode == sim.account.margin_mode_of(symbol):
                return error(-4046, "No need to change margin type.")
            if _refused(sim.set_margin_mode, symbol, mode):
                return error(-4048, "Margin type cannot be changed if there exists position.")
            return json_response({"code": 200, "msg": "success"})
        return await gate.run("private", p.get("symbol"), act)

    async def commission(request: web.Request) -> web.Response:
        symbol = request.query.get("symbol", "")

        def act(_: Any) -> web.Response:
            inst = sim.instrument(symbol)
            return json_response({"symbol": symbol, "makerCommissionRate": dec_str(inst.maker_fee),
                                  "takerCommissionRate": dec_str(inst.taker_fee)})
        return await gate.run("private", symbol, act)

    r = app.router
    r.add_get("/fapi/v1/positionSide/dual", get_dual)
    r.add_post("/fapi/v1/positionSide/dual", post_dual)
    r.add_get("/fapi/v1/symbolConfig", symbol_config)
    r.add_post("/fapi/v1/marginType", margin_type)
    r.add_get("/fapi/v1/commissionRate", commission)


# ---------------------------------------------------------------------------------------------- OKX
def add_okx_account_routes(app: web.Application, sim: SimExchange, gate: FaultGate) -> None:
    prefix = "/api/v5"

    def ok(data: list[Any]) -> web.Response:
        return json_response({"code": "0", "msg": "", "data": data})

    def error(code: str, msg: str) -> web.Response:
        return json_response({"code": code, "msg": msg, "data": []})

    async def config(request: web.Request) -> web.Response:
        mode = "long_short_mode" if sim.account.position_mode == HEDGE else "net_mode"
        return await gate.run("private", None, lambda _: ok([{"posMode": mode, "acctLv": "2", "uid": "1",
                                                                 "autoLoan": False, "ctIsoMode": "automatic",
                                                                 "mgnIsoMode": "automatic", "level": "Lv1"}]))

    async def set_position_mode(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read() or b"{}")

        def act(_: Any) -> web.Response:
            wanted = body.get("posMode")
            mode = HEDGE if wanted == "long_short_mode" else ONE_WAY
            if _refused(sim.set_position_mode, mode):
                return error("59000", "Your settings failed as you have positions or open orders")
            return ok([{"posMode": wanted}])
        return await gate.run("private", None, act)

    async def leverage_info(request: web.Request) -> web.Response:
        q = request.query

        def act(_: Any) -> web.Response:
            rows = []
            for symbol in filter(None, q.get("instId", "").split(",")):
                sim.instrument(symbol)
                rows.append({"instId": symbol, "mgnMode": q.get("mgnMode", CROSS), "posSide": "net",
                             "lever": dec_str(sim.account.leverage_of(symbol))})
            return ok(rows)
        return await gate.run("private", q.get("instId"), act)

    async def trade_fee(request: web.Request) -> web.Response:
        q = request.query

        def act(_: Any) -> web.Response:
            inst = sim.instrument(q.get("instId") or sim.symbols()[0])
            maker, taker = dec_str(-inst.maker_fee), dec_str(-inst.taker_fee)  # OKX: negative = a cost
            return ok([{"instType": "SWAP", "level": "Lv1", "maker": maker, "taker": taker, "makerU": maker,
                        "takerU": taker, "makerUSDC": maker, "takerUSDC": taker, "ts": str(sim.now_ms())}])
        return await gate.run("private", None, act)

    r = app.router
    r.add_get(prefix + "/account/config", config)
    r.add_post(prefix + "/account/set-position-mode", set_position_mode)
    r.add_get(prefix + "/account/leverage-info", leverage_info)
    r.add_get(prefix + "/account/trade-fee", trade_fee)


# ---------------------------------------------------------------------------------------------- Bybit
def add_bybit_account_routes(app: web.Application, sim: SimExchange, gate: FaultGate) -> None:
    def answer(result: Any, code: int = 0, msg: str = "OK") -> web.Response:
        return json_response({"retCode": code, "retMsg": msg, "result": result, "retExtInfo": {},
                              "time": sim.now_ms()})

    async def switch_mode(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read() or b"{}")

        def act(_: Any) -> web.Response:
            mode = HEDGE if str(body.get("mode")) == "3" else ONE_WAY
            if mode == sim.account.position_mode:
                return answer({}, 110025, "Position mode is not modified")
            if _refused(sim.set_position_mode, mode):
                return answer({}, 110024, "You have an existing position, so position mode cannot be switched")
            return answer({})
        return await gate.run("private", None, act)

    async def set_margin_mode(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read() or b"{}")

        def act(_: Any) -> web.Response:
            mode = ISOLATED if body.get("setMarginMode") == "ISOLATED_MARGIN" else CROSS
            for symbol in sim.symbols():  # account-wide on a unified account
                if mode != sim.account.margin_mode_of(symbol) and _refused(sim.set_margin_mode, symbol, mode):
                    return answer({"reasons": [{"reasonCode": "3400045", "reasonMsg": "Positions or orders open"}]},
                                  3400045, "Set margin mode failed")
            return answer({"reasons": []})
        return await gate.run("private", None, act)

    async def fee_rate(request: web.Request) -> web.Response:
        symbol = request.query.get("symbol")

        def act(_: Any) -> web.Response:
            rows = [{"symbol": s, "makerFeeRate": dec_str(sim.instrument(s).maker_fee),
                     "takerFeeRate": dec_str(sim.instrument(s).taker_fee)}
                    for s in sim.symbols() if symbol in (None, s)]
            return answer({"list": rows})
        return await gate.run("private", symbol, act)

    r = app.router
    r.add_post("/v5/position/switch-mode", switch_mode)
    r.add_post("/v5/account/set-margin-mode", set_margin_mode)
    r.add_get("/v5/account/fee-rate", fee_rate)


ACCOUNT_ROUTES = {"binance": add_binance_account_routes, "okx": add_okx_account_routes,
                  "bybit": add_bybit_account_routes}


def add_account_routes(app: web.Application, venue: str, sim: SimExchange, gate: FaultGate) -> None:
    """Mount `venue`'s account-setup calls (none for Hyperliquid: its updateLeverage is in its /exchange)."""
    mount = ACCOUNT_ROUTES.get(venue)
    if mount is not None:
        mount(app, sim, gate)


__all__ = ["add_account_routes"]
