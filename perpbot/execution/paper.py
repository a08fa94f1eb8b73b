"""Paper trading: the ExchangeClient port with fills simulated against the live books.

A taker order walks the opposite side of the book up to its limit price (IOC: the rest is
cancelled), pays the instrument's taker fee, and updates locally kept positions and balance.
Latency is modelled as a fixed delay before the book is read. Same port as the live client,
so the engine has no paper branches.

Funding: PaperFunding settles each open paper position at its venue's funding times, at the
rate the feeds last reported for that settlement; the engine then fetches those payments
through fetch_funding_payments and journals and books them exactly as a live venue's.

Memory: the paper venue remembers its newest MAX_PAPER_ORDERS orders (all IOC, final when
placed); an older client id is "unknown" to it, as to a venue that has archived the order.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from decimal import ROUND_DOWN, Decimal
from typing import Literal

from perpbot.book.store import BookStore
from perpbot.core import errors
from perpbot.core.approved import ApprovedOrder
from perpbot.core.events import FundingUpdate
from perpbot.core.instruments import Instrument
from perpbot.core.numbers import decimal_to_scaled, scaled_to_decimal
from perpbot.core.orders import FundingPayment, OrderRequest, OrderResult, VenueBalance, VenuePosition
from perpbot.portfolio.book import Position

ResultStatus = Literal["filled", "partially_filled", "canceled", "rejected", "open", "expired"]

# Orders a paper venue remembers (~0.5 KB each: ~5 MB). The engine settles an order within
# seconds of placing it, and the journal keeps every order for good.
MAX_PAPER_ORDERS = 10_000


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
        self.orders: dict[str, OrderResult] = {}  # newest MAX_PAPER_ORDERS, oldest first
        self._placed = 0  # orders ever placed: venue order ids stay unique once old ones are forgotten
        self.positions: dict[str, Position] = {}
        self.funding_payments: list[FundingPayment] = []
        self._funding_ids: set[str] = set()

    async def load_instruments(self, symbols: list[str]) -> dict[str, Instrument]:
        missing = [s for s in symbols if s not in self.instruments]
        if missing:
            raise errors.OrderRejected(self.venue, f"unknown instruments {missing}")
        return {s: self.instruments[s] for s in symbols}

    async def place_order(self, order: ApprovedOrder) -> OrderResult:
        if not isinstance(order, ApprovedOrder):  # the type checker's rule, kept at run time too
            raise TypeError(f"place_order takes an ApprovedOrder minted by the risk gate, not {type(order).__name__}")
        request = order.request
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
        book = self.store.get(self.venue, request.symbol)
        if book is None:
            raise errors.OrderRejected(self.venue, f"no book for {request.symbol}")
        levels = book.top(not is_buy, self.depth)
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
        status: ResultStatus = "filled" if filled_venue >= request.qty else "partially_filled"
        return self._final(request, filled_venue, avg, fee, status, None)

    def _final(self, request: OrderRequest, filled: Decimal, avg: Decimal | None, fee: Decimal,
               status: ResultStatus, reason: str | None) -> OrderResult:
        result = OrderResult(
            venue=self.venue, symbol=request.symbol, client_order_id=request.client_order_id,
            venue_order_id=f"paper-{self._placed + 1}", status=status, side=request.side,
            qty=request.qty, filled_qty=filled, avg_price=avg, fee=fee, reason=reason,
        )
        self._placed += 1
        self.orders[request.client_order_id] = result
        while len(self.orders) > MAX_PAPER_ORDERS:
            del self.orders[next(iter(self.orders))]
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
        if book is None:
            return None
        bid, ask = book.best_bid(), book.best_ask()
        if bid is None or ask is None:
            return None
        return scaled_to_decimal(bid + ask) / 2

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
        `mark` or the book's mid; None when flat, no mark is known, or this symbol's settlement at
        `ts_ms` is already booked (one payment per symbol and settlement time). Exact Decimal
        arithmetic, the same formula the simulated venues settle with."""
        payment_id = f"paper:{symbol}:{ts_ms}"
        position = self.positions.get(symbol)
        mark = mark if mark is not None else self._mark(symbol)
        if position is None or position.size == 0 or mark is None or payment_id in self._funding_ids:
            return None
        amount = -position.size * mark * rate
        self.cash += amount
        payment = FundingPayment(self.venue, symbol, payment_id, amount, ts_ms)
        self._funding_ids.add(payment_id)
        self.funding_payments.append(payment)
        return payment

    async def fetch_funding_payments(self, since_ms: int) -> list[FundingPayment]:
        return [p for p in self.funding_payments if p.ts_ms >= since_ms]

    async def close(self) -> None:
        return None


class PaperFunding:
    """Settles funding on paper positions at each venue's funding times (the live venues do it themselves).

    A FundingUpdate from the feeds carries the rate that settles at its `next_funding_ms`. Each
    tick first settles every armed settlement whose time has passed, at the rate armed before that
    time (the latest one the feed reported for it), then arms the next one from the latest updates.
    An update still naming a passed time is stale and arms nothing, so each symbol's settlement is
    paid once; PaperClient.settle_funding also refuses a second payment for the same time.
    Settlement uses the position held at the tick, so `poll_s` bounds how late after the funding
    time that is read. Payments are dated at the funding time, as a venue's funding history is.
    """

    def __init__(self, clients: Mapping[str, PaperClient], funding_map: Mapping[tuple[str, str], FundingUpdate],
                 clock: Callable[[], float] = time.time, poll_s: float = 1.0) -> None:
        self.clients = clients
        self.funding_map = funding_map
        self._clock = clock
        self.poll_s = poll_s
        self._armed: dict[tuple[str, str], tuple[int, Decimal]] = {}  # (venue, symbol) -> (due ms, rate)

    @staticmethod
    def next_due_ms(update: FundingUpdate, now_ms: int) -> int:
        """The settlement time the update's rate applies to; without one from the venue, the next
        whole multiple of the venue's interval (venues settle on interval boundaries of UTC)."""
        if update.next_funding_ms:
            return update.next_funding_ms
        interval_ms = max(1, int(update.interval_hours * 3_600_000))
        return (now_ms // interval_ms + 1) * interval_ms

    def armed(self) -> dict[tuple[str, str], tuple[int, Decimal]]:
        """The settlements waiting for their time: (venue, symbol) -> (due ms, rate)."""
        return dict(self._armed)

    def settle_due(self, now_ms: int) -> list[FundingPayment]:
        """Pay every armed settlement due by `now_ms`, then arm the next ones. Pure over the clients."""
        payments = []
        for key, (due_ms, rate) in list(self._armed.items()):
            if due_ms > now_ms:
                continue
            del self._armed[key]
            venue, symbol = key
            update = self.funding_map.get(key)
            mark = update.mark_price if update is not None else None  # None: the paper book's mid
            payment = self.clients[venue].settle_funding(symbol, rate, due_ms, mark)
            if payment is not None:
                payments.append(payment)
        for key, update in list(self.funding_map.items()):
            if key[0] not in self.clients:
                continue
            due_ms = self.next_due_ms(update, now_ms)
            if due_ms > now_ms:
                self._armed[key] = (due_ms, update.rate)
        return payments

    async def run(self, stop: asyncio.Event) -> None:
        """Tick every `poll_s` until `stop` is set."""
        while not stop.is_set():
            self.settle_due(int(self._clock() * 1000))
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.poll_s)
            except TimeoutError:
                pass

