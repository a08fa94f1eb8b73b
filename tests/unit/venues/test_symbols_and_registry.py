"""Symbol mapping and exact instruments from real ccxt market dicts (ccxt's own parsers fed recorded venue responses)."""

from __future__ import annotations

import json
from decimal import Decimal

import ccxt
import pytest

from perpbot.settings import FeedSettings
from perpbot.venues import registry
from perpbot.venues.hyperliquid.symbols import hyperliquid_price_ok, tick_for


def _no_network(*args, **kwargs):
    raise AssertionError("tests never reach a venue")


def _okx_markets(shared_fixtures) -> dict[str, dict]:
    data = json.loads((shared_fixtures / "okx" / "recorded_cryptofeed_instruments_SWAP_excerpt_2022-05-13.json").read_text())
    exchange = ccxt.okx()
    exchange.fetch = _no_network
    return {m["id"]: m for m in map(exchange.parse_market, data["data_excerpt"])}


def _binance_markets(shared_fixtures) -> dict[str, dict]:
    data = json.loads((shared_fixtures / "binance" / "recorded_cryptofeed_exchangeInfo_excerpt_2021-07-22.json").read_text())
    exchange = ccxt.binanceusdm()
    exchange.fetch = _no_network
    return {m["id"]: m for m in map(exchange.parse_market, data["symbols_excerpt"])}


def _bybit_markets(shared_fixtures) -> dict[str, dict]:
    data = json.loads((shared_fixtures / "bybit" / "doc_instruments_info_linear_BTCUSDT.json").read_text())
    exchange = ccxt.bybit()
    exchange.fetch = _no_network
    # ccxt's own linear-market parser, fed the documented instruments-info response.
    exchange.publicGetV5MarketInstrumentsInfo = lambda params={}: data
    return {m["id"]: m for m in exchange.fetch_future_markets({"category": "linear"})}


def _hyperliquid_markets(shared_fixtures) -> dict[str, dict]:
    cassette = json.loads((shared_fixtures / "hyperliquid" / "sdk_cassette_test_get_l2_snapshot.json").read_text())
    universe = cassette[0]["response"]["universe"]
    exchange = ccxt.hyperliquid()
    exchange.fetch = _no_network
    markets = [exchange.parse_market(dict(asset, baseId=index)) for index, asset in enumerate(universe)]
    return {m["baseName"]: m for m in markets}


@pytest.mark.parametrize(
    ("venue", "native", "ccxt_symbol"),
    [
        ("okx", "BTC-USDT-SWAP", "BTC/USDT:USDT"),
        ("okx", "ETH-USDT-SWAP", "ETH/USDT:USDT"),
        ("binance", "BTCUSDT", "BTC/USDT:USDT"),
        ("binance", "1000PEPEUSDT", "1000PEPE/USDT:USDT"),
        ("bybit", "BTCUSDT", "BTC/USDT:USDT"),
        ("hyperliquid", "BTC", "BTC/USDC:USDC"),
        ("hyperliquid", "kPEPE", "kPEPE/USDC:USDC"),
    ],
)
def test_native_and_ccxt_symbols_round_trip(venue, native, ccxt_symbol):
    assert registry.to_ccxt_symbol(venue, native) == ccxt_symbol
    assert registry.from_ccxt_symbol(venue, ccxt_symbol) == native


@pytest.mark.parametrize(
    ("venue", "bad"), [("okx", "BTC-USDT"), ("binance", "USDT"), ("bybit", "BTC"), ("hyperliquid", "BTC/USDC")]
)
def test_symbols_that_are_not_perpetuals_are_refused(venue, bad):
    with pytest.raises(ValueError):
        registry.to_ccxt_symbol(venue, bad)


def test_okx_instrument_is_exact_and_in_contracts(shared_fixtures):
    market = _okx_markets(shared_fixtures)["BTC-USDT-SWAP"]
    inst = registry.instrument_from_ccxt_market("okx", market)
    assert inst.symbol == "BTC-USDT-SWAP" and inst.ccxt_symbol == "BTC/USDT:USDT"
    assert (inst.tick_size, inst.lot_size, inst.min_qty) == (Decimal("0.1"), Decimal("1"), Decimal("1"))
    assert inst.contract_size == Decimal("0.01") and inst.funding_interval_hours == 8
    assert (inst.taker_fee, inst.maker_fee) == (Decimal("0.0005"), Decimal("0.0002"))
    assert inst.base_to_venue_qty(Decimal("0.0537")) == Decimal("5")  # 5 contracts, rounded down
    eth = registry.instrument_from_ccxt_market("okx", _okx_markets(shared_fixtures)["ETH-USDT-SWAP"])
    assert eth.tick_size == Decimal("0.01") and eth.contract_size == Decimal("0.1")


