"""Exact decimal numbers at the boundaries: wire text <-> scaled integers, Decimal <-> text.

Books hold prices and sizes as integers scaled by 10**SCALE so that they are exact
and cheap to compare and sum; nothing is rounded on the way in. A wire value with more
fractional digits than SCALE is refused (ValueError) rather than silently rounded.
The one set of decimal formatters (`plain`, `plain_or_none`, `scaled_to_str`) and readers
(`decimal_or_none`, `venue_decimal`) lives here too.
"""

from __future__ import annotations

from decimal import Decimal

SCALE = 9
ONE: int = 10**SCALE
_POW10: tuple[int, ...] = tuple(10**i for i in range(SCALE + 1))


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


# -- Decimal text: the one set of formatters and readers ------------------------------------------
# Every place that turns a Decimal into text (JSON, journal rows, venue wire values) or a venue/ccxt
# number into a Decimal uses these, so "30000", "0.02" and "0" are spelled one way everywhere.


def plain(value: Decimal, min_places: int = 0) -> str:
    """Canonical text of a Decimal: no exponent, no trailing zeros, "0" for any zero (also -0),
    padded to at least `min_places` decimals ("59936.0" with min_places=1). Non-finite values
    keep their names ("NaN", "Infinity"): callers that must refuse them check first."""
    if not value.is_finite():
        return format(value, "f")
    text = format(value.normalize(), "f") if value else "0"
    if min_places > 0:
        whole, _, frac = text.partition(".")
        if len(frac) < min_places:
            text = f"{whole}.{frac.ljust(min_places, '0')}"
    return text


def plain_or_none(value: Decimal | None) -> str | None:
    """`plain` for JSON fields that may be absent: None stays None."""
    return None if value is None else plain(value)


def decimal_or_none(value: object) -> Decimal | None:
    """A ccxt number (a float parsed from the venue's string), an int, a decimal string or a
    Decimal -> the exact Decimal of its shortest repr; None or "" -> None. Only for numbers that
    exist nowhere else: a value the venue sent as a string is read from that string (venue_decimal)."""
    if value is None or value == "":
        return None
    if isinstance(value, Decimal):
        return value
    return Decimal(str(value))


def venue_decimal(text: object, number: object) -> Decimal | None:
    """The venue's own decimal string when it sent one (exact), else ccxt's parsed number."""
    if isinstance(text, str) and text:
        return Decimal(text)
    return decimal_or_none(number)
