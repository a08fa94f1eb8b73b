"""ccxt at the edge: its exceptions as perpbot.core.errors (a placement that may have reached the
venue is UnknownOutcome, resolved by query and never re-sent; signed query strings and secrets
never reach a message) and its API URLs re-pointed at one REST base (live, testnet, simulator)."""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import urlsplit

from ccxt.base import errors as cx  # type: ignore[import-untyped]

from perpbot.core import errors

_QUERY = re.compile(r"\?\S*")


def point_urls(api_urls: Any, rest_url: str) -> Any:
    """Every URL in ccxt's `urls['api']` (nested dicts allowed) re-based onto rest_url, path kept."""
    if isinstance(api_urls, dict):
        return {key: point_urls(value, rest_url) for key, value in api_urls.items()}
    if isinstance(api_urls, str):
        path = urlsplit(api_urls.replace("{hostname}", "placeholder.invalid")).path
        return rest_url.rstrip("/") + path
    return api_urls


def translate(
    venue: str, exc: Exception, placing: bool, secrets: tuple[str, ...] = (), funds_markers: tuple[str, ...] = ()
) -> errors.VenueErrorBase:
    """ccxt exception -> perpbot error. On placement anything that may have reached the venue
    (timeouts, lost responses, 5xx) is UnknownOutcome: it must be resolved by a query."""
    message = _QUERY.sub("?...", str(exc))  # signed query strings never reach a log line
    for secret in secrets:
        if secret:
            message = message.replace(secret, "**********")
    message = message[:500]
    if isinstance(exc, cx.InsufficientFunds) or (
        isinstance(exc, cx.BaseError) and not isinstance(exc, cx.NetworkError)
        and any(marker in message for marker in funds_markers)
    ):
        return errors.InsufficientFunds(venue, message)
    if isinstance(exc, cx.OrderNotFound):
        return errors.OrderNotFound(venue, message)
    if isinstance(exc, (cx.DDoSProtection, cx.RateLimitExceeded)):  # siblings in ccxt 4.5
        return errors.RateLimited(venue, message)
    if isinstance(exc, cx.OnMaintenance):
        return errors.TemporaryError(venue, message)
    if isinstance(exc, (cx.NetworkError, asyncio.TimeoutError, OSError)):
        # RequestTimeout, ExchangeNotAvailable (5xx), connection reset after sending, ...
        return errors.UnknownOutcome(venue, message) if placing else errors.TemporaryError(venue, message)
    if isinstance(exc, cx.BaseError):
        return errors.OrderRejected(venue, message) if placing else errors.TemporaryError(venue, message)
    return errors.UnknownOutcome(venue, message) if placing else errors.TemporaryError(venue, message)
