"""Ports between the trading core and the outside: venue trading clients and the control plane.

`ExchangeClient` is implemented by the ccxt client (live and simulator modes) and by the
paper client; nothing else may place orders. `EngineCommands` is what the HTTP control
plane may ask of the engine; routes stay thin and carry no logic of their own.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol

from perpbot.core.approved import ApprovedOrder
from perpbot.core.instruments import Instrument
from perpbot.core.order_entry import LinkMessage
from perpbot.core.orders import FundingPayment, OrderRequest, OrderResult, VenueBalance, VenuePosition
from perpbot.core.private_events import PrivateEvent


class ExchangeClient(Protocol):
    venue: str

    async def load_instruments(self, symbols: list[str]) -> dict[str, Instrument]: ...

    async def place_order(self, order: ApprovedOrder) -> OrderResult:
        """Place `order.request`; only an order the risk gate approved is accepted.
        Raises perpbot.core.errors.* ; UnknownOutcome on timeout / lost response."""
        ...

    async def fetch_order(self, symbol: str, client_order_id: str) -> OrderResult | None:
        """The order as the venue knows it; None when the venue never saw it."""
        ...

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderResult | None: ...

    async def fetch_open_orders(self) -> list[OrderResult]: ...

    async def fetch_positions(self) -> list[VenuePosition]: ...

    async def fetch_balance(self) -> VenueBalance: ...

    async def fetch_funding_payments(self, since_ms: int) -> list[FundingPayment]:
        """Funding paid/received on this account at or after `since_ms` (epoch ms), oldest first."""
        ...

    async def close(self) -> None: ...


class PrivateLink(Protocol):
    """One venue's private-stream protocol, as data and small calls (perpbot/venues/<venue>/private_link.py):
    where to connect, how to log in and subscribe, what its frames mean. The generic stream
    (perpbot.feeds.private_stream) owns the connection, keepalive, backoff, watchdog and status."""

    venue: str
    ping_frame: str | None  # None: protocol-level pings (Binance)
    ping_interval_s: float
    keepalive_interval_s: float | None  # Binance: the listen key's keepalive; None when none
    needs_ack: bool  # live only once the venue acknowledged a subscription (else: once connected)

    async def url(self) -> str:
        """The URL to connect to now (Binance: creates, or keeps alive, the listen key first)."""
        ...

    def login_frames(self) -> list[str]:
        """Sent right after connecting (fresh timestamps each time); empty when the venue has no login."""
        ...

    def subscribe_frames(self) -> list[str]:
        """Sent once logged in (at once when there is no login)."""
        ...

    def parse(self, frame: str | bytes, recv_ts: float) -> list[PrivateEvent]:
        """Raises perpbot.core.events.ParseError on a frame it cannot read."""
        ...

    async def keepalive(self) -> bool:
        """Keep the session's key alive (Binance PUT listenKey); False when the venue no longer knows it."""
        ...

    def key_expired(self) -> None:
        """Forget the current key: the next url() creates another."""
        ...

    async def close(self) -> None: ...


class OrderChannel(Protocol):
    """Order entry over a venue's WebSocket (perpbot.feeds.order_socket.OrderSocket). `place` raises
    perpbot.core.errors.ChannelDown before sending anything when the socket is not ready."""

    venue: str
    fallbacks: int

    def ready(self) -> bool: ...

    async def place(self, order: ApprovedOrder) -> OrderResult: ...

    async def cancel(self, symbol: str, client_order_id: str) -> bool:
        """True when the venue took the cancel, False when the order was not open."""
        ...


class OrderLink(Protocol):
    """One venue's order-entry WebSocket protocol, as data and small pure calls
    (perpbot/venues/<venue>/order_link.py): where to connect, how to log in, the frames of a
    placement and a cancel, what the replies mean. The generic socket
    (perpbot.execution.order_socket) owns the connection, request ids, keepalive and fallback."""

    venue: str
    ping_frame: str | None  # None: protocol-level pings
    ping_interval_s: float

    def url(self) -> str: ...

    def login_frames(self) -> list[str]:
        """Sent right after connecting (fresh timestamps); empty when requests are signed one by one."""
        ...

    def place_frame(self, request_id: str, order: OrderRequest) -> str:
        """The placement request for an order the risk gate approved (the caller holds the ApprovedOrder)."""
        ...

    def cancel_frame(self, request_id: str, symbol: str, client_order_id: str) -> str: ...

    def parse(self, frame: str | bytes) -> LinkMessage | None:
        """A reply to a request or to the login; None for anything else (pongs, notices).
        Raises perpbot.core.events.ParseError on a frame it cannot read."""
        ...


class EngineCommands(Protocol):
    """Everything the control API may ask. Each returns JSON-ready data."""

    async def pause(self, reason: str) -> dict[str, Any]: ...

    async def resume(self) -> dict[str, Any]: ...

    async def close_all(self) -> dict[str, Any]:
        """Reduce-only flatten of every position on every venue; result per position."""
        ...

    async def sync_positions(self) -> dict[str, Any]:
        """Reconcile local state with the venues; returns what changed."""
        ...

    def trading_state(self) -> dict[str, Any]: ...

    def positions(self) -> list[dict[str, Any]]: ...

    def balances(self) -> list[dict[str, Any]]: ...

    def active_orders(self) -> list[dict[str, Any]]: ...

    def pnl_today(self) -> dict[str, Any]: ...

    # May be a coroutine function (the engine reads trades its memory no longer holds from the journal).
    def trades_since(self, since_ts: float) -> list[dict[str, Any]] | Awaitable[list[dict[str, Any]]]: ...
