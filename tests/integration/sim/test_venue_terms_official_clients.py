"""The simulator on each venue's exact terms, as the venue's OFFICIAL client library sees it.

python-okx (TradeAPI, PublicData, MarketData), Binance's USD-M futures SDK and pybit talk to the simulator's
REST on loopback: OKX reduce-only refusals (51169 / 51170 with the venue's texts), OKX cancel and query by
clOrdId with the `ordId: ""` python-okx always sends, OKX's funding cap as documented and as its own
WebSocket says, funding-rate history on OKX, Binance and Bybit, Binance premiumIndex in its 8-decimal
form, Bybit's instruments-info row as documented, REST order books on OKX and Bybit.

pybit formats its base URL itself (test_official_clients.test_pybit_cannot_be_pointed_at_a_loopback_base_url);
its `endpoint` attribute, which every request is built from, is set to the simulator after construction.
Expected texts and rows come from shared/fixtures (venue_errors.json, the documented instrument row).
"""

from __future__ import annotations

import asyncio
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from test_official_clients import Rig, binance_client, dec, loopback_only, rig  # noqa: F401  (fixture)

from perpbot.sim.private.common import SIM_API_KEY, SIM_PASSPHRASE, SIM_SECRET

FIXTURES = Path("/work/shared/fixtures")
EIGHT_DECIMALS = re.compile(r"^-?\d+\.\d{8}$")
HOUR_MS = 3_600_000

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"), pytest.mark.usefixtures("loopback_only")]


def fixture(path: str) -> Any:
    return json.loads((FIXTURES / path).read_text())


def okx_error_text(code: str) -> str:
    errors = fixture("venue_errors.json")["okx"]
    rows = {r["sCode"]: r["message"] for r in errors["docs_mirror_codes"]["codes"]}
    return str(rows[code])


def okx_apis(r: Rig) -> tuple[Any, Any, Any]:
    from okx.MarketData import MarketAPI
    from okx.PublicData import PublicAPI
    from okx.Trade import TradeAPI

    trade = TradeAPI(SIM_API_KEY, SIM_SECRET, SIM_PASSPHRASE, flag="0", domain=r.url("okx"))
    public = PublicAPI(flag="0", domain=r.url("okx"))
    market = MarketAPI(flag="0", domain=r.url("okx"))
    return trade, public, market


def pybit_http(r: Rig) -> Any:
    from pybit import unified_trading

    http = unified_trading.HTTP(testnet=False, api_key=SIM_API_KEY, api_secret=SIM_SECRET, max_retries=1)  # one attempt
    http.endpoint = r.url("bybit")
    return http


# ---------------------------------------------------------------------------------------------- OKX
async def test_okx_reduce_only_refusals_carry_the_venue_codes_and_texts() -> None:
    """No position: 51169 (not 51205); a long and a reduce-only buy: 51170. Texts as the venue's docs."""
    async with rig() as r:
        trade, _public, _market = okx_apis(r)
        _bids, asks = r.sim.market.levels("okx", "BTC-USDT-SWAP")
        flat = await asyncio.to_thread(trade.place_order, instId="BTC-USDT-SWAP", tdMode="cross", side="sell",
                                       ordType="ioc", sz="1", px=str(asks[0][0]), reduceOnly="true")
        assert flat["code"] == "1" and flat["msg"] == "All operations failed"
        assert (flat["data"][0]["sCode"], flat["data"][0]["sMsg"]) == ("51169", okx_error_text("51169"))

        r.sim.exchanges["okx"].set_position("BTC-USDT-SWAP", Decimal("0.05"), asks[0][0])
        same_side = await asyncio.to_thread(trade.place_order, instId="BTC-USDT-SWAP", tdMode="cross",
                                            side="buy", ordType="ioc", sz="1", px=str(asks[0][0]),
                                            reduceOnly="true")
        assert (same_side["data"][0]["sCode"], same_side["data"][0]["sMsg"]) == ("51170", okx_error_text("51170"))
        assert r.sim.exchanges["okx"].account.fills == []
        await asyncio.to_thread(trade.close)


