"""Order entry routed over the venue's WebSocket when it is ready, REST (the ccxt client) when it is not.

`RoutedClient` is the ExchangeClient the engine trades through when `execution.order_entry` is "ws":
placements and cancels go over the OrderChannel (perpbot.feeds.order_socket) while it is ready;
`ChannelDown` (raised before anything was sent) sends the *same* approved order, with the same client
order id, over REST instead. Any other outcome of the WebSocket attempt stands: an unknown outcome is
resolved by the order lifecycle's query of the client id, never re-sent over the other path.
Reads (orders, positions, balances, funding) are REST's.
"""

from __future__ import annotations

import logging
from typing import Any

from perpbot.core import errors
from perpbot.core.approved import ApprovedOrder
from perpbot.core.instruments import Instrument
from perpbot.core.orders import FundingPayment, OrderResult, VenueBalance, VenuePosition
from perpbot.core.ports import ExchangeClient, OrderChannel

log = logging.getLogger("perpbot.execution.order_routing")


def _nothing() -> None:
    return None


def rest_of(client: Any) -> Any:
    """The REST client behind a routed one (itself otherwise): what reads and tests look at."""
    return client.rest if isinstance(client, RoutedClient) else client


class RoutedClient:
    """An ExchangeClient: the REST client for everything, the order channel in front of it for orders."""

    def __init__(self, rest: ExchangeClient, channel: OrderChannel, metrics: Any = None) -> None:
        self.rest = rest
        self.channel = channel
        self.venue = rest.venue
        self.ws_orders = 0
        self.rest_orders = 0
        self._count_ws = metrics.order_entry_total.labels(rest.venue, "ws").inc if metrics is not None else _nothing
        self._count_rest = metrics.order_entry_total.labels(rest.venue, "rest").inc if metrics is not None else _nothing

    def __getattr__(self, name: str) -> Any:
        # The REST client's own attributes (instruments, stream_confirms, exchange, ...) read through.
        return getattr(self.rest, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "stream_confirms":  # set by the composition root on the REST client it wraps
            setattr(self.rest, name, value)
        else:
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        return f"RoutedClient({self.venue}: ws then {self.rest!r})"

    async def place_order(self, order: ApprovedOrder) -> OrderResult:
        if not isinstance(order, ApprovedOrder):
            raise TypeError(f"place_order takes an ApprovedOrder minted by the risk gate, not {type(order).__name__}")
        if self.channel.ready():
            try:
                result = await self.channel.place(order)
            except errors.ChannelDown:
                pass  # nothing was sent: REST below, same client order id
            else:
                self.ws_orders += 1
                self._count_ws()
                return result
        self.channel.fallbacks += 1
        self.rest_orders += 1
        self._count_rest()
        log.info("%s order %s over REST: the order socket is not ready", self.venue, order.request.client_order_id)
        return await self.rest.place_order(order)

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderResult | None:
        if self.channel.ready():
            try:
                await self.channel.cancel(symbol, client_order_id)
            except errors.ChannelDown:
                pass
            else:
                # The cancel went fast; the order's final state (fills before the cancel) is the venue's.
                return await self.rest.fetch_order(symbol, client_order_id)
        return await self.rest.cancel_order(symbol, client_order_id)

    async def load_instruments(self, symbols: list[str]) -> dict[str, Instrument]:
        return await self.rest.load_instruments(symbols)

    async def fetch_order(self, symbol: str, client_order_id: str) -> OrderResult | None:
        return await self.rest.fetch_order(symbol, client_order_id)

    async def fetch_open_orders(self) -> list[OrderResult]:
        return await self.rest.fetch_open_orders()

    async def fetch_positions(self) -> list[VenuePosition]:
        return await self.rest.fetch_positions()

    async def fetch_balance(self) -> VenueBalance:
        return await self.rest.fetch_balance()

    async def fetch_funding_payments(self, since_ms: int) -> list[FundingPayment]:
        return await self.rest.fetch_funding_payments(since_ms)

    async def close(self) -> None:
        await self.rest.close()
