"""Pure edge arithmetic of a two-leg trade: depth-weighted prices for the size, both taker fees.

A leg settled in USDC (Hyperliquid) is priced in USDT through the bot's USDC/USDT rate (perpbot.core.quote_rate):
the strategies pass each leg's USDT per quote unit (`None`: the leg is in USDT, or the rate is 1), never 1:1 by
omission when the rate differs."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal

from perpbot.book.l2 import L2Book
from perpbot.core.decisions import Decision, Leg
from perpbot.core.instruments import Instrument
from perpbot.core.numbers import decimal_to_scaled
from perpbot.scanner.depth import BPS, Fill, hedge_qty, mid_price, sweep, sweep_scaled
from perpbot.scanner.protocol import MarketView, OpenTrade


@dataclass(frozen=True, slots=True)
class PairQuote:
    """Buy `qty` on one venue and sell it on another, as the books stand.

    edge_usdt = sell notional - buy notional - taker fees of both legs, all in USDT (a USDC leg's notional
    times the USDC/USDT rate; exact Decimal); edge_bps = edge_usdt / buy notional (USDT) x 10000.
    `buy`/`sell` keep each venue's own figures (its quote currency); buy_usdt/sell_usdt are their notionals
    in USDT.
    """

    buy_instrument: Instrument
    sell_instrument: Instrument
    buy: Fill
    sell: Fill
    fees_usdt: Decimal
    edge_usdt: Decimal
    edge_bps: Decimal
    buy_usdt: Decimal
    sell_usdt: Decimal

    @property
    def qty(self) -> Decimal:
        return self.buy.base_qty

    def legs(self) -> tuple[Leg, Leg]:
        """(buy leg, sell leg); ref prices are the worst levels the size reaches."""
        b, s = self.buy_instrument, self.sell_instrument
        return (
            Leg(b.venue, b.symbol, "buy", self.qty, self.buy.worst),
            Leg(s.venue, s.symbol, "sell", self.qty, self.sell.worst),
        )


def quote_pair(
    buy_instrument: Instrument,
    buy_book: L2Book,
    sell_instrument: Instrument,
    sell_book: L2Book,
    qty: Decimal,
    buy_rate: Decimal | None = None,
    sell_rate: Decimal | None = None,
) -> PairQuote | None:
    """Depth-weighted quote of buying `qty` on the first book and selling it on the second;
    None when either book cannot fill the whole size. `buy_rate`/`sell_rate`: USDT per unit of that
    leg's quote currency (None: USDT, or a rate of exactly 1)."""
    wanted = decimal_to_scaled(qty)  # converted once for both sides
    if wanted <= 0:
        return None
    buy = sweep_scaled(buy_book, True, qty, wanted)
    if buy is None:
        return None
    sell = sweep_scaled(sell_book, False, qty, wanted)
    if sell is None:
        return None
    buy_usdt = buy.notional if buy_rate is None else buy.notional * buy_rate
    sell_usdt = sell.notional if sell_rate is None else sell.notional * sell_rate
    fees = buy_usdt * buy_instrument.taker_fee + sell_usdt * sell_instrument.taker_fee
    edge = sell_usdt - buy_usdt - fees
    return PairQuote(buy_instrument, sell_instrument, buy, sell, fees, edge, edge / buy_usdt * BPS,
                     buy_usdt, sell_usdt)


def pair_size(
    a: Instrument, book_a: L2Book, b: Instrument, book_b: L2Book, order_size_usdt: Decimal,
    rate_a: Decimal | None = None, rate_b: Decimal | None = None,
) -> Decimal:
    """Base quantity for `order_size_usdt` at the pair's average mid (in USDT: a USDC book's mid times
    its rate, as in quote_pair), on both lot grids; 0 when a side is empty or the size is below either
    venue's minimum."""
    return pair_size_at(a, mid_price(book_a), b, mid_price(book_b), order_size_usdt, rate_a, rate_b)


