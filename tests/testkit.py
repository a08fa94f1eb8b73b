"""Plain helpers shared by tests (importable as `testkit`; conftest modules are not importable reliably)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, step: float = 0.01) -> None:
    """Poll a condition owned by code under test (no event to wait on) with a hard timeout."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(step)
