"""Event-loop lag sampler: how late a timer fires tells how busy the loop is; feeds metrics.event_loop_lag."""

from __future__ import annotations

import asyncio
from typing import Any

DEFAULT_INTERVAL_S = 0.25


class LoopLagMonitor:
    """Sleeps `interval_s` repeatedly and records the overshoot; keeps the last and worst recent lag."""

    def __init__(self, metrics: Any = None, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self.metrics = metrics
        self.interval_s = interval_s
        self.last_lag_s = 0.0
        self.max_recent_s = 0.0  # worst lag since the last take_max()
        self.samples = 0

    def record(self, lag_s: float) -> None:
        lag_s = max(0.0, lag_s)
        self.last_lag_s = lag_s
        if lag_s > self.max_recent_s:
            self.max_recent_s = lag_s
        self.samples += 1
        if self.metrics is not None:
            self.metrics.event_loop_lag.observe(lag_s)

    def take_max(self) -> float:
        worst, self.max_recent_s = self.max_recent_s, self.last_lag_s
        return worst

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + self.interval_s
            await asyncio.sleep(self.interval_s)
            self.record(loop.time() - expected)
