"""Paper trading: the ExchangeClient port with fills simulated against the live books.

A taker order walks the opposite side of the book up to its limit price (IOC: the rest is
cancelled), pays the instrument's taker fee, and updates locally kept positions and balance.
Latency is modelled as a fixed delay before the book is read. Same port as the live client,
so the engine has no paper branches.
"""

from __future__ import annotations

import asyncio
from decimal import ROUND_DOWN, Decimal

from perpbot.book.store import BookStore
from perpbot.core import errors
from perpbot.core.instruments import Instrument
from perpbot.core.numbers import decimal_to_scaled, scaled_to_decimal
from perpbot.core.orders import FundingPayment, OrderRequest, OrderResult, VenueBalance, VenuePosition
from perpbot.portfolio.book import Position


def walk_book(levels: list[tuple[int, int]], is_buy: bool, limit: int, qty: int) -> tuple[int, int]:
    """Take from `levels` (best first, scaled ints) up to `qty` without crossing `limit`.
    Returns (filled, cost) where cost is sum(price * size) in scaled^2 units."""
    filled = cost = 0
    for price, size in levels:
        if (is_buy and price > limit) or (not is_buy and price < limit) or filled >= qty:
            break
        take = min(size, qty - filled)
        filled += take
        cost += price * take
    return filled, cost


