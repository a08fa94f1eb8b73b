"""Fills and fees come from the venue's own decimal strings (ccxt's `info`), not from ccxt's floats:
recorded REST answers of each venue (../shared/fixtures/<venue>/recorded_ccxt_rest_responses.json) are
parsed by the real ccxt class, then read by the CcxtClient. No network: the client points nowhere."""

from __future__ import annotations

import json
from decimal import Decimal as D

import pytest

from perpbot.core.orders import OrderResult
from perpbot.execution.ccxt_client import CcxtClient
from perpbot.settings import VenueSettings
from perpbot.venues.registry import trading_spec

SETTINGS = VenueSettings(api_key="k", api_secret="s", passphrase="p",
                         wallet_address="0x7e5f4552091a69125d5dfcb7b8c2659029395bdf", private_key="0x" + "0" * 63 + "1")


def recorded(shared_fixtures, venue: str, method: str, description: str):
    cases = json.loads((shared_fixtures / venue / "recorded_ccxt_rest_responses.json").read_text())["cases"]
    return next(c["httpResponse"] for c in cases if c["method"] == method and c["description"] == description)


@pytest.fixture
async def clients():
    made: dict[str, CcxtClient] = {}

    def client(venue: str) -> CcxtClient:
        made.setdefault(venue, CcxtClient(venue, SETTINGS, "http://127.0.0.1:9", timeout_s=1.0))
        return made[venue]

    yield client
    for made_client in made.values():
        await made_client.close()


# (venue, method, description, path to the order in the answer, symbol) -> (status, qty, filled, average, fee)
ORDERS = [
    # OKX reports the fee charged as a negative number ("-0.0001"): booked as +0.0001 paid.
    (("okx", "fetchOrder", "fetch spot order", lambda r: r["data"][0], "LTC-USDT"),
     ("filled", "0.1", "0.1", "101.58", "0.0001")),
    # Binance: avgPrice "0.00000" before a fill is no price; USD-M orders carry no commission.
    (("binance", "fetchOpenOrder", "swap open order", lambda r: r, "LTCUSDT"),
     ("open", "0.200", "0", None, "0")),
    # Bybit: cumExecFee is the venue's fee (ccxt reads only cumFeeDetail, absent from this answer).
    (("bybit", "fetchOrder", "Spot sell closed order", lambda r: r["result"]["list"][0], "XRPUSDT"),
     ("filled", "123.00", "123.00", "0.5351", "0.0658173")),
    (("bybit", "fetchClosedOrder", "Fetch swap closed order by its ID and symbol",
      lambda r: r["result"]["list"][0], "BTCUSDT"), ("filled", "0.001", "0.001", "123498", "0.0679239")),
    # Hyperliquid's order answer: {"filled": {totalSz, avgPx}} (no status: the client queries it).
    (("hyperliquid", "createOrder", "create order", lambda r: r["response"]["data"]["statuses"][0], "HYPE"),
     ("open", "1.0", "1.0", "25.585", "0")),
    # Hyperliquid's order status: filled = origSz - sz, no price or fee (those come from userFills).
    (("hyperliquid", "fetchOrder", "fetch order", lambda r: r["order"], "ETH"),
     ("filled", "0.2", "0.2", None, "0")),
    (("hyperliquid", "fetchOrder", "fetchOrder with both ts", lambda r: r["order"], "PURR"),
     ("canceled", "50.0", "0.0", None, "0")),
]


@pytest.mark.parametrize(("where", "expected"), ORDERS, ids=[f"{w[0]}-{w[2]}" for w, _ in ORDERS])
async def test_order_answers_are_read_from_the_venue_strings(shared_fixtures, clients, where, expected):
    venue, method, description, pick, symbol = where
    client = clients(venue)
    order = client.exchange.parse_order(pick(recorded(shared_fixtures, venue, method, description)))
    result = client._to_result(order, symbol, "cid")
    status, qty, filled, average, fee = expected
    assert (result.status, result.qty, result.filled_qty, result.avg_price, result.fee) == (
        status, D(qty), D(filled), None if average is None else D(average), D(fee))
    assert all(isinstance(x, D) for x in (result.qty, result.filled_qty, result.fee))