async def test_okx_cancel_and_query_by_clordid_with_the_empty_ordid_python_okx_sends() -> None:
    async with rig() as r:
        trade, _public, _market = okx_apis(r)
        bids, _asks = r.sim.market.levels("okx", "BTC-USDT-SWAP")
        resting = str(bids[-1][0])  # far below the touch: rests
        placed = await asyncio.to_thread(trade.place_order, instId="BTC-USDT-SWAP", tdMode="cross", side="buy",
                                         ordType="limit", sz="1", px=resting, clOrdId="rest1")
        assert placed["code"] == "0", placed
        # python-okx sends {"instId": .., "ordId": "", "clOrdId": "rest1"}: the empty ordId means "not given".
        canceled = await asyncio.to_thread(trade.cancel_order, instId="BTC-USDT-SWAP", clOrdId="rest1")
        assert canceled["code"] == "0" and canceled["data"][0]["sCode"] == "0", canceled
        assert canceled["data"][0]["ordId"] == placed["data"][0]["ordId"]
        queried = await asyncio.to_thread(trade.get_order, instId="BTC-USDT-SWAP", clOrdId="rest1")
        assert queried["code"] == "0" and queried["data"][0]["state"] == "canceled"
        assert not r.sim.exchanges["okx"].account.open_orders()
        await asyncio.to_thread(trade.close)


async def test_okx_funding_cap_is_the_documented_one_on_rest_and_on_the_simulators_websocket() -> None:
    async with rig() as r, aiohttp.ClientSession() as http:
        _trade, public, _market = okx_apis(r)
        rest = (await asyncio.to_thread(public.get_funding_rate, instId="BTC-USDT-SWAP"))["data"][0]
        async with http.ws_connect(r.url("okx", "ws", "/ws/v5/public")) as ws:
            await ws.send_json({"op": "subscribe", "args": [{"channel": "funding-rate", "instId": "BTC-USDT-SWAP"}]})
            while "data" not in (pushed := await ws.receive_json(timeout=5)):
                pass
        ws_row = pushed["data"][0]
        # VENUES.md, the funding-rate channel's documented example: 0.00375 / -0.00375.
        assert (rest["maxFundingRate"], rest["minFundingRate"]) == ("0.00375", "-0.00375")
        assert (ws_row["maxFundingRate"], ws_row["minFundingRate"]) == (rest["maxFundingRate"], rest["minFundingRate"])
        assert ws_row["fundingRate"] == rest["fundingRate"]
        await asyncio.to_thread(public.close)


async def test_okx_funding_rate_history_is_served_newest_first_in_the_venues_shape() -> None:
    async with rig() as r:
        _trade, public, _market = okx_apis(r)
        rate, interval_h, next_ms = r.sim.market.funding("okx", "BTC-USDT-SWAP")
        answer = await asyncio.to_thread(public.funding_rate_history, instId="BTC-USDT-SWAP", limit="5")
        assert answer["code"] == "0", answer
        rows = answer["data"]
        assert len(rows) == 5
        assert set(rows[0]) == {"formulaType", "fundingRate", "fundingTime", "instId", "instType", "method",
                                "realizedRate"}
        times = [int(row["fundingTime"]) for row in rows]
        assert times[0] == next_ms - interval_h * HOUR_MS  # the latest settlement, not a future one
        assert all(a - b == interval_h * HOUR_MS for a, b in zip(times, times[1:]))
        assert all(dec(row["fundingRate"]) == rate and row["instId"] == "BTC-USDT-SWAP" for row in rows)
        older = await asyncio.to_thread(public.funding_rate_history, instId="BTC-USDT-SWAP", after=str(times[1]),
                                        limit="2")
        assert [int(row["fundingTime"]) for row in older["data"]] == times[2:4]
        await asyncio.to_thread(public.close)


async def test_okx_rest_order_book_is_the_books_channel_view() -> None:
    async with rig() as r, aiohttp.ClientSession() as http:
        _trade, _public, market = okx_apis(r)
        answer = await asyncio.to_thread(market.get_orderbook, instId="BTC-USDT-SWAP", sz="5")
        async with http.ws_connect(r.url("okx", "ws", "/ws/v5/public")) as ws:
            await ws.send_json({"op": "subscribe", "args": [{"channel": "books", "instId": "BTC-USDT-SWAP"}]})
            while "data" not in (snapshot := await ws.receive_json(timeout=5)):
                pass
        book = answer["data"][0]
        assert answer["code"] == "0" and set(book) == {"asks", "bids", "ts"}
        assert book["bids"] == snapshot["data"][0]["bids"][:5] and book["asks"] == snapshot["data"][0]["asks"][:5]
        bids, asks = r.sim.market.levels("okx", "BTC-USDT-SWAP")
        assert [(dec(p), dec(q)) for p, q, _zero, _n in book["bids"]] == bids[:5]
        assert [(dec(p), dec(q)) for p, q, _zero, _n in book["asks"]] == asks[:5]
        too_deep = await asyncio.to_thread(market.get_orderbook, instId="BTC-USDT-SWAP", sz="401")
        assert too_deep["code"] == "51000"
        await asyncio.to_thread(market.close)


