"""What a venue's order-entry WebSocket answers, as typed values (the seam between a venue's
`OrderLink` (perpbot/venues/<venue>/order_link.py) and the generic order socket
(perpbot.execution.order_socket)).

An `OrderAnswer` is one reply to one request the socket sent, matched by `request_id`. Most venues
acknowledge a placement with ids only (`complete` False: fills, average and fee come from the private
stream, or a query); an error is already one of perpbot.core.errors (a rejection, a rate limit with
its Retry-After, a temporary refusal), so the socket raises it as a REST client would.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from perpbot.core.errors import VenueErrorBase
from perpbot.core.orders import ResultStatus


@dataclass(frozen=True, slots=True)
class OrderAnswer:
    request_id: str
    venue_order_id: str | None = None
    status: ResultStatus = "open"  # "open" for a bare acknowledgement
    filled_qty: Decimal | None = None  # venue units
    avg_price: Decimal | None = None
    fee: Decimal | None = None
    complete: bool = False  # filled, average and fee all known from the answer itself
    error: VenueErrorBase | None = None
    # For the rate budget (perpbot.execution.rate_budget.observe): the HTTP-like status the venue gave
    # (429, 418, ...) and its usage counters as header-like pairs (Bybit's reply `header`, Binance's
    # `rateLimits` turned into X-MBX-* names); empty when the answer carries none.
    status_code: int = 200
    usage: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class LoginAnswer:
    """The venue's answer to the socket's login (auth) frame."""

    ok: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Pong:
    """The venue's answer to the link's text ping (keeps the socket's watchdog fed)."""


LinkMessage = OrderAnswer | LoginAnswer | Pong
