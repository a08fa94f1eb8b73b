"""Shared test fixtures: recorded venue frames, a real redis-server, free loopback ports, a loopback WS server."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from testkit import free_port, wait_until  # noqa: F401 - re-exported as fixtures

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"


@pytest.fixture(name="free_port")
def free_port_fixture() -> Callable[[], int]:
    return free_port


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    """<repo>/../shared/fixtures: real recorded venue frames."""
    path = (SHARED / "fixtures").resolve()
    assert path.is_dir(), f"recorded fixtures missing at {path}"
    return path


@pytest.fixture
def redis_server(tmp_path: Path):
    """A real redis-server on a free loopback port in a temp dir; yields its URL."""
    binary = shutil.which("redis-server")
    assert binary, "redis-server binary is required"
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path),
         "--save", "", "--appendonly", "no", "--protected-mode", "yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("redis-server did not start")
        time.sleep(0.02)  # polling a child process's readiness, not synchronising test logic
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class WsTestServer:
    """A real websockets server on 127.0.0.1:<ephemeral> driven by a per-test handler.

    `handler(server, ws)` runs per connection; every text frame the server receives is
    recorded in `received`, and `connections` counts accepted sockets. `wait_for(pred)`
    waits on a condition with a timeout instead of sleeping.
    """

    def __init__(self, handler: Callable[["WsTestServer", object], Awaitable[None]]) -> None:
        self.handler = handler
        self.received: list[str] = []
        self.connections = 0
        self.port = 0
        self._server = None
        self._changed = asyncio.Condition()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def __aenter__(self) -> "WsTestServer":
        from websockets.asyncio.server import serve

        self._server = await serve(self._serve, "127.0.0.1", 0, ping_interval=None)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, ws) -> None:
        self.connections += 1
        await self.notify()
        try:
            await self.handler(self, ws)
        except Exception:  # a client going away mid-handler is normal here
            pass

    async def record(self, frame) -> None:
        self.received.append(frame)
        await self.notify()

    async def notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        async def _wait() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)

        await asyncio.wait_for(_wait(), timeout)


@pytest.fixture
def ws_server():
    """Factory: `async with ws_server(handler) as server:`."""
    return WsTestServer


@pytest.fixture(name="wait_until")
def wait_until_fixture():
    return wait_until
