"""Our own small hierarchy of venue errors; every ccxt exception is translated into one.

Placement is never retried blindly: only `TemporaryError` and `RateLimited` mean the order
certainly did not reach the book; `UnknownOutcome` must be resolved by a query.
"""

from __future__ import annotations


class VenueErrorBase(Exception):
    def __init__(self, venue: str, message: str) -> None:
        super().__init__(f"{venue}: {message}")
        self.venue = venue
        self.message = message


class OrderRejected(VenueErrorBase):
    """The venue refused the order (bad params, reduce-only violated, post-only, ...)."""


class InsufficientFunds(OrderRejected):
    """Margin or balance too low for the order."""


class RateLimited(VenueErrorBase):
    def __init__(self, venue: str, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(venue, message)
        self.retry_after_s = retry_after_s


class TemporaryError(VenueErrorBase):
    """Venue unavailable / maintenance / 5xx before the order was accepted."""


class UnknownOutcome(VenueErrorBase):
    """Timeout or lost response: the order may or may not exist. Query by client id."""


class OrderNotFound(VenueErrorBase):
    """The venue has no order with that id."""


class ChannelDown(VenueErrorBase):
    """The order-entry WebSocket was not ready and nothing was sent: the same order may go over REST."""
