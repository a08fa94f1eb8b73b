"""The real ccxt.hyperliquid class trades against the simulator's Hyperliquid /info and /exchange on loopback."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aiohttp
import ccxt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from perpbot.sim.faults import Fault, FaultBoard
from perpbot.sim.market import Market
from perpbot.sim.trading import SimExchange, add_trading_routes
from perpbot.sim.trading.clients import make_ccxt_client
from perpbot.sim.trading.hyperliquid import API_KEY, HyperliquidApi, valid_price

BTC = "BTC/USDC:USDC"
ETH = "ETH/USDC:USDC"
NOW_S = 1_700_000_000.0


class FrozenClock:
    """Seconds clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Env:
    sim: SimExchange
    market: Market
    faults: FaultBoard
    client: Any
    base_url: str
    wallet: str
    api: HyperliquidApi
    clock: FrozenClock

    def levels(self, coin: str = "BTC"):
        return self.market.levels("hyperliquid", coin)

    def inst(self, coin: str = "BTC"):
        return self.market.instrument("hyperliquid", coin)


@pytest.fixture
async def env():
    clock = FrozenClock(NOW_S)
    market = Market(seed=11, clock=clock)
    faults = FaultBoard()
    app = web.Application()
    sim = add_trading_routes(app, "hyperliquid", market, faults, clock)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    base_url = f"http://127.0.0.1:{server.port}"
    # A fresh random key per test: the simulator must accept any signer.
    wallet = "0x" + secrets.token_hex(20)
    client = make_ccxt_client("hyperliquid", base_url, timeout=3000,
                              privateKey="0x" + secrets.token_hex(32), walletAddress=wallet)
    await client.load_markets()
    try:
        yield Env(sim, market, faults, client, base_url, wallet, app[API_KEY], clock)
    finally:
        await client.close()
        await server.close()


def dec(value: Any) -> Decimal:
    return Decimal(str(value))


def cloid() -> str:
    return "0x" + uuid.uuid4().hex


async def test_markets_load_with_tick_from_the_szdecimals_rule_and_contract_size_one(env: Env):
    btc, eth = env.client.market(BTC), env.client.market(ETH)
    assert btc["swap"] and btc["linear"] and btc["settle"] == "USDC"
    assert btc["baseId"] == "0" and eth["baseId"] == "1"  # the asset index orders are sent with
    for market, coin in ((btc, "BTC"), (eth, "ETH")):
        inst = env.inst(coin)
        assert dec(market["contractSize"]) == 1 == inst.contract_size
        assert dec(market["precision"]["amount"]) == inst.lot
        # ccxt derives the tick from markPx and szDecimals (5 significant figures, <= 6 - szDecimals decimals).
        assert dec(market["precision"]["price"]) == inst.tick
        assert market["limits"]["leverage"]["max"] == inst.max_leverage
        assert dec(market["limits"]["cost"]["min"]) == inst.min_notional


async def test_ioc_fills_and_moves_position_and_balance_by_the_taker_fee(env: Env):
    inst = env.inst()
    _bids, asks = env.levels()
    price, size = asks[0]
    qty = min(size, inst.lot * 100)
    order = await env.client.create_order(BTC, "limit", "buy", float(qty), float(price), {"timeInForce": "IOC"})
    assert dec(order["filled"]) == qty and dec(order["average"]) == price
    fetched = await env.client.fetch_order(order["id"], BTC)
    assert fetched["status"] == "closed" and dec(fetched["filled"]) == qty and dec(fetched["remaining"]) == 0
    fee = qty * price * inst.taker_fee
    assert env.sim.account.wallet == Decimal(100000) - fee
    positions = await env.client.fetch_positions([BTC])
    assert len(positions) == 1
    assert positions[0]["side"] == "long" and dec(positions[0]["contracts"]) == qty
    assert dec(positions[0]["entryPrice"]) == price
    balance = await env.client.fetch_balance()
    assert abs(dec(balance["USDC"]["total"]) - env.sim.margin()["equity"]) < Decimal("1e-9")
    assert env.wallet.lower() in env.api.users_seen


