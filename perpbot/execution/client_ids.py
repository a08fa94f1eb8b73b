"""Deterministic client order ids: (intent id, leg, attempt) -> the id each venue accepts.

The same inputs always give the same id, so an order whose response was lost can be found
again by asking the venue for that id (never by re-sending it).
"""

from __future__ import annotations

import hashlib
import importlib
import re
import secrets

_ALNUM = re.compile(r"[^A-Za-z0-9]")


def new_intent_id() -> str:
    """A fresh intent id: 16 lowercase hex characters (64 random bits)."""
    return secrets.token_hex(8)


def canonical_client_id(intent_id: str, leg: str, attempt: int) -> str:
    """Venue-neutral id: 'pb' + intent + leg tag + attempt, alphanumerics only, <= 32 chars.

    Long intent ids are hashed so the result still fits OKX's 32-alphanumeric limit.
    """
    if attempt < 0 or attempt > 999:
        raise ValueError(f"attempt {attempt} outside 0..999")
    intent = _ALNUM.sub("", intent_id)
    tag = _ALNUM.sub("", leg)[:6] or "x"
    body = f"{tag}{attempt}"
    room = 32 - 2 - len(body)
    if len(intent) > room or not intent:
        intent = hashlib.sha256(intent_id.encode()).hexdigest()[:room]
    return f"pb{intent}{body}"


def client_order_id(venue: str, intent_id: str, leg: str, attempt: int = 0) -> str:
    """The id for `venue`, formatted by perpbot.venues.<venue>.orders.format_client_id."""
    orders = importlib.import_module(f"perpbot.venues.{venue}.orders")
    formatted: str = orders.format_client_id(canonical_client_id(intent_id, leg, attempt))
    return formatted
