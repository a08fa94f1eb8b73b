"""The scanner's TopScreen products in C memory: `Tops`, the type from perpbot/scanner/_tops.c (one
object per base: the books' sell and buy products and their extremes), or None where it is not
built (no compiler at install) or PERPBOT_PURE_PYTHON=1; the scanner's Python lists do the same work
then (tests/unit/scanner/test_scanner_c_tops.py compares them)."""

from __future__ import annotations

from perpbot.core.accelerators import load_accelerator


def _load_tops() -> type | None:
    built = load_accelerator("perpbot.scanner._tops")
    return None if built is None else built.Tops


Tops: type | None = _load_tops()
