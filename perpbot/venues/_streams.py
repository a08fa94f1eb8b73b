"""What the venues' feed adapters share: JSON control frames, symbols split across connections, and
the "no REST snapshot" answers of the venues whose books start from a WebSocket snapshot."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from perpbot.core.events import BookUpdate, ParseError


def json_frame(message: Any) -> str:
    """A control frame (subscribe, unsubscribe, ...) as compact JSON text."""
    return orjson.dumps(message).decode()


def resubscribe(verb_key: str, **body: Any) -> list[str]:
    """[unsubscribe, subscribe] of one stream: what makes a venue send a fresh snapshot of it.
    `verb_key` is where the venue puts the verb ("op" on OKX and Bybit, "method" on Hyperliquid)."""
    return [json_frame({verb_key: verb, **body}) for verb in ("unsubscribe", "subscribe")]


def connection_groups(symbols: list[str], per_connection: int) -> Iterator[tuple[str, list[str]]]:
    """(name suffix, symbols) for symbols split `per_connection` at a time: the first connection's
    suffix is "", the next "-2", "-3", ..."""
    for start in range(0, len(symbols), per_connection):
        number = start // per_connection + 1
        yield ("" if number == 1 else f"-{number}"), symbols[start : start + per_connection]


class VenueFeed:
    """What every feed adapter answers the same way: its keepalive is `ping_text` (None: WebSocket
    protocol pings)."""

    venue: str
    ping_text: str | None = None

    def ping_frame(self) -> str | None:
        return self.ping_text


class WebSocketSnapshots(VenueFeed):
    """For adapters whose books start from the venue's WebSocket snapshot (rest_snapshot False):
    the REST snapshot step of the FeedAdapter port is refused with the venue's reason."""

    rest_snapshot = False
    snapshot_reason = "books start from the WebSocket snapshot"

    def snapshot_url(self, rest_url: str, symbol: str) -> str:
        raise ValueError(f"{self.venue} {self.snapshot_reason}; there is no REST snapshot step")

    def parse_snapshot(self, body: bytes, symbol: str, recv_ts: float) -> BookUpdate:
        raise ParseError(self.venue, f"{self.venue} {self.snapshot_reason}", symbol)