def recorded_row(venue: str, method: str) -> dict[str, Any]:
    """The first row of a recorded answer (shared/fixtures/<venue>/recorded_ccxt_rest_responses.json)."""
    case = next(c for c in fixture(f"{venue}/recorded_ccxt_rest_responses.json")["cases"] if c["method"] == method)
    answer = case["httpResponse"]
    rows = answer["data"] if venue == "okx" else answer["result"]["list"]
    return dict(rows[0])


async def test_okx_order_and_fill_rows_carry_every_recorded_field() -> None:
    async with rig() as r:
        trade, _public, _market = okx_apis(r)
        qty, px, _levels = r.sweep("okx", levels=1)
        placed = await asyncio.to_thread(trade.place_order, instId="BTC-USDT-SWAP", tdMode="cross", side="buy",
                                         ordType="ioc", sz=str(qty), px=str(px), clOrdId="rows1")
        assert placed["code"] == "0", placed
        order = (await asyncio.to_thread(trade.get_order, instId="BTC-USDT-SWAP", clOrdId="rows1"))["data"][0]
        fill = (await asyncio.to_thread(trade.get_fills, instType="SWAP"))["data"][0]
        assert set(recorded_row("okx", "fetchOrder")) <= set(order)
        assert set(recorded_row("okx", "fetchMyTrades")) <= set(fill)
        assert order["tradeId"] == fill["tradeId"] and dec(fill["fee"]) < 0 and dec(fill["feeRate"]) < 0
        assert dec(fill["fee"]) == dec(fill["feeRate"]) * dec(fill["fillSz"]) * dec(fill["fillPx"]) * dec("0.01")
        await asyncio.to_thread(trade.close)


# ------------------------------------------------------------------------------------------ Binance
async def test_binance_premium_index_numbers_are_in_the_fixed_8_decimal_form() -> None:
    async with rig() as r:
        client = binance_client(r)
        index = (await asyncio.to_thread(client.rest_api.mark_price, symbol="BTCUSDT")).data().actual_instance
        for value in (index.mark_price, index.index_price, index.estimated_settle_price, index.last_funding_rate,
                      index.interest_rate):
            assert EIGHT_DECIMALS.match(value), value
        rate, _interval_h, next_ms = r.sim.market.funding("binance", "BTCUSDT")
        assert dec(index.mark_price) == r.sim.market.mark("binance", "BTCUSDT")
        assert dec(index.last_funding_rate) == rate and index.next_funding_time == next_ms


async def test_binance_funding_rate_history_oldest_first_with_8_decimal_strings() -> None:
    async with rig() as r:
        client = binance_client(r)
        rate, interval_h, next_ms = r.sim.market.funding("binance", "BTCUSDT")
        rows = (await asyncio.to_thread(client.rest_api.get_funding_rate_history, symbol="BTCUSDT",
                                        limit=3)).data()
        assert [row.symbol for row in rows] == ["BTCUSDT"] * 3
        times = [row.funding_time for row in rows]
        assert times == [next_ms - k * interval_h * HOUR_MS for k in (3, 2, 1)]  # ascending, the latest three
        assert all(EIGHT_DECIMALS.match(row.funding_rate) and EIGHT_DECIMALS.match(row.mark_price) for row in rows)
        assert all(dec(row.funding_rate) == rate for row in rows)
        window = (await asyncio.to_thread(client.rest_api.get_funding_rate_history, symbol="BTCUSDT",
                                          start_time=times[0], limit=2)).data()
        assert [row.funding_time for row in window] == times[:2]  # from startTime on


