"""Run a coroutine to its end even if the awaiting task is cancelled.

Used where stopping half-way costs money or consistency: a journal transaction (a cancel that
lands after COMMIT was handed to SQLite would otherwise run ROLLBACK on a finished
transaction and escape as an error), and the two legs' sends of one trade (both or neither).
The caller's cancellation is not lost: it is raised once the protected work has finished.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def uncancellable(awaitable: Awaitable[T]) -> T:
    """Await `awaitable` to completion; a cancellation of the caller is re-raised afterwards."""
    task = asyncio.ensure_future(awaitable)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():  # the protected work itself was cancelled or raised: nothing to wait for
                raise
            cancelled = True  # our caller was cancelled: keep waiting, re-raise afterwards
    if cancelled:
        raise asyncio.CancelledError
    return result