async def test_market_order_arrives_as_a_slippage_ioc_and_fills_at_the_book(env: Env):
    bids, _asks = env.levels()
    env.sim.set_position("BTC", Decimal("0.002"), bids[0][0])
    qty = min(bids[0][1], Decimal("0.001"))
    order = await env.client.create_order(BTC, "market", "sell", float(qty), float(bids[0][0]))
    assert dec(order["filled"]) == qty and dec(order["average"]) == bids[0][0]
    placed = env.sim.account.orders[order["id"]]
    # ccxt sent a limit 5% through the touch with tif Ioc.
    assert placed.time_in_force == "IOC" and placed.price < bids[0][0]


async def test_ioc_bigger_than_the_marketable_depth_fills_partially_and_cancels_the_rest(env: Env):
    _bids, asks = env.levels()
    limit = asks[1][0]
    depth = asks[0][1] + asks[1][1]
    env.sim.set_leverage("BTC", Decimal(20))
    qty = depth + env.inst().lot * 5
    order = await env.client.create_order(BTC, "limit", "buy", float(qty), float(limit), {"timeInForce": "IOC"})
    assert dec(order["filled"]) == depth
    fetched = await env.client.fetch_order(order["id"], BTC)
    assert fetched["status"] == "canceled" and dec(fetched["filled"]) == depth
    assert env.sim.account.positions["BTC"].size == depth


async def test_resting_limit_is_listed_fetched_by_client_id_and_cancelled(env: Env):
    inst = env.inst()
    bids, _asks = env.levels()
    price = bids[0][0] - inst.tick * 50
    cid = cloid()
    order = await env.client.create_order(BTC, "limit", "buy", 0.001, float(price), {"clientOrderId": cid})
    assert order["status"] is None and order["id"] == env.sim.account.order_by(client_id=cid).order_id
    open_orders = await env.client.fetch_open_orders(BTC)
    assert [o["id"] for o in open_orders] == [order["id"]]
    assert open_orders[0]["clientOrderId"] == cid and dec(open_orders[0]["price"]) == price
    by_cid = await env.client.fetch_order("", BTC, {"clientOrderId": cid})
    assert by_cid["id"] == order["id"] and by_cid["status"] == "open"
    assert dec(by_cid["amount"]) == Decimal("0.001") and dec(by_cid["filled"]) == 0
    await env.client.cancel_order(order["id"], BTC)
    assert await env.client.fetch_open_orders(BTC) == []
    assert (await env.client.fetch_order(order["id"], BTC))["status"] == "canceled"


async def test_resting_limit_is_cancelled_by_client_order_id(env: Env):
    bids, _asks = env.levels()
    cid = cloid()
    await env.client.create_order(BTC, "limit", "buy", 0.001, float(bids[0][0] - 100), {"clientOrderId": cid})
    cancelled = await env.client.cancel_order("", BTC, {"clientOrderId": cid})
    assert cancelled["status"] == "success"
    assert env.sim.account.order_by(client_id=cid).status == "canceled"


async def test_resting_limit_fills_as_maker_when_the_market_trades_through_it(env: Env):
    inst = env.inst()
    _bids, asks = env.levels()
    price = asks[0][0] - inst.tick * 5
    order = await env.client.create_order(BTC, "limit", "buy", 0.001, float(price))
    env.market.apply_jump("hyperliquid", "BTC", -200.0)
    for _ in range(3):
        env.market.step()
    fetched = await env.client.fetch_order(order["id"], BTC)
    assert fetched["status"] == "closed"
    trades = await env.client.fetch_my_trades(BTC)
    assert trades[0]["takerOrMaker"] == "maker" and dec(trades[0]["price"]) == price
    assert dec(trades[0]["fee"]["cost"]) == Decimal("0.001") * price * inst.maker_fee


async def test_my_trades_show_the_fills_with_fees(env: Env):
    inst = env.inst()
    _bids, asks = env.levels()
    qty = min(asks[0][1], Decimal("0.001"))
    order = await env.client.create_order(BTC, "limit", "buy", float(qty), float(asks[0][0]), {"timeInForce": "Ioc"})
    trades = await env.client.fetch_my_trades(BTC)
    assert len(trades) == 1
    trade = trades[0]
    assert trade["order"] == order["id"] and trade["side"] == "buy" and trade["takerOrMaker"] == "taker"
    assert dec(trade["amount"]) == qty and dec(trade["price"]) == asks[0][0]
    assert dec(trade["fee"]["cost"]) == qty * asks[0][0] * inst.taker_fee
    assert trade["fee"]["currency"] == "USDC"


