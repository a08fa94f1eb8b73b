"""The scanner's TopScreen products in C memory: `Tops`, the type from perpbot/scanner/_tops.c (one
object per base: the books' sell and buy products and their extremes), or None where it is not
built (no compiler at install) or PERPBOT_PURE_PYTHON=1; the scanner's Python lists do the same work
then (tests/unit/scanner/test_scanner_c_tops.py compares them)."""

from __future__ import annotations

import os


def _load_tops() -> type | None:
    if os.environ.get("PERPBOT_PURE_PYTHON") == "1":
        return None
    try:
        from perpbot.scanner._tops import Tops as built
    except ImportError:  # no compiler at install: the Python lists
        return None
    return built  # type: ignore[no-any-return]


Tops: type | None = _load_tops()
