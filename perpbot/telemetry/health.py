"""Health score 0-100 from components (feeds, books, venue REST, Redis, journal, loop lag) -> perpbot_system_health.

Every component is a number in [0, 1]; the score is the weighted sum, in percent:

| component  | weight | 1.0 means                                  | how the value is formed                         |
|------------|--------|--------------------------------------------|-------------------------------------------------|
| feeds      | 30     | every enabled venue's feed connected       | connected venues / enabled venues               |
| books      | 25     | every book valid and fresh                 | usable books / books                            |
| venue_rest | 15     | every venue's REST API answering           | check result; 1.0 when no check is wired        |
| redis      | 10     | Redis answers PING, or Redis not configured| 1 / 0                                           |
| journal    | 10     | the journal is writable, or not wired      | check result; 1.0 when no check is wired        |
| loop_lag   | 10     | worst recent event-loop lag <= 50 ms       | linear from 1 at 50 ms down to 0 at 500 ms      |

Caps (applied after the sum): no feed connected at all -> at most 40 (below the alert
threshold of 70, whatever else is fine); Redis configured but down -> at most 80.
`perpbot_component_health{component}` exports each component value (0..1).
Ready (GET /health/ready) means: every enabled venue connected with at least one usable
book, and score >= 70.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("perpbot.telemetry.health")

WEIGHTS: dict[str, float] = {
    "feeds": 30.0,
    "books": 25.0,
    "venue_rest": 15.0,
    "redis": 10.0,
    "journal": 10.0,
    "loop_lag": 10.0,
}
LAG_GOOD_S = 0.05
LAG_BAD_S = 0.5
READY_MIN_SCORE = 70.0
CHECK_TIMEOUT_S = 2.0

Check = Callable[[], "float | bool | Awaitable[float | bool]"]


def lag_component(lag_s: float) -> float:
    if lag_s <= LAG_GOOD_S:
        return 1.0
    if lag_s >= LAG_BAD_S:
        return 0.0
    return 1.0 - (lag_s - LAG_GOOD_S) / (LAG_BAD_S - LAG_GOOD_S)


def score(components: dict[str, float], redis_configured: bool = False) -> float:
    """Pure: the documented rule above. Missing components count as 1.0 (not wired)."""
    total = 0.0
    for name, weight in WEIGHTS.items():
        value = min(1.0, max(0.0, float(components.get(name, 1.0))))
        total += weight * value
    if components.get("feeds", 1.0) <= 0.0:
        total = min(total, 40.0)
    if redis_configured and components.get("redis", 1.0) <= 0.0:
        total = min(total, 80.0)
    return round(total, 1)


class HealthMonitor:
    """Evaluates the components periodically and exports them; the control API reads `last`."""

    def __init__(
        self,
        metrics: Any,
        *,
        supervisor: Any = None,
        store: Any = None,
        loop_lag: Any = None,
        redis_url: str | None = None,
        checks: dict[str, Check] | None = None,
    ) -> None:
        self.metrics = metrics
        self.supervisor = supervisor
        self.store = store
        self.loop_lag = loop_lag
        self.redis_url = redis_url
        self.checks = dict(checks or {})  # e.g. {"venue_rest": ..., "journal": ...}
        self._redis: Any = None  # redis.asyncio.Redis once first used
        self.last: dict[str, Any] = {"score": 0.0, "components": {}, "ready": False, "reasons": ["not evaluated yet"]}

    async def _redis_ok(self) -> float:
        if self.redis_url is None:
            return 1.0
        try:
            if self._redis is None:
                import redis.asyncio as aioredis

                self._redis = aioredis.from_url(self.redis_url, socket_timeout=CHECK_TIMEOUT_S,
                                                socket_connect_timeout=CHECK_TIMEOUT_S)
            return 1.0 if await asyncio.wait_for(self._redis.ping(), CHECK_TIMEOUT_S) else 0.0
        except Exception as exc:  # any failure to answer is "down"
            log.warning("Health: Redis not reachable: %s", exc.__class__.__name__)
            return 0.0

    async def _run_check(self, name: str, check: Check) -> float:
        try:
            value = check()
            if inspect.isawaitable(value):
                value = await asyncio.wait_for(value, CHECK_TIMEOUT_S)
            return float(value)
        except Exception as exc:
            log.warning("Health: %s check failed: %s", name, exc)
            return 0.0

    async def evaluate(self) -> dict[str, Any]:
        components: dict[str, float] = {}
        reasons: list[str] = []
        venues_ready = True
        if self.supervisor is not None and self.supervisor.venues:
            status = self.supervisor.status()
            connected = sum(1 for v in status.values() if v["connected"])
            components["feeds"] = connected / len(status)
            for venue, item in status.items():
                if not item["connected"]:
                    reasons.append(f"{venue} feed not connected")
                    venues_ready = False
        if self.store is not None and self.store.books:
            usable_by_venue: dict[str, int] = {}
            usable = 0
            for (venue, _), book in self.store.books.items():
                ok = self.store.is_usable(book)
                usable += ok
                usable_by_venue[venue] = usable_by_venue.get(venue, 0) + ok
            components["books"] = usable / len(self.store.books)
            for venue, count in usable_by_venue.items():
                if count == 0:
                    reasons.append(f"{venue} has no usable book")
                    venues_ready = False
        components["redis"] = await self._redis_ok()
        if components["redis"] < 1.0:
            reasons.append("redis not reachable")
        for name, check in self.checks.items():
            components[name] = await self._run_check(name, check)
            if components[name] < 1.0:
                reasons.append(f"{name} degraded")
        if self.loop_lag is not None:
            components["loop_lag"] = lag_component(self.loop_lag.take_max())
        value = score(components, redis_configured=self.redis_url is not None)
        if value < READY_MIN_SCORE:
            reasons.append(f"health {value} below {READY_MIN_SCORE}")
        ready = venues_ready and value >= READY_MIN_SCORE
        if self.metrics is not None:
            self.metrics.system_health.set(value)
            for name in WEIGHTS:
                self.metrics.component_health.labels(name).set(components.get(name, 1.0))
        self.last = {"score": value, "components": components, "ready": ready, "reasons": reasons}
        return self.last

    async def run(self, interval_s: float = 5.0) -> None:
        while True:
            await self.evaluate()
            await asyncio.sleep(interval_s)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