def test_okx_instrument_from_floats_only_stays_exact(shared_fixtures):
    market = dict(_okx_markets(shared_fixtures)["ETH-USDT-SWAP"], info={})
    inst = registry.instrument_from_ccxt_market("okx", market)
    assert inst.tick_size == Decimal("0.01") and str(inst.contract_size) == "0.1"


def test_binance_instrument_uses_exchange_filters(shared_fixtures):
    markets = _binance_markets(shared_fixtures)
    inst = registry.instrument_from_ccxt_market("binance", markets["BTCUSDT"])
    assert (inst.tick_size, inst.lot_size, inst.min_qty, inst.min_notional) == (
        Decimal("0.01"), Decimal("0.001"), Decimal("0.001"), Decimal("5"))
    assert inst.contract_size == 1 and inst.funding_interval_hours == 8
    sushi = registry.instrument_from_ccxt_market("binance", markets["SUSHIUSDT"])
    assert sushi.tick_size == Decimal("0.001") and sushi.lot_size == Decimal("1")


def test_bybit_instrument_from_ccxt_linear_market(shared_fixtures):
    inst = registry.instrument_from_ccxt_market("bybit", _bybit_markets(shared_fixtures)["BTCUSDT"])
    assert (inst.tick_size, inst.lot_size, inst.min_qty, inst.min_notional) == (
        Decimal("0.10"), Decimal("0.001"), Decimal("0.001"), Decimal("5"))
    assert inst.funding_interval_hours == 8 and inst.taker_fee == Decimal("0.00055")
    assert inst.on_tick(Decimal("63982.7")) and not inst.on_tick(Decimal("63982.75"))


def test_hyperliquid_instrument_tick_from_sz_decimals(shared_fixtures):
    markets = _hyperliquid_markets(shared_fixtures)
    btc = registry.instrument_from_ccxt_market("hyperliquid", markets["BTC"])
    assert btc.symbol == "BTC" and btc.ccxt_symbol == "BTC/USDC:USDC"
    assert btc.tick_size == Decimal("0.1") and btc.lot_size == Decimal("0.00001")
    assert btc.funding_interval_hours == 1 and btc.min_notional == Decimal(10)
    assert (btc.taker_fee, btc.maker_fee) == (Decimal("0.00045"), Decimal("0.00015"))
    eth = registry.instrument_from_ccxt_market("hyperliquid", markets["ETH"])
    assert eth.tick_size == Decimal("0.01") == tick_for(4) and eth.lot_size == Decimal("0.0001")


@pytest.mark.parametrize(
    ("price", "sz_decimals", "ok"),
    [
        ("64094", 5, True),  # integers always allowed
        ("123456", 0, True),
        ("64094.5", 5, False),  # 6 significant figures
        ("6409.5", 5, True),
        ("1.2345", 1, True),
        ("0.00012345", 0, False),  # 8 decimals > 6
        ("0.012345", 0, True),
        ("0.12345", 2, False),  # 5 decimals > 6 - 2
        ("0", 2, False),
    ],
)
def test_hyperliquid_price_rule_five_significant_figures_and_decimals(price, sz_decimals, ok):
    assert hyperliquid_price_ok(Decimal(price), sz_decimals) is ok


def test_registry_lists_every_venue_and_builds_fresh_adapters():
    assert set(registry.FEED_ADAPTERS) == {"okx", "hyperliquid", "binance", "bybit"}
    settings = FeedSettings()
    for venue in registry.FEED_ADAPTERS:
        adapter = registry.feed_adapter(venue, settings)
        assert adapter.venue == venue and hasattr(adapter.rules, "check_sequence")
        assert adapter.rest_snapshot is (venue == "binance")
    assert registry.feed_adapter("bybit", settings) is not registry.feed_adapter("bybit", settings)
    with pytest.raises(ValueError):
        registry.feed_adapter("kraken", settings)
