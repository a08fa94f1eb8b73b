"""Long operator commands (close-all, sync) as operations the operator can follow.

An operation runs as a task owned by `Operations` (never fire-and-forget: kept, its outcome read,
cancelled at close). A request waits for it up to http.operation_wait_s and answers its result, or
a handle to poll (GET /api/operations/{id}); a caller leaving early never cancels it. While one
operation of a kind runs, asking for the same kind again joins it: two close-alls act once and both
callers learn the one result.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from perpbot.core.errors import VenueErrorBase

log = logging.getLogger("perpbot.control")

KEEP_FINISHED = 200  # finished operations kept for polling, the oldest forgotten first


@dataclass(slots=True)
class Operation:
    id: str
    kind: str  # "close_all", "sync", "sync_dry_run"
    started_at: float
    task: asyncio.Task[Any]
    finished_at: float | None = None
    error: str | None = None
    error_status: int | None = None  # the HTTP status a caller waiting for it answers on failure
    joined: int = field(default=0)  # callers that joined it while it ran

    @property
    def status(self) -> str:
        if not self.task.done():
            return "running"
        return "failed" if self.error is not None else "done"

    @property
    def result(self) -> Any:
        return self.task.result() if self.status == "done" else None

    def view(self) -> dict[str, Any]:
        """GET /api/operations/{id}: its state, and its result or error once finished."""
        return {"id": self.id, "kind": self.kind, "status": self.status, "started_at": self.started_at,
                "finished_at": self.finished_at, "joined": self.joined, "result": self.result,
                "error": self.error, "poll": f"/api/operations/{self.id}"}


class Operations:
    """The operations started by the control API: the running one per kind, and the last finished."""

    def __init__(self, clock: Callable[[], float] = time.time, keep: int = KEEP_FINISHED) -> None:
        self.clock = clock
        self.keep = keep
        self._all: OrderedDict[str, Operation] = OrderedDict()
        self._running: dict[str, Operation] = {}

    def start_or_join(self, kind: str, work: Callable[[], Awaitable[Any]]) -> tuple[Operation, bool]:
        """The running operation of `kind` (joined: True), else a new one running `work()`."""
        running = self._running.get(kind)
        if running is not None:
            running.joined += 1
            return running, True
        op_id = f"{kind.replace('_', '-')}-{secrets.token_hex(6)}"

        async def run() -> Any:
            return await work()

        task = asyncio.get_running_loop().create_task(run(), name=f"control-{op_id}")
        op = Operation(op_id, kind, self.clock(), task)
        self._running[kind] = op
        self._all[op_id] = op
        task.add_done_callback(lambda _: self._finished(op))
        self._forget_old()
        return op, False

    def get(self, op_id: str) -> Operation | None:
        return self._all.get(op_id)

    def running(self, kind: str) -> Operation | None:
        return self._running.get(kind)

    @staticmethod
    async def wait(op: Operation, timeout: float) -> bool:
        """Wait up to `timeout` for `op` to finish (the wait ending never cancels it); True when finished."""
        if not op.task.done() and timeout > 0:
            await asyncio.wait({op.task}, timeout=timeout)
        return op.task.done()

    async def close(self) -> None:
        """Cancel what still runs (the service is stopping) and wait for it to end."""
        tasks = [op.task for op in self._running.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _finished(self, op: Operation) -> None:
        op.finished_at = self.clock()
        if self._running.get(op.kind) is op:
            del self._running[op.kind]
        if op.task.cancelled():
            op.error, op.error_status = "cancelled (the service is stopping)", 503
            return
        exc = op.task.exception()
        if exc is None:
            log.info("Control operation %s done", op.id)
        elif isinstance(exc, VenueErrorBase):
            op.error, op.error_status = f"venue error: {exc}", 502
            log.error("Control operation %s failed: %s", op.id, op.error)
        else:
            op.error, op.error_status = f"internal error: {exc.__class__.__name__}", 503
            log.error("Control operation %s failed", op.id, exc_info=exc)

    def _forget_old(self) -> None:
        finished = [op_id for op_id, op in self._all.items() if op.task.done()]
        for op_id in finished[:max(0, len(finished) - self.keep)]:
            del self._all[op_id]