async def test_binance_percent_price_filter_refuses_a_limit_beyond_the_mark_multipliers() -> None:
    """exchangeInfo's PERCENT_PRICE (multiplierUp 1.05, multiplierDown 0.95) is enforced: -4016 / -4024
    with the docs' texts (venue_errors.json); a price inside the band rests."""
    from binance_sdk_derivatives_trading_usds_futures.rest_api.models import (
        NewOrderSideEnum, NewOrderTimeInForceEnum, NewOrderTypeEnum,
    )

    docs = fixture("venue_errors.json")["binance_usdm"]["docs_codes"]["codes"]
    codes = {row["code"]: row["messages"][0] for row in docs}
    async with rig() as r:
        client = binance_client(r)
        mark = r.sim.market.mark("binance", "BTCUSDT")
        for side, price, code in ((NewOrderSideEnum.BUY, mark * Decimal("1.06"), -4016),
                                  (NewOrderSideEnum.SELL, mark * Decimal("0.94"), -4024)):
            with pytest.raises(Exception) as refused:
                await asyncio.to_thread(client.rest_api.new_order, symbol="BTCUSDT", side=side,
                                        type=NewOrderTypeEnum.LIMIT, time_in_force=NewOrderTimeInForceEnum.GTC,
                                        quantity=0.001, price=float(price.quantize(Decimal(1))))
            assert str(code) in str(refused.value) and codes[code] in str(refused.value)
        inside = (mark * Decimal("0.96")).quantize(Decimal(1))  # whole dollars: on the tick grid as a float
        rested = (await asyncio.to_thread(client.rest_api.new_order, symbol="BTCUSDT", side=NewOrderSideEnum.BUY,
                                          type=NewOrderTypeEnum.LIMIT, time_in_force=NewOrderTimeInForceEnum.GTC,
                                          quantity=0.001, price=float(inside))).data()
        assert rested.status == "NEW"


async def test_binance_trade_rows_carry_every_recorded_field() -> None:
    from binance_sdk_derivatives_trading_usds_futures.rest_api.models import (
        NewOrderSideEnum, NewOrderTimeInForceEnum, NewOrderTypeEnum,
    )

    case = next(c for c in fixture("binance/recorded_ccxt_rest_responses.json")["cases"]
                if c["method"] == "fetchMyTrades")
    recorded = case["httpResponse"][0]
    async with rig() as r:
        client = binance_client(r)
        qty, px, _levels = r.sweep("binance", levels=1)
        await asyncio.to_thread(client.rest_api.new_order, symbol="BTCUSDT", side=NewOrderSideEnum.BUY,
                                type=NewOrderTypeEnum.LIMIT, time_in_force=NewOrderTimeInForceEnum.IOC,
                                quantity=float(qty), price=float(px))
        [trade] = (await asyncio.to_thread(client.rest_api.account_trade_list, symbol="BTCUSDT")).data()
        sent = trade.to_dict()
        assert set(recorded) <= set(sent) and sent["marginAsset"] == "USDT"


# -------------------------------------------------------------------------------------------- Bybit
async def test_bybit_instrument_row_is_the_documented_one() -> None:
    """BTCUSDT as the docs' example row: priceScale "2", tick and prices "0.10"-style, funding cap 0.00375,
    no stray `settleCoin_`; the docs' `symbolId` (absent from their field table) is the one key not served."""
    documented = fixture("bybit/doc_instruments_info_linear_BTCUSDT.json")["result"]["list"][0]
    async with rig() as r:
        http = pybit_http(r)
        answer = await asyncio.to_thread(http.get_instruments_info, category="linear", symbol="BTCUSDT")
        row = answer["result"]["list"][0]
        expected = {k: v for k, v in documented.items() if k != "symbolId"}
        assert row == expected
        assert list(row) == list(expected)  # the same key order too
        ticker = (await asyncio.to_thread(http.get_tickers, category="linear", symbol="BTCUSDT"))["result"]["list"][0]
        assert ticker["fundingCap"] == row["upperFundingRate"]
        recorded = next(c for c in fixture("bybit/recorded_ccxt_rest_responses.json")["cases"]
                        if c["method"] == "fetchFundingRate")["httpResponse"]["result"]["list"][0]
        assert set(recorded) - {"timestamp"} <= set(ticker)  # every field of the recorded row ("timestamp" aside)
        assert re.match(r"^\d+\.\d{2}$", ticker["markPrice"]) and re.match(r"^\d+\.\d{3}$", ticker["bid1Size"])