class PaperClient:
    def __init__(
        self, venue: str, store: BookStore, instruments: dict[str, Instrument],
        latency_ms: float = 20.0, starting_equity: Decimal = Decimal("10000"), leverage: Decimal = Decimal("3"),
        depth: int = 50,
    ) -> None:
        self.venue = venue
        self.store = store
        self.instruments = instruments
        self.latency_s = latency_ms / 1000.0
        self.cash = starting_equity  # realised balance: starting equity + realised PnL - fees
        self.leverage = leverage
        self.depth = depth
        self.orders: dict[str, OrderResult] = {}
        self.positions: dict[str, Position] = {}
        self.funding_payments: list[FundingPayment] = []

    async def load_instruments(self, symbols: list[str]) -> dict[str, Instrument]:
        missing = [s for s in symbols if s not in self.instruments]
        if missing:
            raise errors.OrderRejected(self.venue, f"unknown instruments {missing}")
        return {s: self.instruments[s] for s in symbols}

    async def place_order(self, request: OrderRequest) -> OrderResult:
        if request.client_order_id in self.orders:
            raise errors.OrderRejected(self.venue, f"duplicate client order id {request.client_order_id}")
        instrument = self.instruments.get(request.symbol)
        if instrument is None:
            raise errors.OrderRejected(self.venue, f"unknown instrument {request.symbol}")
        if self.latency_s:
            await asyncio.sleep(self.latency_s)  # the modelled network + matching delay
        book = self.store.get(self.venue, request.symbol)
        if book is None or not self.store.is_usable(book):
            raise errors.TemporaryError(self.venue, f"no usable book for {request.symbol}")
        is_buy = request.side == "buy"
        wanted_base = instrument.venue_to_base_qty(request.qty)
        position = self.positions.get(request.symbol)
        if request.reduce_only:
            held = position.size if position else Decimal(0)
            if held == 0 or (held > 0) == is_buy:
                return self._final(request, Decimal(0), None, Decimal(0), "rejected", "reduce-only: no position to reduce")
            wanted_base = min(wanted_base, abs(held))
        levels = self.store.get(self.venue, request.symbol).top(not is_buy, self.depth)
        filled, cost = walk_book(levels, is_buy, decimal_to_scaled(request.price), decimal_to_scaled(wanted_base))
        filled_base = scaled_to_decimal(filled)
        filled_venue = (instrument.base_to_venue_qty(filled_base))  # whole lots only
        filled_base_lots = instrument.venue_to_base_qty(filled_venue)
        if filled_venue == 0:
            return self._final(request, Decimal(0), None, Decimal(0), "canceled", "IOC found no liquidity at the limit")
        avg = (Decimal(cost) / Decimal(filled)).scaleb(-9)
        notional = avg * filled_base_lots
        fee = (notional * instrument.taker_fee).quantize(Decimal("0.00000001"), ROUND_DOWN)
        margin_needed = notional / self.leverage
        opening = position is None or position.size == 0 or (position.size > 0) == is_buy
        if opening and margin_needed > self._available():
            raise errors.InsufficientFunds(self.venue, f"needs {margin_needed} margin, {self._available()} available")
        position = self.positions.setdefault(request.symbol, Position(self.venue, request.symbol))
        realized = position.apply(filled_base_lots if is_buy else -filled_base_lots, avg)
        self.cash += realized - fee
        status = "filled" if filled_venue >= request.qty else "partially_filled"
        return self._final(request, filled_venue, avg, fee, status, None)

    def _final(self, request: OrderRequest, filled: Decimal, avg: Decimal | None, fee: Decimal,
               status: str, reason: str | None) -> OrderResult:
        result = OrderResult(
            venue=self.venue, symbol=request.symbol, client_order_id=request.client_order_id,
            venue_order_id=f"paper-{len(self.orders) + 1}", status=status, side=request.side,
            qty=request.qty, filled_qty=filled, avg_price=avg, fee=fee, reason=reason,
        )
        self.orders[request.client_order_id] = result
        return result

    def _used_margin(self) -> Decimal:
        return sum((abs(p.size) * p.entry_price / self.leverage for p in self.positions.values()), Decimal(0))

    def _unrealized(self) -> Decimal:
        total = Decimal(0)
        for symbol, position in self.positions.items():
            mark = self._mark(symbol)
            if position.size and mark is not None:
                total += (mark - position.entry_price) * position.size
        return total

    def _mark(self, symbol: str) -> Decimal | None:
        book = self.store.get(self.venue, symbol)
        if book is None or book.best_bid() is None or book.best_ask() is None:
            return None
        return scaled_to_decimal(book.best_bid() + book.best_ask()) / 2

    def _available(self) -> Decimal:
        return self.cash + self._unrealized() - self._used_margin()

    async def fetch_order(self, symbol: str, client_order_id: str) -> OrderResult | None:
        return self.orders.get(client_order_id)

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderResult | None:
        return self.orders.get(client_order_id)  # IOC orders are final when placed

    async def fetch_open_orders(self) -> list[OrderResult]:
        return []

    async def fetch_positions(self) -> list[VenuePosition]:
        return [
            VenuePosition(self.venue, symbol, p.size, p.entry_price, self._mark(symbol),
                          ((self._mark(symbol) or p.entry_price) - p.entry_price) * p.size, self.leverage)
            for symbol, p in self.positions.items() if p.size != 0
        ]

    async def fetch_balance(self) -> VenueBalance:
        equity = self.cash + self._unrealized()
        used = self._used_margin()
        return VenueBalance(self.venue, equity=equity, available=equity - used, used_margin=used)

    def settle_funding(self, symbol: str, rate: Decimal, ts_ms: int, mark: Decimal | None = None) -> FundingPayment | None:
        """Book one funding settlement on the paper position (longs pay shorts when `rate` > 0), at
        `mark` or the book's mid; None when flat or no mark is known. Exact Decimal arithmetic."""
        position = self.positions.get(symbol)
        mark = mark if mark is not None else self._mark(symbol)
        if position is None or position.size == 0 or mark is None:
            return None
        amount = -position.size * mark * rate
        self.cash += amount
        payment = FundingPayment(self.venue, symbol, f"paper:{symbol}:{ts_ms}", amount, ts_ms)
        self.funding_payments.append(payment)
        return payment

    async def fetch_funding_payments(self, since_ms: int) -> list[FundingPayment]:
        return [p for p in self.funding_payments if p.ts_ms >= since_ms]

    async def close(self) -> None:
        return None
