"""The simulator's timing recorder for benchmarks (`sim.record_timings`, off by default).

With it on, `POST /admin/jump` also watches the jumped venue: the first depth frame the simulator
writes for it from the next market tick on is stamped (the first frame that shows the dislocation;
frames of earlier ticks still queued are not), and every order reaching a
simulated venue's matching engine is stamped with its client id. Stamps are time.perf_counter()
(CLOCK_MONOTONIC: one clock for every process on the machine, so a bot in another process can
compare its own stamps). `GET /admin/timings` hands over what was recorded since the last call.
"""

from __future__ import annotations

from collections import deque
from typing import Any

# A substring of the venue's depth frames (not its trades, tickers or private pushes).
DEPTH_MARKERS = {"okx": '"books', "binance": "depthUpdate", "bybit": "orderbook.", "hyperliquid": "l2Book"}
MAX_RECORDS = 100_000


class TimingRecorder:
    def __init__(self) -> None:
        self.armed: set[str] = set()  # jumped, the market not yet stepped
        self.watching: set[str] = set()
        self.frames: deque[tuple[str, float]] = deque(maxlen=MAX_RECORDS)
        self.arrivals: deque[tuple[str, str, float]] = deque(maxlen=MAX_RECORDS)

    def watch(self, venue: str | None) -> None:
        if venue is not None:
            self.armed.add(venue)

    def on_tick(self) -> None:
        """The market stepped with the jumps armed so far: their frames are the next ones written."""
        self.watching |= self.armed
        self.armed.clear()

    def on_frame(self, venue: str, text: str, ts: float) -> None:
        if venue in self.watching and DEPTH_MARKERS.get(venue, "\0") in text[:200]:
            self.watching.discard(venue)
            self.frames.append((venue, ts))

    def on_arrival(self, venue: str, client_id: str | None, ts: float) -> None:
        if client_id is not None:
            self.arrivals.append((venue, client_id, ts))

    def drain(self) -> dict[str, Any]:
        out = {"frames": [list(f) for f in self.frames], "arrivals": [list(a) for a in self.arrivals]}
        self.frames.clear()
        self.arrivals.clear()
        return out
