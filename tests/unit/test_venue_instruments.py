"""perpbot.venue_instruments without a venue: what a refresh calls a change, and the start-up set of venues."""

from __future__ import annotations

import dataclasses
from decimal import Decimal as D

from perpbot.book.store import BookStore
from perpbot.core.instruments import Instrument
from perpbot.venue_instruments import TradingVenues, _changed, differences

OKX = Instrument("okx", "BTC-USDT-SWAP", "BTC", "USDT", "BTC/USDT:USDT", D("0.1"), D("0.01"), D("0.01"), D("0"),
                 contract_size=D("0.01"))
HL = Instrument("hyperliquid", "BTC", "BTC", "USDC", "BTC/USDC:USDC", D("1"), D("0.00001"), D("0.00001"), D("10"))


class _Closed:
    closed = False

    async def close(self) -> None:
        self.closed = True


def test_differences_name_each_changed_field_and_decimals_compare_by_value():
    assert differences(OKX, dataclasses.replace(OKX, tick_size=D("0.10"))) == []
    assert differences(OKX, dataclasses.replace(OKX, tick_size=D("0.2"), min_qty=D("0.02"))) == [
        "tick_size 0.1 -> 0.2", "min_qty 0.01 -> 0.02"]


def test_a_changed_tick_is_replaced_but_a_changed_contract_size_without_a_book_leaves_the_venue_out():
    store = BookStore(5.0)
    instruments = {OKX.key: OKX}
    changes, left_out = _changed(store, instruments, "okx", {OKX.symbol: dataclasses.replace(OKX, tick_size=D("0.2"))})
    assert (changes, left_out) == (["BTC-USDT-SWAP: tick_size 0.1 -> 0.2"], False)
    changes, left_out = _changed(store, instruments, "okx", {OKX.symbol: dataclasses.replace(OKX, contract_size=D("0.1"))})
    assert changes == ["BTC-USDT-SWAP: contract_size 0.01 -> 0.1"] and left_out
    assert _changed(store, instruments, "okx", {"ETH-USDT-SWAP": OKX}) == ([], False)  # not traded: no change


async def test_trading_venues_keep_loaded_venues_and_drop_one_with_its_client_and_instruments():
    venues = TradingVenues()
    okx, hl = _Closed(), _Closed()
    venues.add("okx", okx, {OKX.symbol: OKX}, [OKX.symbol])
    venues.add("hyperliquid", hl, {HL.symbol: HL}, [])
    venues.add("bybit", None, {}, [])  # left out at load: nothing kept
    assert sorted(venues.clients) == ["hyperliquid", "okx"] and venues.from_cache == {"okx": [OKX.symbol]}
    await venues.drop("okx")
    assert okx.closed and not hl.closed
    assert list(venues.clients) == ["hyperliquid"] and venues.instruments == {HL.key: HL} and venues.from_cache == {}
