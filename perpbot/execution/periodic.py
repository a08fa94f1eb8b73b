"""The desk's background watches (the margin watch, internal transfers): one pass every interval until the desk
stops, none while the operator has the bot PAUSED or it is stopping, and a failed pass logged, never the end of
the watch."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from perpbot.execution.desk import Desk

log = logging.getLogger(__name__)


async def every(desk: Desk, interval_s: float, check: Callable[[], Awaitable[Any]], what: str) -> None:
    """Run `check` every `interval_s` seconds until desk.stop_event is set."""
    while not desk.stop_event.is_set():
        try:
            await asyncio.wait_for(desk.stop_event.wait(), interval_s)
            return
        except asyncio.TimeoutError:
            pass
        if desk.state == "PAUSED" or desk.stopping:
            continue  # the operator's stop: nothing on the bot's own (close-all is the way out)
        try:
            await check()
        except Exception:  # one bad pass must not end the watch
            log.exception("%s pass failed", what)


__all__ = ["every"]
