"""Decision-time expectations: what the strategy expected of each leg (top-of-book and depth price, fee
rate, funding over the intended hold), read from the very books and funding the decision was made on.

Pure: the scanner stamps every decision with them right after the strategy returned it, in the same
synchronous scan, so the books are exactly the ones the strategy saw. Per-trade attribution
(perpbot.portfolio.attribution) compares the venue's fills and funding with them.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from perpbot.core.decisions import Decision, Expectation, Leg, LegExpectation
from perpbot.core.numbers import scaled_to_decimal
from perpbot.scanner.depth import sweep
from perpbot.scanner.protocol import MarketView

ZERO = Decimal(0)
HOUR_S = Decimal(3600)


def expected_funding(side: str, base_qty: Decimal, price: Decimal, rate: Decimal, interval_s: Decimal,
                     held_s: Decimal) -> Decimal:
    """Funding a position of `base_qty` at `price` receives (+) or pays (-) over `held_s` at `rate` per
    `interval_s`: a long pays a positive rate, a short receives it (the rate prorated over the time held)."""
    if interval_s <= 0 or held_s <= 0 or rate == 0:
        return ZERO
    direction = 1 if side == "buy" else -1
    return -direction * base_qty * price * rate * held_s / interval_s


def leg_expectation(view: MarketView, leg: Leg, hold_s: Decimal) -> LegExpectation:
    """One leg's expectation on the books as they stand in `view` (the decision's own reference price
    stands in for a book the view no longer shows)."""
    key = (leg.venue, leg.symbol)
    buying = leg.side == "buy"
    book = view.store.books.get(key)
    top = depth = leg.ref_price
    if book is not None:
        best = book.best_ask() if buying else book.best_bid()
        if best is not None:
            top = scaled_to_decimal(best)
        swept = sweep(book, buying, leg.base_qty)
        if swept is not None:
            depth = swept.vwap
    instrument = view.instrument(leg.venue, leg.symbol)
    fee_rate = instrument.taker_fee if instrument is not None else ZERO
    funding = view.funding(leg.venue, leg.symbol)
    if funding is not None:
        rate, interval_s = funding.rate, Decimal(str(funding.interval_hours)) * HOUR_S
    else:
        rate = ZERO
        interval_s = Decimal(instrument.funding_interval_hours if instrument is not None else 8) * HOUR_S
    return LegExpectation(top_price=top, depth_price=depth, fee_rate=fee_rate, funding_rate=rate,
                          funding_interval_s=interval_s,
                          expected_funding_usdt=expected_funding(leg.side, leg.base_qty, depth, rate, interval_s, hold_s))


def with_expectation(decision: Decision, view: MarketView, hold_s: Decimal) -> Decision:
    """`decision` carrying its legs' expectations; an entry expects to be held `hold_s`, an exit
    expects no further funding (its hold is over)."""
    hold = hold_s if decision.action == "open" else ZERO
    legs = decision.legs
    expectation = Expectation(legs=(leg_expectation(view, legs[0], hold), leg_expectation(view, legs[1], hold)),
                              hold_s=hold)
    return dataclasses.replace(decision, expectation=expectation)


def intended_hold_s(strategy: object) -> Decimal:
    """The holding time a strategy intends: the max_hold_s of the settings of the object whose `evaluate`
    decides (a wrapper delegating evaluate holds no settings of its own); 0 when it declares none."""
    owner = getattr(getattr(strategy, "evaluate", None), "__self__", strategy)
    hold = getattr(getattr(owner, "settings", None), "max_hold_s", None)
    return Decimal(str(hold)) if isinstance(hold, (int, float, Decimal)) else ZERO