async def test_funding_rate_and_history_come_from_the_market(env: Env):
    rate, _interval, _next = env.market.funding("hyperliquid", "BTC")
    funding = await env.client.fetch_funding_rate(BTC)
    assert dec(funding["fundingRate"]) == rate and funding["interval"] == "1h"
    history = await env.client.fetch_funding_rate_history(BTC, since=int(NOW_S * 1000) - 5 * 3_600_000)
    assert len(history) == 5 and all(dec(h["fundingRate"]) == rate for h in history)


async def test_set_leverage_is_applied_and_shown_on_the_position(env: Env):
    response = await env.client.set_leverage(7, BTC)
    assert response == {"status": "ok", "response": {"type": "default"}}
    assert env.sim.account.leverage_of("BTC") == 7
    env.sim.set_position("BTC", Decimal("0.01"), Decimal("60000"))
    positions = await env.client.fetch_positions([BTC])
    assert positions[0]["leverage"] == 7 and positions[0]["marginMode"] == "cross"


async def test_leverage_above_the_maximum_is_refused(env: Env):
    with pytest.raises(ccxt.ExchangeError, match="Invalid leverage value"):
        await env.client.set_leverage(41, BTC)
    assert env.sim.account.leverage_of("BTC") == 1


async def test_insufficient_margin_raises_insufficient_funds(env: Env):
    inst = env.inst()
    _bids, asks = env.levels()
    # 1x leverage: an order worth ~2.5x the balance cannot be margined.
    qty = (Decimal(250000) / asks[0][0] // inst.lot) * inst.lot
    with pytest.raises(ccxt.InsufficientFunds, match="Insufficient margin to place order"):
        await env.client.create_order(BTC, "limit", "buy", float(qty), float(asks[0][0] - 100))
    assert env.sim.account.open_orders() == []


async def test_reduce_only_that_would_open_a_position_is_rejected_as_invalid_order(env: Env):
    bids, _asks = env.levels()
    with pytest.raises(ccxt.InvalidOrder, match="Reduce only order would increase position"):
        await env.client.create_order(BTC, "limit", "sell", 0.001, float(bids[0][0]),
                                      {"timeInForce": "IOC", "reduceOnly": True})
    assert env.sim.account.fills == []


async def test_order_below_ten_dollars_is_rejected_as_invalid_order(env: Env):
    _bids, asks = env.levels()
    with pytest.raises(ccxt.InvalidOrder, match=r"minimum value of \$10"):
        await env.client.create_order(BTC, "limit", "buy", 0.0001, float(asks[0][0]))
    assert env.sim.account.orders == {}


async def test_post_only_that_would_cross_is_rejected_as_invalid_order(env: Env):
    _bids, asks = env.levels()
    with pytest.raises(ccxt.InvalidOrder, match="Post only order would have immediately matched"):
        await env.client.create_order(BTC, "limit", "buy", 0.001, float(asks[0][0]), {"postOnly": True})
    assert env.sim.account.open_orders() == []


async def test_ioc_with_nothing_to_trade_against_is_rejected_as_invalid_order(env: Env):
    bids, _asks = env.levels()
    with pytest.raises(ccxt.InvalidOrder, match="could not immediately match"):
        await env.client.create_order(BTC, "limit", "buy", 0.001, float(bids[0][0] - 10), {"timeInForce": "IOC"})
    assert env.sim.account.fills == []


async def test_price_off_the_significant_figures_rule_answers_invalid_price(env: Env):
    # ccxt rounds prices before sending, so the raw action is sent through ccxt's own request/error path.
    # "Order has invalid price." is not in ccxt's table: the real venue's answer surfaces as ExchangeError.
    action = {"type": "order", "grouping": "na", "orders": [
        {"a": 0, "b": True, "p": "59936.5", "s": "0.001", "r": False, "t": {"limit": {"tif": "Gtc"}}}]}
    with pytest.raises(ccxt.ExchangeError, match="Order has invalid price") as raised:
        await env.client.privatePostExchange({"action": action, "nonce": 1, "signature": {}})
    assert not isinstance(raised.value, ccxt.InvalidOrder)
    assert valid_price(Decimal("59936"), 5) and valid_price(Decimal("3004.4"), 4)
    assert not valid_price(Decimal("3004.45"), 4) and not valid_price(Decimal("1.234567"), 0)
    assert env.sim.account.orders == {}


async def test_unknown_order_raises_order_not_found(env: Env):
    with pytest.raises(ccxt.OrderNotFound):
        await env.client.fetch_order("999999999", BTC)
    with pytest.raises(ccxt.OrderNotFound, match="Order was never placed"):
        await env.client.cancel_order("999999999", BTC)
    with pytest.raises(ccxt.OrderNotFound):
        await env.client.fetch_order("", BTC, {"clientOrderId": cloid()})


async def test_rate_limit_fault_answers_429_as_rate_limit_exceeded(env: Env):
    env.faults.add(Fault("rate_limit", "hyperliquid", params={"retry_after_s": 2}))
    with pytest.raises(ccxt.RateLimitExceeded, match="429"):
        await env.client.fetch_balance()
    assert env.client.last_response_headers.get("Retry-After") == "2"
    assert env.faults.fired[("hyperliquid", "rate_limit")] == 1
    assert (await env.client.fetch_balance())["USDC"]["total"] == 100000


async def test_maintenance_raises_exchange_not_available(env: Env):
    env.faults.add(Fault("maintenance", "hyperliquid", duration_s=30))
    with pytest.raises(ccxt.ExchangeNotAvailable):
        await env.client.fetch_positions([BTC])
    _bids, asks = env.levels()
    with pytest.raises(ccxt.ExchangeNotAvailable):
        await env.client.create_order(BTC, "limit", "buy", 0.001, float(asks[0][0]), {"timeInForce": "IOC"})
    assert env.sim.account.orders == {}


async def test_rest_5xx_raises_exchange_not_available(env: Env):
    env.faults.add(Fault("rest_5xx", "hyperliquid", params={"status": 502}))
    with pytest.raises(ccxt.ExchangeNotAvailable):
        await env.client.fetch_open_orders(BTC)


async def test_reject_fault_refuses_the_order_without_placing_it(env: Env):
    _bids, asks = env.levels()
    env.faults.add(Fault("reject", "hyperliquid"))
    with pytest.raises(ccxt.ExchangeError, match="rejected"):
        await env.client.create_order(BTC, "limit", "buy", 0.001, float(asks[0][0]), {"timeInForce": "IOC"})
    assert env.sim.account.orders == {}


async def test_insufficient_margin_fault_raises_insufficient_funds(env: Env):
    _bids, asks = env.levels("ETH")
    env.faults.add(Fault("insufficient_margin", "hyperliquid"))
    with pytest.raises(ccxt.InsufficientFunds, match="asset=1"):
        await env.client.create_order(ETH, "limit", "buy", 0.01, float(asks[0][0]), {"timeInForce": "IOC"})
    assert env.sim.account.orders == {}


async def test_partial_fill_fault_fills_only_the_given_ratio_of_an_ioc(env: Env):
    _bids, asks = env.levels()
    env.sim.set_leverage("BTC", Decimal(20))
    qty = min(asks[0][1], Decimal("0.2"))
    env.faults.add(Fault("partial_fill", "hyperliquid", params={"ratio": "0.5"}))
    order = await env.client.create_order(BTC, "limit", "buy", float(qty), float(asks[0][0]),
                                          {"timeInForce": "IOC"})
    assert dec(order["filled"]) == qty / 2
    assert env.sim.account.positions["BTC"].size == qty / 2


async def test_lost_response_places_the_order_but_the_client_sees_a_network_error(env: Env):
    _bids, asks = env.levels()
    qty = min(asks[0][1], Decimal("0.001"))
    cid = cloid()
    env.faults.add(Fault("lost_response", "hyperliquid"))
    with pytest.raises(ccxt.NetworkError):
        await env.client.create_order(BTC, "limit", "buy", float(qty), float(asks[0][0]),
                                      {"timeInForce": "IOC", "clientOrderId": cid})
    placed = env.sim.account.order_by(client_id=cid)
    assert placed is not None and placed.filled == qty
    # Reconciliation by client order id finds it.
    found = await env.client.fetch_order("", BTC, {"clientOrderId": cid})
    assert found["status"] == "closed" and dec(found["filled"]) == qty


async def test_timeout_fault_holds_the_answer_past_the_client_timeout(env: Env):
    _bids, asks = env.levels()
    env.client.timeout = 300
    env.faults.add(Fault("timeout", "hyperliquid", params={"hold_s": 2, "placed": False}))
    with pytest.raises(ccxt.RequestTimeout):
        await env.client.create_order(BTC, "limit", "buy", 0.001, float(asks[0][0]), {"timeInForce": "IOC"})
    assert env.sim.account.orders == {}


async def test_position_changed_behind_the_bots_back_shows_in_fetch_positions(env: Env):
    env.sim.set_position("ETH", Decimal("-0.5"), Decimal("3000"))
    positions = await env.client.fetch_positions([ETH])
    assert positions[0]["side"] == "short" and dec(positions[0]["contracts"]) == Decimal("0.5")
    assert dec(positions[0]["entryPrice"]) == 3000


async def test_public_info_answers_book_mids_and_empty_spot_universe(env: Env):
    book = await env.client.fetch_order_book(ETH)
    bids, asks = env.levels("ETH")
    assert dec(book["bids"][0][0]) == bids[0][0] and dec(book["asks"][0][0]) == asks[0][0]
    async with aiohttp.ClientSession() as http:
        async with http.post(env.base_url + "/info", json={"type": "spotMeta"}) as resp:
            assert await resp.json() == {"universe": [], "tokens": []}
        async with http.post(env.base_url + "/info", json={"type": "allMids"}) as resp:
            mids = await resp.json()
        assert dec(mids["ETH"]) == (bids[0][0] + asks[0][0]) / 2
        async with http.post(env.base_url + "/exchange", json={"action": {"type": "order"}}) as resp:
            assert resp.status == 422  # unsigned body: Hyperliquid cannot deserialize it


async def test_trading_fee_is_the_venue_taker_and_maker_rate(env: Env):
    fee = await env.client.fetch_trading_fee(BTC)
    assert dec(fee["taker"]) == env.inst().taker_fee and dec(fee["maker"]) == env.inst().maker_fee


async def test_hourly_funding_payment_shows_in_funding_history(env: Env):
    env.sim.settle_funding()  # arms the next settlement time
    _rate, _interval_h, next_ms = env.market.funding("hyperliquid", "BTC")
    env.sim.set_position("BTC", Decimal("0.01"), Decimal("60000"))
    env.clock.now = next_ms / 1000 + 1
    history = await env.client.fetch_funding_history(BTC, since=next_ms - 1)
    payments = [p for p in env.sim.account.funding if p.symbol == "BTC"]
    assert len(payments) == 1 and payments[0].ts_ms == next_ms
    btc = [h for h in history if h["symbol"] == BTC]
    assert len(btc) == 1 and btc[0]["timestamp"] == next_ms
    assert dec(btc[0]["amount"]) == -Decimal("0.01") * payments[0].mark * payments[0].rate == payments[0].amount


async def test_an_order_naming_a_builder_the_account_never_approved_is_refused_as_the_venue_does(env: Env):
    """Live Hyperliquid refuses an order whose `builder` the wallet never approved, even at fee 0
    ("Builder fee has not been approved.", venue_errors.json); once approved, the same order goes."""
    inst = env.inst()
    _bids, asks = env.levels()
    price, size = asks[0]
    # Above the venue's $10 minimum, within the top level.
    qty = min(size, (Decimal(20) / price / inst.lot).to_integral_value(rounding="ROUND_UP") * inst.lot)
    builder = "0x" + "ab" * 20
    wire = {"a": 0, "b": True, "p": format(price, "f"), "s": format(qty, "f"), "r": False,
            "t": {"limit": {"tif": "Ioc"}}}
    signature = {"r": "0x1", "s": "0x2", "v": 27}

    def signed(action: dict, nonce: int) -> dict:
        return {"action": action, "nonce": nonce, "signature": signature}

    order = {"type": "order", "orders": [wire], "grouping": "na", "builder": {"b": builder, "f": 0}}
    async with aiohttp.ClientSession() as http:
        async with http.post(env.base_url + "/exchange", json=signed(order, 1)) as resp:
            refused = await resp.json()
        assert refused == {"status": "err", "response": "Builder fee has not been approved."}
        assert not env.sim.account.fills  # nothing traded
        approve = {"type": "approveBuilderFee", "hyperliquidChain": "Mainnet", "maxFeeRate": "0.001%",
                   "builder": builder, "nonce": 2}
        async with http.post(env.base_url + "/exchange", json=signed(approve, 2)) as resp:
            assert (await resp.json())["status"] == "ok"
        async with http.post(env.base_url + "/exchange", json=signed(order, 3)) as resp:
            placed = await resp.json()
    assert placed["status"] == "ok" and "filled" in placed["response"]["data"]["statuses"][0]
    assert sum(f.qty for f in env.sim.account.fills) == qty
