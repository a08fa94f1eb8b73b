"""Pure depth arithmetic shared by strategies and the risk gate: exact sweeps and common lot grids."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from math import lcm

from perpbot.book.l2 import L2Book
from perpbot.core.instruments import Instrument
from perpbot.core.numbers import SCALE, decimal_to_scaled

BPS = Decimal(10000)
_HALF = Decimal("0.5")


@dataclass(frozen=True, slots=True)
class Fill:
    """What a taker order of `base_qty` would get from a book, exactly.

    `notional` = sum(price x size) over the levels eaten (quote units, exact);
    `worst` = the last level's price (the limit price that fills the whole size).
    """

    base_qty: Decimal
    notional: Decimal
    worst: Decimal

    @property
    def vwap(self) -> Decimal:
        return self.notional / self.base_qty


def sweep(book: L2Book, is_buy: bool, base_qty: Decimal) -> Fill | None:
    """Depth-weighted fill of `base_qty` (base units) on `book`; None when the book is too thin."""
    wanted = decimal_to_scaled(base_qty)
    if wanted <= 0:
        return None
    return sweep_scaled(book, is_buy, base_qty, wanted)


def sweep_scaled(book: L2Book, is_buy: bool, base_qty: Decimal, wanted: int) -> Fill | None:
    """sweep() with `base_qty` already scaled (`wanted` > 0): a two-leg quote converts its size once."""
    filled, cost, worst = book.sweep(is_buy, wanted)
    if filled < wanted:
        return None
    # cost is price_scaled x size_scaled: 2 x SCALE fractional digits, exact.
    return Fill(base_qty, Decimal(cost).scaleb(-2 * SCALE), Decimal(worst).scaleb(-SCALE))


def mid_price(book: L2Book) -> Decimal | None:
    """Exact mid of the best bid and ask (None when a side is empty)."""
    bid = book.best_bid()
    ask = book.best_ask()
    if bid is None or ask is None:
        return None
    return Decimal(bid + ask).scaleb(-SCALE) * _HALF


def base_step(instrument: Instrument) -> Decimal:
    """The smallest order increment in base units (lot x contract size)."""
    return instrument.lot_size * instrument.contract_size


# (a.key, b.key) -> (a, b, common step, larger of the two minimum base quantities): the instruments are
# immutable, so a pair's figures are computed once; the cached objects are checked by identity (a
# reloaded instrument recomputes).
_STEPS: dict[tuple[tuple[str, str], tuple[str, str]], tuple[Instrument, Instrument, Decimal, Decimal]] = {}


def _pair(a: Instrument, b: Instrument) -> tuple[Instrument, Instrument, Decimal, Decimal]:
    pair = (a.key, b.key)
    cached = _STEPS.get(pair)
    if cached is not None and cached[0] is a and cached[1] is b:
        return cached
    if len(_STEPS) > 65536:
        _STEPS.clear()  # bounded: instruments reloaded many times leave dead entries
    cached = _STEPS[pair] = (a, b, _common_base_step(a, b),
                             max(a.min_qty * a.contract_size, b.min_qty * b.contract_size))
    return cached


def common_base_step(a: Instrument, b: Instrument) -> Decimal:
    """The finest base-unit step that is on BOTH venues' lot grids (their least common multiple).

    For steps that divide each other (0.01 BTC per OKX contract vs 0.001 on Binance) this is
    simply the coarser step; for any other pair it is still exact, so both legs hedge exactly.
    """
    return _pair(a, b)[2]


def _common_base_step(a: Instrument, b: Instrument) -> Decimal:
    step_a = base_step(a)
    step_b = base_step(b)
    if step_a == step_b:
        return step_a
    digits = max(-exponent_of(step_a), -exponent_of(step_b), 0)
    int_a = int(step_a.scaleb(digits))
    int_b = int(step_b.scaleb(digits))
    return Decimal(lcm(int_a, int_b)).scaleb(-digits)


def exponent_of(value: Decimal) -> int:
    """The exponent of a finite Decimal (TypeError for NaN or infinity, which have none)."""
    exponent = value.as_tuple().exponent
    if isinstance(exponent, str):
        raise TypeError(f"{value} has no exponent")
    return exponent


def floor_to_step(qty: Decimal, step: Decimal) -> Decimal:
    """Largest multiple of `step` not above `qty` (never rounds up a size)."""
    if qty <= 0:
        return Decimal(0)
    return (qty / step).to_integral_value(rounding=ROUND_DOWN) * step


def hedge_qty(a: Instrument, b: Instrument, wanted: Decimal) -> Decimal:
    """Common base quantity for a two-leg trade on `a` and `b`: `wanted` rounded down onto both
    lot grids, or 0 when it does not reach either venue's minimum quantity."""
    _, _, step, least = _pair(a, b)
    qty = floor_to_step(wanted, step)
    if qty <= 0 or qty < least:
        return Decimal(0)
    return qty


__all__ = ["BPS", "Fill", "base_step", "common_base_step", "exponent_of", "floor_to_step", "hedge_qty", "mid_price",
           "sweep", "sweep_scaled"]
