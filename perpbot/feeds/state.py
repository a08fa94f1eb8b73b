"""Runtime state of one venue's market data, as kept by the feed supervisor (perpbot.feeds.supervisor).

`VenueFeed` holds a venue's adapter, connections, per-symbol book routing and the resync
bookkeeping (pending/in-flight resyncs, REST snapshot buffers, cooldowns, failures) that the
supervisor, its REST snapshot handling (perpbot.feeds.snapshots) and its status report
(perpbot.feeds.status) read and update.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from perpbot.core.venue import FeedAdapter
from perpbot.feeds.connection import Connection


@dataclass(slots=True)
class VenueFeed:
    """Runtime state of one venue's market data."""

    adapter: FeedAdapter
    rest_url: str
    symbols: list[str]
    connections: list[Connection] = field(default_factory=list)
    # The connection whose stored subscriptions carry each symbol's book.
    book_connection: dict[str, Connection] = field(default_factory=dict)
    # symbol -> buffered deltas while its REST snapshot is in flight (rest_snapshot venues).
    buffers: dict[str, deque] = field(default_factory=dict)
    pending: dict[str, str] = field(default_factory=dict)  # symbol -> reason, waiting for the worker
    inflight: set[str] = field(default_factory=set)
    last_resync: dict[str, float] = field(default_factory=dict)
    snapshot_failures: dict[str, int] = field(default_factory=dict)
    # symbol -> monotonic time of the first delta seen while its book waited for a WS snapshot.
    awaiting_since: dict[str, float] = field(default_factory=dict)
