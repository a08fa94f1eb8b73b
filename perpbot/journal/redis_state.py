"""Live shared state in Redis: trading state, latest positions and a heartbeat, for operators and tools.

Redis is a mirror, never the source of truth (that is the SQLite journal). Without a
configured URL the bot runs on the journal alone and says so once at start.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, cast

import redis.asyncio as redis_async

log = logging.getLogger(__name__)

PREFIX = "perpbot:"


class RedisState:
    def __init__(self, url: str, heartbeat_ttl_s: int = 90, clock=time.time) -> None:
        self.url = url
        self.heartbeat_ttl_s = heartbeat_ttl_s
        self._clock = clock
        self.client = redis_async.from_url(url, decode_responses=True, socket_timeout=2.0)

    @classmethod
    def from_settings(cls, redis_settings) -> "RedisState | None":
        if not redis_settings.url:
            log.warning("no redis url configured: running on the SQLite journal alone")
            return None
        return cls(redis_settings.url)

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    async def set_state(self, state: str, reason: str) -> None:
        await self.client.hset(PREFIX + "trading_state", mapping={"state": state, "reason": reason,
                                                                  "since": repr(self._clock())})

    async def get_state(self) -> dict[str, str]:
        """The mirrored trading state; {} when the key holds something else (logged, never raised)."""
        try:
            # decode_responses=True: keys and values are str
            return cast(dict[str, str], await self.client.hgetall(PREFIX + "trading_state"))
        except redis_async.ResponseError as exc:  # WRONGTYPE: garbage written over the hash
            log.error("redis: unreadable %strading_state ignored: %s", PREFIX, exc)
            return {}

    async def set_positions(self, positions: list[dict[str, Any]]) -> None:
        await self.client.set(PREFIX + "positions", json.dumps(positions, sort_keys=True))

    async def get_positions(self) -> list[dict[str, Any]]:
        try:
            raw = await self.client.get(PREFIX + "positions")
            positions = json.loads(raw) if raw else []
        except (redis_async.ResponseError, ValueError) as exc:
            log.error("redis: unreadable %spositions ignored: %s", PREFIX, exc)
            return []
        if not isinstance(positions, list) or not all(isinstance(p, dict) for p in positions):
            log.error("redis: %spositions is not a list of objects; ignored", PREFIX)
            return []
        return positions

    async def heartbeat(self) -> None:
        await self.client.set(PREFIX + "heartbeat", repr(self._clock()), ex=self.heartbeat_ttl_s)

    async def last_heartbeat(self) -> float | None:
        try:
            raw = await self.client.get(PREFIX + "heartbeat")
            value = float(raw) if raw else None
        except (redis_async.ResponseError, ValueError) as exc:
            log.error("redis: unreadable %sheartbeat ignored: %s", PREFIX, exc)
            return None
        return value if value is not None and value == value and abs(value) != float("inf") else None

    async def close(self) -> None:
        await self.client.aclose()
