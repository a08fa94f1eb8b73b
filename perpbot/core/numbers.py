"""Exact decimal-string <-> scaled-integer conversion used at the wire boundary.

Books hold prices and sizes as integers scaled by 10**SCALE so that they are exact
and cheap to compare and sum; nothing is rounded on the way in. A wire value with more
fractional digits than SCALE is refused (ValueError) rather than silently rounded.
"""

from __future__ import annotations

from decimal import Decimal

SCALE = 9
ONE = 10**SCALE
_POW10 = tuple(10**i for i in range(SCALE + 1))


def to_scaled(text: str) -> int:
    """Parse a non-negative decimal string ("30243.4", "0", "1e-05" excluded) exactly."""
    dot = text.find(".")
    # int() alone would also take "-5", "+5", " 5", "1_0" and non-ASCII digits ("١"):
    # a wire level must be plain ASCII digits with at most one dot, nothing else.
    digits = text if dot < 0 else text[:dot] + text[dot + 1 :]
    if not (digits.isascii() and digits.isdigit()):
        raise ValueError(f"{text!r} is not a plain non-negative decimal")
    if dot < 0:
        return int(text) * ONE
    frac = len(text) - dot - 1
    if frac > SCALE:
        # Accept only if the extra digits are zeros: exactness over convenience.
        trimmed = text.rstrip("0")
        frac = len(trimmed) - dot - 1
        if frac > SCALE:
            raise ValueError(f"{text!r} has more than {SCALE} decimal places")
        text = trimmed
        if frac <= 0:
            return int(text[:dot] or "0") * ONE
    return int(text[:dot] + text[dot + 1 :]) * _POW10[SCALE - frac]


def scaled_to_decimal(value: int) -> Decimal:
    """Exact Decimal of a scaled integer."""
    return Decimal(value).scaleb(-SCALE)


def decimal_to_scaled(value: Decimal) -> int:
    """Exact scaled integer of a Decimal; refuses values off the 1e-9 grid."""
    scaled = value.scaleb(SCALE)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value} has more than {SCALE} decimal places")
    return int(scaled)


def scaled_to_str(value: int) -> str:
    """Canonical decimal string of a scaled integer (no exponent, trailing zeros trimmed)."""
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), ONE)
    if not frac:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:0{SCALE}d}".rstrip("0")
