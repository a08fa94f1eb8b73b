"""The venues as data: trading specs (ccxt options, credentials, client ids, order params), shared feed
helpers and the registry as the one list of venues. Expected values are the wire the venues expect."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from perpbot.core.events import ParseError
from perpbot.core.numbers import decimal_or_none, plain, plain_or_none, scaled_to_decimal, scaled_to_str, venue_decimal
from perpbot.core.orders import OrderRequest
from perpbot.settings import FeedSettings, VenueSettings
from perpbot.venues import registry
from perpbot.venues._trading import FillFields
from perpbot.venues.binance import orders as binance_orders
from perpbot.venues.hyperliquid import orders as hyperliquid_orders
from perpbot.venues.okx import orders as okx_orders

KEYS = VenueSettings(api_key="k", api_secret="s", passphrase="p",
                     wallet_address="0x7e5f4552091a69125d5dfcb7b8c2659029395bdf", private_key="0x" + "0" * 63 + "1")


def request(venue: str, tif: str = "IOC", reduce_only: bool = False) -> OrderRequest:
    return OrderRequest(venue, "X", "buy", Decimal(1), Decimal(2), "pbabc1230", reduce_only,
                        tif)  # type: ignore[arg-type]


def test_the_registry_is_the_one_list_of_venues():
    assert list(registry.VENUES) == ["okx", "hyperliquid", "binance", "bybit"]
    assert list(registry.FEED_ADAPTERS) == list(registry.VENUES)
    for name in registry.VENUES:
        assert registry.trading_spec(name).venue == name
        assert registry.feed_adapter(name, FeedSettings()).venue == name
    with pytest.raises(ValueError, match="unknown venue 'kraken'"):
        registry.trading_spec("kraken")


@pytest.mark.parametrize(("venue", "params"), [
    ("okx", {"clOrdId": "pbabc1230", "tdMode": "cross", "timeInForce": "IOC", "reduceOnly": True}),
    ("binance", {"newClientOrderId": "pbabc1230", "timeInForce": "IOC", "reduceOnly": True}),
    ("bybit", {"orderLinkId": "pbabc1230", "timeInForce": "IOC", "reduceOnly": True}),
    ("hyperliquid", {"clientOrderId": "pbabc1230", "timeInForce": "Ioc", "reduceOnly": True}),
])
def test_order_params_name_our_client_id_in_the_venue_parameter(venue, params):
    spec = registry.trading_spec(venue)
    assert spec.order_params(request(venue, reduce_only=True)) == params
    gtc = spec.order_params(request(venue, tif="GTC"))
    assert gtc.get("timeInForce") == ("Gtc" if venue == "hyperliquid" else None) and "reduceOnly" not in gtc


def test_lookup_params_per_venue():
    lookups = {venue: (registry.trading_spec(venue).fetch_params("c"), registry.trading_spec(venue).cancel_params("c"))
               for venue in registry.VENUES}
    assert lookups == {
        "okx": ({"clOrdId": "c"}, {"clOrdId": "c"}),
        "hyperliquid": ({"clientOrderId": "c"}, {"clientOrderId": "c"}),
        "binance": ({"origClientOrderId": "c"}, {"origClientOrderId": "c"}),
        "bybit": ({"orderLinkId": "c", "acknowledged": True}, {"orderLinkId": "c"}),
    }


def test_credentials_go_to_their_ccxt_keys_and_only_the_venue_s_own():
    configs = {venue: registry.trading_spec(venue).ccxt_config(KEYS) for venue in registry.VENUES}
    assert {k: v for k, v in configs["okx"].items() if k != "options"} == {
        "apiKey": "k", "secret": "s", "password": "p", "headers": {"x-simulated-trading": "1"}}
    for venue in ("binance", "bybit"):
        assert {k: v for k, v in configs[venue].items() if k != "options"} == {"apiKey": "k", "secret": "s"}
    assert {k: v for k, v in configs["hyperliquid"].items() if k != "options"} == {
        "walletAddress": KEYS.wallet_address, "privateKey": "0x" + "0" * 63 + "1"}
    mainnet = registry.trading_spec("okx").ccxt_config(VenueSettings(environment="mainnet"))
    assert mainnet == {"options": {"defaultType": "swap", "fetchMarkets": {"types": ["swap"]}, "brokerId": None,
                                   "defaultMarginMode": "cross"}}  # no keys set, no demo header


def test_client_id_formats():
    assert okx_orders.format_client_id("pb-abc_12.3:x") == "pbabc123x"
    assert len(okx_orders.format_client_id("a" * 40)) == 32
    assert binance_orders.format_client_id("pb-abc_12.3:x/ y!") == "pb-abc_12.3:x/y"
    assert re.fullmatch(r"0x[0-9a-f]{32}", hyperliquid_orders.format_client_id("pbabc1230"))
    assert hyperliquid_orders.format_client_id("pbabc1230") == hyperliquid_orders.format_client_id("pbabc1230")
    with pytest.raises(ValueError, match="empty client order id"):
        okx_orders.format_client_id("-_-")


def test_fill_fields_read_only_the_venue_s_decimal_strings():
    fields = FillFields(filled="a.filled", average="avg", cost="cost", fee=("fee", "extra"), fee_sign=-1,
                        amount="order.amount", remaining="order.left")
    assert fields.read({"a": {"filled": "1.5"}, "avg": "2", "fee": "-0.1", "extra": "-0.05"}).fee == Decimal("0.15")
    derived = fields.read({"order": {"amount": "3", "left": "1.25"}, "avg": "0", "cost": "7"})
    assert (derived.filled, derived.amount, derived.average) == (Decimal("1.75"), Decimal(3), Decimal(4))
    absent = fields.read({"a": {"filled": 1.5}, "avg": "", "fee": None, "extra": "-1", "order": "x"})
    assert absent.filled is absent.average is absent.fee is absent.amount is None  # a float is not the venue's text
    assert fields.read("not a dict").filled is None and fields.read({"a": {"filled": "abc"}}).filled is None


def test_feed_helpers_keep_each_venue_s_frames():
    okx = registry.feed_adapter("okx", FeedSettings())
    assert [c.name for c in okx.connections("wss://x", [f"S{i}" for i in range(31)])] == ["okx", "okx-2", "okx-3"]
    assert okx.resync_frames("BTC-USDT-SWAP") == [
        '{"op":"unsubscribe","args":[{"channel":"books","instId":"BTC-USDT-SWAP"}]}',
        '{"op":"subscribe","args":[{"channel":"books","instId":"BTC-USDT-SWAP"}]}']
    binance = registry.feed_adapter("binance", FeedSettings())
    assert [c.name for c in binance.connections("wss://x", [f"S{i}USDT" for i in range(201)])] == [
        "binance-public", "binance-market", "binance-public-2", "binance-market-2"]
    hyperliquid = registry.feed_adapter("hyperliquid", FeedSettings())
    assert hyperliquid.connections("wss://x", ["BTC"])[0].subscribe_frames == [
        '{"method":"subscribe","subscription":{"type":"l2Book","coin":"BTC"}}',
        '{"method":"subscribe","subscription":{"type":"activeAssetCtx","coin":"BTC"}}']
    for venue, reason in (("okx", "okx books start from the WebSocket snapshot"),
                          ("bybit", "bybit books start from the WebSocket snapshot"),
                          ("hyperliquid", "hyperliquid pushes full l2Book snapshots")):
        adapter = registry.feed_adapter(venue, FeedSettings())
        assert adapter.rest_snapshot is False
        with pytest.raises(ValueError, match=f"{reason}; there is no REST snapshot step"):
            adapter.snapshot_url("http://r", "X")
        with pytest.raises(ParseError, match=reason):
            adapter.parse_snapshot(b"{}", "X", 0.0)


@pytest.mark.parametrize(("value", "text"), [
    ("30000", "30000"), ("3E+4", "30000"), ("0.0200", "0.02"), ("0", "0"), ("-0", "0"), ("0E-9", "0"),
    ("-1.50", "-1.5"), ("1E-9", "0.000000001"), ("NaN", "NaN"), ("-Infinity", "-Infinity"),
])
def test_plain_is_the_one_decimal_text(value, text):
    assert plain(Decimal(value)) == text
    assert plain_or_none(Decimal(value)) == text and plain_or_none(None) is None


def test_plain_pads_to_min_places_and_matches_the_scaled_formatter():
    assert plain(Decimal("59936"), 1) == "59936.0" and plain(Decimal("0.5"), 1) == "0.5"
    assert plain(Decimal(0), 2) == "0.00"
    for scaled in (0, 1, -1, 10**9, 123_456_789_012, -5 * 10**8, 10**18 + 7):
        assert scaled_to_str(scaled) == plain(scaled_to_decimal(scaled))


def test_decimal_readers():
    assert decimal_or_none(None) is None and decimal_or_none("") is None
    assert decimal_or_none(0.1) == Decimal("0.1") and decimal_or_none(5) == Decimal(5)
    assert decimal_or_none(Decimal("1.10")) == Decimal("1.10")
    assert venue_decimal("0.10", 0.1) == Decimal("0.10") and venue_decimal("", 0.1) == Decimal("0.1")
    assert venue_decimal(None, None) is None