def pair_size_at(
    a: Instrument, mid_a: Decimal | None, b: Instrument, mid_b: Decimal | None, order_size_usdt: Decimal,
    rate_a: Decimal | None = None, rate_b: Decimal | None = None,
) -> Decimal:
    """pair_size with the books' mids already computed (a strategy pricing many pairs of the same
    books computes each mid once)."""
    if mid_a is None or mid_b is None:
        return Decimal(0)
    if rate_a is not None:
        mid_a *= rate_a
    if rate_b is not None:
        mid_b *= rate_b
    mid = (mid_a + mid_b) / 2
    qty = hedge_qty(a, b, order_size_usdt / mid)
    if qty <= 0:
        return qty
    # Below a venue's minimum notional the gate would refuse it anyway: do not propose it.
    if qty * mid < max(a.min_notional, b.min_notional):
        return Decimal(0)
    return qty


def top_crosses(buy_book: L2Book, sell_book: L2Book) -> bool:
    """Cheap exact pre-check: can selling on `sell_book` beat buying on `buy_book` at all?
    Depth only worsens both prices and fees are >= 0, so if the best bid does not exceed the
    best ask no size has a positive edge."""
    ask = buy_book.best_ask()
    bid = sell_book.best_bid()
    return ask is not None and bid is not None and bid > ask


def close_legs(
    quote: PairQuote, buy_back: Leg, sell_out: Leg, buy_book: L2Book, sell_book: L2Book
) -> tuple[Leg, Leg] | None:
    """Legs closing a trade: buy back the sold leg's size, sell the bought leg's size.

    Normally both legs hold the same size and the quote's legs are returned; after an uneven
    fill each leg keeps its own size and its own worst price (None if a book is too thin)."""
    if buy_back.base_qty == sell_out.base_qty == quote.qty:
        return quote.legs()
    buy = sweep(buy_book, True, buy_back.base_qty)
    sell = sweep(sell_book, False, sell_out.base_qty)
    if buy is None or sell is None:
        return None
    return (
        Leg(buy_back.venue, buy_back.symbol, "buy", buy_back.base_qty, buy.worst),
        Leg(sell_out.venue, sell_out.symbol, "sell", sell_out.base_qty, sell.worst),
    )


def long_short(legs: tuple[Leg, Leg]) -> tuple[Leg, Leg]:
    """(the bought leg, the sold leg) of a trade, whatever order they were stored in."""
    return (legs[0], legs[1]) if legs[0].side == "buy" else (legs[1], legs[0])


def close_decision(
    strategy: str, trade: OpenTrade, quote: PairQuote, buy_back: Leg, sell_out: Leg, buy_book: L2Book,
    sell_book: L2Book, reason: str,
) -> Decision | None:
    """The close Decision of `trade` at `quote`, or None when its legs cannot be built (shared by
    every strategy's exit, so a close always has the same shape)."""
    legs = close_legs(quote, buy_back, sell_out, buy_book, sell_book)
    if legs is None:
        return None
    return Decision(
        strategy=strategy,
        action="close",
        base=trade.base,
        legs=legs,
        edge_bps=quote.edge_bps,
        edge_usdt=quote.edge_usdt,
        reason=reason,
        trade_id=trade.trade_id,
    )


def own_exits(strategy: str, base: str, trades: Iterable[OpenTrade], view: MarketView,
              exit_of: Callable[[MarketView, OpenTrade], Decision | None]) -> list[Decision]:
    """The closes `exit_of` decides for the trades of `strategy` on `base` (no strategy exits another's)."""
    decisions: list[Decision] = []
    for trade in trades:
        if trade.strategy == strategy and trade.base == base:
            decision = exit_of(view, trade)
            if decision is not None:
                decisions.append(decision)
    return decisions


def best_first(decisions: list[Decision], exits: int) -> list[Decision]:
    """`decisions` with its first `exits` (the exits) kept first and the entries after them sorted by
    edge, best first (ties keep their order): the engine carries decisions out in order and skips an
    entry on a venue/symbol an earlier one has taken, so of entries competing for one book the best
    is the one made."""
    if len(decisions) - exits > 1:
        decisions[exits:] = sorted(decisions[exits:], key=_edge_bps, reverse=True)
    return decisions


def _edge_bps(decision: Decision) -> Decimal:
    return decision.edge_bps
