"""Test helpers: realistic instruments and real L2Books built through perpbot.book.sync.apply_update."""

from __future__ import annotations

from collections import deque
from decimal import Decimal

from perpbot.book.store import BookStore
from perpbot.book.sync import APPLY, apply_update
from perpbot.core.events import BookUpdate, FundingUpdate
from perpbot.core.instruments import Instrument

D = Decimal
NOW = 1_700_000_000.0

# OKX BTC-USDT-SWAP as its 2022 instruments endpoint described it: ctVal 0.01 BTC, lot 1 contract.
OKX_BTC = Instrument("okx", "BTC-USDT-SWAP", "BTC", "USDT", "BTC/USDT:USDT", D("0.1"), D("1"), D("1"), D("0"),
                     contract_size=D("0.01"), taker_fee=D("0.0005"), maker_fee=D("0.0002"))
# Today's OKX: fractional contracts, lot 0.01 contract = 0.0001 BTC.
OKX_BTC_FINE = Instrument("okx", "BTC-USDT-SWAP", "BTC", "USDT", "BTC/USDT:USDT", D("0.1"), D("0.01"), D("0.01"),
                          D("0"), contract_size=D("0.01"), taker_fee=D("0.0005"), maker_fee=D("0.0002"))
BINANCE_BTC = Instrument("binance", "BTCUSDT", "BTC", "USDT", "BTC/USDT:USDT", D("0.1"), D("0.001"), D("0.001"),
                         D("5"), taker_fee=D("0.0005"), maker_fee=D("0.0002"))
BYBIT_BTC = Instrument("bybit", "BTCUSDT", "BTC", "USDT", "BTC/USDT:USDT", D("0.1"), D("0.001"), D("0.001"),
                       D("5"), taker_fee=D("0.00055"), maker_fee=D("0.0002"))
HYPERLIQUID_BTC = Instrument("hyperliquid", "BTC", "BTC", "USDC", "BTC/USDC:USDC", D("1"), D("0.00001"),
                             D("0.00001"), D("10"), taker_fee=D("0.00045"), maker_fee=D("0.00015"),
                             funding_interval_hours=1)
OKX_ETH = Instrument("okx", "ETH-USDT-SWAP", "ETH", "USDT", "ETH/USDT:USDT", D("0.01"), D("1"), D("1"), D("0"),
                     contract_size=D("0.1"))
BINANCE_ETH = Instrument("binance", "ETHUSDT", "ETH", "USDT", "ETH/USDT:USDT", D("0.01"), D("0.001"), D("0.001"),
                         D("5"))


class AcceptAll:
    """Tiny BookRules: every delta in sequence, no checksum."""

    def check_sequence(self, book, update) -> str:
        return APPLY

    def verify_checksum(self, book, checksum) -> bool:
        return True


RULES = AcceptAll()


def levels(*pairs) -> list[list[str]]:
    return [[str(price), str(size)] for price, size in pairs]


def put_book(store: BookStore, instrument: Instrument, bids, asks, recv_ts: float = NOW):
    """Snapshot `bids`/`asks` ((price, size in venue units) pairs) into the store's book."""
    book = store.get(instrument.venue, instrument.symbol)
    if book is None:
        book = store.add(instrument.venue, instrument.symbol, instrument.contract_size)
    update = BookUpdate(instrument.venue, instrument.symbol, True, levels(*bids), levels(*asks),
                        1, None, None, None, int(recv_ts * 1000), recv_ts)
    assert apply_update(book, update, RULES) is None
    assert book.valid
    return book


def funding(instrument: Instrument, rate: str, interval_hours: float) -> FundingUpdate:
    return FundingUpdate(instrument.venue, instrument.symbol, D(rate), interval_hours, None, None,
                         int(NOW * 1000), NOW)


def instruments_map(*instruments: Instrument) -> dict:
    return {i.key: i for i in instruments}


def fresh_deque() -> deque:
    return deque()