async def test_bybit_rest_order_book_matches_the_book_and_the_streams_update_id() -> None:
    async with rig() as r:
        http = pybit_http(r)
        answer = await asyncio.to_thread(http.get_orderbook, category="linear", symbol="BTCUSDT", limit=5)
        book = answer["result"]
        assert set(book) == {"s", "b", "a", "ts", "u", "seq", "cts"} and book["s"] == "BTCUSDT"
        bids, asks = r.sim.market.levels("bybit", "BTCUSDT")
        assert [(dec(p), dec(q)) for p, q in book["b"]] == bids[:5]
        assert [(dec(p), dec(q)) for p, q in book["a"]] == asks[:5]
        assert all(re.match(r"^\d+\.\d{2}$", p) and re.match(r"^\d+\.\d{3}$", q) for p, q in book["b"] + book["a"])
        feed = r.sim.feeds["bybit"]
        assert book["u"] == feed.streams["orderbook.1000.BTCUSDT"].update_id  # type: ignore[attr-defined]
        assert book["seq"] == feed.cross_seq["BTCUSDT"]  # type: ignore[attr-defined]


async def test_bybit_funding_history_newest_first_and_start_time_alone_refused() -> None:
    from pybit.exceptions import InvalidRequestError

    async with rig() as r:
        http = pybit_http(r)
        rate, interval_h, next_ms = r.sim.market.funding("bybit", "BTCUSDT")
        answer = await asyncio.to_thread(http.get_funding_rate_history, category="linear", symbol="BTCUSDT", limit=3)
        rows = answer["result"]["list"]
        assert answer["result"]["category"] == "linear"
        assert [set(row) for row in rows] == [{"symbol", "fundingRate", "fundingRateTimestamp"}] * 3
        assert [int(row["fundingRateTimestamp"]) for row in rows] == [next_ms - k * interval_h * HOUR_MS
                                                                      for k in (1, 2, 3)]
        assert all(dec(row["fundingRate"]) == rate for row in rows)
        with pytest.raises(InvalidRequestError) as refused:
            await asyncio.to_thread(http.get_funding_rate_history, category="linear", symbol="BTCUSDT",
                                    startTime=next_ms - 10 * interval_h * HOUR_MS)
        assert refused.value.status_code == 10001


async def test_bybit_refuses_setting_the_leverage_it_already_has() -> None:
    """110043 "Set leverage has not been modified." (docs text, venue_errors.json) for a no-op change."""
    from pybit.exceptions import InvalidRequestError

    docs = {row["retCode"]: row["message"] for row in fixture("venue_errors.json")["bybit"]["docs_codes"]["codes"]}
    async with rig() as r:
        http = pybit_http(r)
        changed = await asyncio.to_thread(http.set_leverage, category="linear", symbol="BTCUSDT", buyLeverage="5",
                                          sellLeverage="5")
        assert changed["retCode"] == 0
        assert r.sim.exchanges["bybit"].account.leverage_of("BTCUSDT") == 5
        with pytest.raises(InvalidRequestError) as refused:
            await asyncio.to_thread(http.set_leverage, category="linear", symbol="BTCUSDT", buyLeverage="5",
                                    sellLeverage="5")
        assert (refused.value.status_code, refused.value.message) == (110043, docs[110043])


async def test_bybit_order_and_execution_rows_carry_every_recorded_field() -> None:
    async with rig() as r:
        http = pybit_http(r)
        qty, px, _levels = r.sweep("bybit", levels=1)
        placed = await asyncio.to_thread(http.place_order, category="linear", symbol="BTCUSDT", side="Buy",
                                         orderType="Limit", qty=str(qty), price=str(px), timeInForce="IOC",
                                         orderLinkId="rows1")
        assert placed["retCode"] == 0
        order = (await asyncio.to_thread(http.get_open_orders, category="linear", symbol="BTCUSDT",
                                         orderLinkId="rows1"))["result"]["list"][0]
        execution = (await asyncio.to_thread(http.get_executions, category="linear",
                                             symbol="BTCUSDT"))["result"]["list"][0]
        per_row_cursor = {"nextPageCursor"}  # the recorder's copy of the page cursor inside a row
        assert set(recorded_row("bybit", "fetchClosedOrder")) <= set(order)
        assert set(recorded_row("bybit", "fetchOpenOrder")) <= set(order)
        assert set(recorded_row("bybit", "fetchMyTrades")) - per_row_cursor <= set(execution)
        assert order["orderStatus"] == "Filled" and order["cumFeeDetail"] == {"USDT": order["cumExecFee"]}
