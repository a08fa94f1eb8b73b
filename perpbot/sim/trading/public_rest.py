"""Public market REST of the simulated venues beyond instruments and tickers, in each venue's shape.

REST order books: OKX `GET /api/v5/market/books` (levels [px, sz, "0", orders] as the WS `books` channel
renders them, sizes in contracts) and Bybit `GET /v5/market/orderbook` (`s, b, a, ts, u, seq, cts`;
`u`/`seq` are the public feed's deepest `orderbook` stream id and cross sequence, so a client can align
the snapshot with the stream). Binance's `/fapi/v1/depth` is served by its feed (perpbot.sim.ws_binance).

Funding-rate history: OKX `GET /api/v5/public/funding-rate-history` (newest first, after/before/limit),
Binance `GET /fapi/v1/fundingRate` (oldest first, 8-decimal strings, startTime/endTime/limit) and Bybit
`GET /v5/market/funding/history` (newest first; startTime alone is refused, as documented). The rates
are the ones the simulated market had at each settlement time: a settlement time that passes is
recorded with the market's rate and mark when a history request first sees it; the times before the
simulator first looked are filled (BACKFILL_INTERVALS of them) with the rate it had then.

Shapes: https://www.okx.com/docs-v5/en/#public-data-rest-api-get-funding-rate-history ,
https://developers.binance.com/docs/derivatives/usds-margined-futures/market-data/rest-api/Get-Funding-Rate-History ,
bybit-exchange/docs docs/v5/market/{orderbook,history-fund-rate}.mdx.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable

from aiohttp import web

from perpbot.sim.trading.exchange import SimExchange
from perpbot.sim.trading.gate import FaultGate, json_response
from perpbot.sim.trading.matching import SimReject
from perpbot.sim.ws_common import Grid
from perpbot.sim.ws_okx import _orders as okx_order_count

BACKFILL_INTERVALS = 90
EIGHT = Decimal("0.00000001")
OKX_BOOK_MAX, BYBIT_BOOK_MAX = 400, 500


@dataclass(frozen=True, slots=True)
class FundingRecord:
    """One settlement: its time, the rate per interval and the mark price at that time."""

    time_ms: int
    rate: Decimal
    mark: Decimal


class FundingHistory:
    """Per symbol, the funding settlements of one simulated venue, oldest first."""

    def __init__(self, sim: SimExchange, backfill: int = BACKFILL_INTERVALS) -> None:
        self.sim = sim
        self.backfill = backfill
        self._rows: dict[str, list[FundingRecord]] = {}

    def rows(self, symbol: str) -> list[FundingRecord]:
        self.sim.instrument(symbol)  # SimReject unknown_symbol
        rate, interval_h, next_ms = self.sim.market.funding(self.sim.venue, symbol)
        interval_ms = int(interval_h) * 3_600_000
        last_due = int(next_ms) - interval_ms  # the latest settlement time at or before now
        mark = Decimal(self.sim.market.mark(self.sim.venue, symbol))
        rows = self._rows.get(symbol)
        if rows is None:
            rows = [FundingRecord(last_due - k * interval_ms, Decimal(rate), mark)
                    for k in range(self.backfill - 1, -1, -1)]
            self._rows[symbol] = rows
        due = rows[-1].time_ms + interval_ms
        while due <= last_due:
            rows.append(FundingRecord(due, Decimal(rate), mark))
            due += interval_ms
        return rows


class BadParameter(SimReject):
    """A query parameter that is not an integer; `name` says which."""

    def __init__(self, name: str) -> None:
        super().__init__("bad_request", f"parameter {name} must be an integer")
        self.name = name


def _int_param(query: Any, name: str, default: int | None) -> int | None:
    """An integer query parameter; '' or absent -> default; not an integer -> BadParameter."""
    raw = query.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadParameter(name) from None


def _book_levels(sim: SimExchange, symbol: str, depth: int, render: Callable[[Grid, Grid, int, int], list[str]]
                 ) -> tuple[list[list[str]], list[list[str]]]:
    inst = sim.instrument(symbol)
    price_grid, size_grid = Grid(inst.tick), Grid(inst.lot)
    bids, asks = sim.market.book(sim.venue, symbol).top(depth)
    return ([render(price_grid, size_grid, p, q) for p, q in bids],
            [render(price_grid, size_grid, p, q) for p, q in asks])


# ------------------------------------------------------------------------------------------------- OKX
def add_okx_public_routes(app: web.Application, sim: SimExchange, gate: FaultGate) -> None:
    history = FundingHistory(sim)

    def ok(data: list[Any]) -> web.Response:
        return json_response({"code": "0", "msg": "", "data": data})

    def param_error(name: str) -> web.Response:
        return json_response({"code": "51000", "msg": f"Parameter {name} error", "data": []})

    def empty_param(name: str) -> web.Response:
        return json_response({"code": "50014", "msg": f"Parameter {name} can not be empty", "data": []})

    async def books(request: web.Request) -> web.Response:
        def act(_: Any) -> web.Response:
            inst_id = request.query.get("instId", "")
            if not inst_id:
                return empty_param("instId")
            try:
                size = _int_param(request.query, "sz", 1)
            except BadParameter:
                return param_error("sz")
            if size is None or not 1 <= size <= OKX_BOOK_MAX:
                return param_error("sz")
            bids, asks = _book_levels(sim, inst_id, size, lambda pg, sg, p, q: [
                pg.trimmed(p), sg.trimmed(q), "0", okx_order_count(p, q)])
            return ok([{"asks": asks, "bids": bids, "ts": str(sim.now_ms())}])
        return await gate.run("public", None, act)

    async def funding_history(request: web.Request) -> web.Response:
        def act(_: Any) -> web.Response:
            q = request.query
            inst_id = q.get("instId", "")
            if not inst_id:
                return empty_param("instId")
            try:
                after, before = _int_param(q, "after", None), _int_param(q, "before", None)
                limit = _int_param(q, "limit", 100)
            except BadParameter as bad:
                return param_error(bad.name)
            if limit is None or not 1 <= limit <= 400:
                return param_error("limit")
            rows = [r for r in reversed(history.rows(inst_id))  # newest first
                    if (after is None or r.time_ms < after) and (before is None or r.time_ms > before)]
            return ok([{"formulaType": "withRate", "fundingRate": format(r.rate, "f"),
                        "fundingTime": str(r.time_ms), "instId": inst_id, "instType": "SWAP",
                        "method": "current_period", "realizedRate": format(r.rate, "f")} for r in rows[:limit]])
        return await gate.run("public", None, act)

    app.router.add_get("/api/v5/market/books", books)
    app.router.add_get("/api/v5/public/funding-rate-history", funding_history)


# --------------------------------------------------------------------------------------------- Binance
def add_binance_public_routes(app: web.Application, sim: SimExchange, gate: FaultGate) -> None:
    history = FundingHistory(sim)

    async def funding_rate(request: web.Request) -> web.Response:
        def act(_: Any) -> web.Response:
            q = request.query
            start, end = _int_param(q, "startTime", None), _int_param(q, "endTime", None)
            # Documented: limit defaults to 100, but with neither startTime nor endTime the latest 200 come.
            limit = _int_param(q, "limit", 200 if start is None and end is None else 100)
            if limit is None or not 1 <= limit <= 1000:
                raise SimReject("bad_request", "limit must be within 1..1000")
            symbols = [q["symbol"]] if q.get("symbol") else sim.symbols()
            rows = sorted(((s, r) for s in symbols for r in history.rows(s)
                           if (start is None or r.time_ms >= start) and (end is None or r.time_ms <= end)),
                          key=lambda item: (item[1].time_ms, item[0]))
            # From startTime on: the first `limit`; otherwise the most recent `limit` (oldest first).
            picked = rows[:limit] if start is not None else rows[-limit:]
            return json_response([{"symbol": s, "fundingRate": format(r.rate.quantize(EIGHT), "f"),
                                   "fundingTime": r.time_ms, "markPrice": format(r.mark.quantize(EIGHT), "f")}
                                  for s, r in picked])
        return await gate.run("public", None, act)

    app.router.add_get("/fapi/v1/fundingRate", funding_rate)


# ----------------------------------------------------------------------------------------------- Bybit
def add_bybit_public_routes(app: web.Application, sim: SimExchange, gate: FaultGate, feed: Any = None) -> None:
    history = FundingHistory(sim)

    def envelope(result: Any, code: int = 0, msg: str = "OK") -> web.Response:
        return json_response({"retCode": code, "retMsg": msg, "result": result, "retExtInfo": {},
                              "time": sim.now_ms()})

    def parameter_error() -> web.Response:
        return envelope({}, 10001, "Request parameter error")  # venue_errors.json, Bybit 10001

    async def orderbook(request: web.Request) -> web.Response:
        def act(_: Any) -> web.Response:
            q = request.query
            symbol = q.get("symbol", "")
            if q.get("category") != "linear" or not sim.market.has("bybit", symbol):
                return parameter_error()
            try:
                limit = _int_param(q, "limit", 25)
            except BadParameter:
                return parameter_error()
            if limit is None or not 1 <= limit <= BYBIT_BOOK_MAX:
                return parameter_error()
            bids, asks = _book_levels(sim, symbol, limit, lambda pg, sg, p, q: [pg.fixed(p), sg.fixed(q)])
            now = sim.now_ms()
            update_id, seq = sim.market.tick + 1, sim.market.tick + 1  # no public feed mounted (tests)
            if feed is not None:  # the deepest public stream's id and the symbol's cross sequence
                update_id = feed.streams[f"orderbook.1000.{symbol}"].update_id
                seq = feed.cross_seq[symbol]
            return envelope({"s": symbol, "b": bids, "a": asks, "ts": now, "u": update_id, "seq": seq,
                             "cts": now - 2})
        return await gate.run("public", None, act)

    async def funding_history(request: web.Request) -> web.Response:
        def act(_: Any) -> web.Response:
            q = request.query
            symbol = q.get("symbol", "")
            if q.get("category") != "linear" or not sim.market.has("bybit", symbol):
                return parameter_error()
            try:
                start, end = _int_param(q, "startTime", None), _int_param(q, "endTime", None)
                limit = _int_param(q, "limit", 200)
            except BadParameter:
                return parameter_error()
            if (start is not None and end is None) or limit is None or not 1 <= limit <= 200:
                return parameter_error()  # documented: startTime alone is an error
            rows = [r for r in reversed(history.rows(symbol))  # newest first
                    if (start is None or r.time_ms >= start) and (end is None or r.time_ms <= end)]
            return envelope({"category": "linear", "list": [
                {"symbol": symbol, "fundingRate": format(r.rate, "f"), "fundingRateTimestamp": str(r.time_ms)}
                for r in rows[:limit]]})
        return await gate.run("public", None, act)

    app.router.add_get("/v5/market/orderbook", orderbook)
    app.router.add_get("/v5/market/funding/history", funding_history)


def add_public_rest_routes(app: web.Application, venue: str, sim: SimExchange, gate: FaultGate,
                           feed: Any = None) -> None:
    """Mount `venue`'s public REST books / funding-rate history (nothing for Hyperliquid: its /info has them)."""
    if venue == "okx":
        add_okx_public_routes(app, sim, gate)
    elif venue == "binance":
        add_binance_public_routes(app, sim, gate)
    elif venue == "bybit":
        add_bybit_public_routes(app, sim, gate, feed)


__all__ = ["FundingHistory", "FundingRecord", "add_public_rest_routes"]