TRADES = [
    ("okx", "fetchMyTrades", "Fetch spot trade", lambda r: r["data"][0], ("0.1", "67.84", "0.0001")),
    ("binance", "fetchMyTrades", "Swap private trade", lambda r: r[0], ("0.010", "36567.10", "0.14626840")),
    ("bybit", "fetchMyTrades", "Swap private trade", lambda r: r["result"]["list"][0], ("1.2", "72.25", "0.00867")),
    # Hyperliquid: a builder's fee is a fee paid too (fee + builderFee, as ccxt adds them).
    ("hyperliquid", "fetchMyTrades", "trades with builderFee", lambda r: r[0], ("0.73", "33.209", "0.015320")),
    ("hyperliquid", "fetchMyTrades", "user trades", lambda r: r[0], ("0.5", "132.31", "0.023154")),
]


@pytest.mark.parametrize(("venue", "method", "description", "pick", "expected"), TRADES,
                         ids=[f"{t[0]}-{t[2]}" for t in TRADES])
async def test_trades_are_read_from_the_venue_strings(shared_fixtures, clients, venue, method, description, pick,
                                                     expected):
    client = clients(venue)
    trade = client.exchange.parse_trade(pick(recorded(shared_fixtures, venue, method, description)))
    fill = trading_spec(venue).trade_fill(trade)
    assert (fill.filled, fill.average, fill.fee) == tuple(D(x) for x in expected)


async def test_fill_details_from_the_venue_trade_list(shared_fixtures, clients):
    """An order status without price or fee (Hyperliquid) completed from its own fills in userFills:
    the average and the fee (0.012896 + builder 0.002424) exactly as the venue wrote them."""
    client = clients("hyperliquid")
    raw = recorded(shared_fixtures, "hyperliquid", "fetchMyTrades", "trades with builderFee")

    async def fetch_my_trades(symbol):
        return [client.exchange.parse_trade(t) for t in raw]

    client.exchange.fetch_my_trades = fetch_my_trades
    order = {"id": "314848230306", "status": "closed", "side": "buy",
             "info": {"order": {"origSz": "0.73", "sz": "0.0"}, "status": "filled"}}
    result = await client._fill_details(order, client._to_result(order, "HYPE", "cid"), "HYPE/USDC:USDC")
    assert (result.filled_qty, result.avg_price, result.fee) == (D("0.73"), D("33.209"), D("0.015320"))


def test_trades_that_do_not_add_up_leave_the_result_as_reported(clients):
    client = clients("okx")
    result = OrderResult("okx", "BTC-USDT-SWAP", "cid", "1", "filled", "buy", D(3), D(3), None, D(0))
    trades = [{"order": "1", "info": {"fillSz": "2", "fillPx": "30000.1", "fee": "-0.03"}}]
    assert client._from_trades(result, trades) is result
    trades.append({"order": "1", "info": {"fillSz": "1", "fillPx": "30000.4", "fee": "-0.015"}})
    done = client._from_trades(result, trades)
    assert (done.avg_price, done.fee) == (D("90000.6") / 3, D("0.045"))


def test_venue_strings_stay_exact_where_a_float_would_round(clients):
    """Twenty significant digits survive; ccxt's float of the same string would not."""
    client = clients("okx")
    size, price = "123456.78901234567891", "30123.456789012345678"
    order = {"id": "1", "status": "closed", "side": "buy", "filled": float(size), "amount": float(size),
             "average": float(price),
             "info": {"accFillSz": size, "sz": size, "avgPx": price, "fee": "-1.234567890123456789"}}
    result = client._to_result(order, "BTC-USDT-SWAP", "cid")
    assert (result.filled_qty, result.qty, result.avg_price, result.fee) == (
        D(size), D(size), D(price), D("1.234567890123456789"))
    assert D(str(float(size))) != D(size)


def test_ccxt_numbers_stand_in_only_where_the_venue_answer_lacks_the_field(clients):
    """An OKX acknowledgement has ids only: nothing to read, so ccxt's fields (here None) decide."""
    client = clients("okx")
    ack = client.exchange.parse_order({"clOrdId": "pbx", "ordId": "7", "sCode": "0", "sMsg": "", "tag": ""})
    assert client._numbers(ack, "BTC-USDT-SWAP").filled is None
    partial = {"id": "7", "status": "canceled", "side": "sell", "filled": 0.3, "amount": 1.0,
               "average": 100.5, "fee": {"cost": 0.01}, "info": {"state": "canceled"}}
    result = client._to_result(partial, "BTC-USDT-SWAP", "cid")
    assert (result.status, result.filled_qty, result.qty, result.avg_price, result.fee) == (
        "partially_filled", D("0.3"), D("1.0"), D("100.5"), D("0.01"))
