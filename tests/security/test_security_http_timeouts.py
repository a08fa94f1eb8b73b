"""Security: the control server's timeouts on real loopback sockets - unfinished request heads are cut
off after http.idle_timeout_s, an overrunning handler answers a JSON 504 after http.request_timeout_s
without holding up other requests, a long sync answers 202 with its operation instead (never a 504 after
half the work), and a slowloris crowd does not stop ordinary reads being answered."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from perpbot.control.server import ControlContext, ControlServer
from perpbot.settings import Settings
from perpbot.telemetry.metrics import Metrics

from testkit import free_port

TOKEN = "tok-timeouts-0123456789abcdef"
# Every wait below is bounded; the bound is far above the configured timeouts so a busy CI
# machine cannot turn a working server into a failure, while a server that never times out still fails.
BOUND_S = 10.0


class StuckEngine:
    """An engine port whose reconciliation and pause never finish (a venue that accepts the request and
    goes silent; a trade lock never released); the read-only calls answer at once, as the real engine's do."""

    def __init__(self) -> None:
        self.sync_started = asyncio.Event()
        self.sync_cancelled = asyncio.Event()
        self.pause_started = asyncio.Event()
        self.pause_cancelled = asyncio.Event()
        self._never = asyncio.Event()

    async def pause(self, reason: str) -> dict[str, Any]:
        self.pause_started.set()
        try:
            await self._never.wait()
        except asyncio.CancelledError:
            self.pause_cancelled.set()
            raise
        return {"state": "PAUSED"}

    async def sync_positions(self) -> dict[str, Any]:
        self.sync_started.set()
        try:
            await self._never.wait()
        except asyncio.CancelledError:
            self.sync_cancelled.set()
            raise
        return {"changed": []}

    def trading_state(self) -> dict[str, Any]:
        return {"state": "ACTIVE"}

    def positions(self) -> list[dict[str, Any]]:
        return []


async def _server(tmp_path, engine: Any = None, **http: Any) -> ControlServer:
    settings = Settings(mode="sim", log_dir=str(tmp_path / "logs"), api_token=TOKEN,
                        http={"host": "127.0.0.1", "port": 0, **http},
                        journal={"path": str(tmp_path / "journal.sqlite")},
                        sim={"enabled": True, "ports": {v: free_port() for v in ("okx", "hyperliquid", "binance", "bybit")},
                             "admin_port": free_port()})
    server = ControlServer(ControlContext(settings=settings, metrics=Metrics(), engine=engine))
    await server.start()
    return server


async def _read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (bounded)."""
    received = b""
    async with asyncio.timeout(BOUND_S):
        while chunk := await reader.read(4096):
            received += chunk
    return received


def _open_connections(server: ControlServer) -> int:
    assert server._runner is not None and server._runner.server is not None
    return len(server._runner.server.connections)


async def test_unfinished_request_head_is_closed_after_idle_timeout_without_an_answer(tmp_path):
    idle = 0.4
    server = await _server(tmp_path, idle_timeout_s=idle, request_timeout_s=5.0)
    try:
        loop = asyncio.get_running_loop()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        opened = loop.time()
        # Request line and one header, never the blank line that ends the head.
        writer.write(b"GET /api/websocket/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        await writer.drain()
        received = await _read_until_closed(reader)
        closed_after = loop.time() - opened
        writer.close()
        assert received == b""  # cut off, not answered
        assert closed_after >= idle * 0.9  # not before the configured timeout (loop clock; timer granularity)
        # The server is still serving after dropping the connection.
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{server.port}/health/live") as resp:
                assert resp.status == 200
    finally:
        await server.stop()


async def test_idle_keepalive_connection_is_closed_after_a_complete_request(tmp_path):
    server = await _server(tmp_path, idle_timeout_s=0.3)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        # Then half of a second request that never completes: the server must still close.
        writer.write(b"GET /health/live HTTP/1.1\r\nHost")
        await writer.drain()
        received = await _read_until_closed(reader)
        writer.close()
        assert received.startswith(b"HTTP/1.1 200 ")
        assert received.count(b"HTTP/1.1 ") == 1
    finally:
        await server.stop()


async def test_overrunning_handler_answers_json_504_and_other_requests_are_served_meanwhile(tmp_path):
    engine = StuckEngine()
    server = await _server(tmp_path, engine=engine, request_timeout_s=0.5, idle_timeout_s=5.0)
    base = f"http://127.0.0.1:{server.port}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with aiohttp.ClientSession() as http:
            async def stuck() -> tuple[int, str, dict[str, Any]]:
                async with http.post(base + "/api/trading/pause", headers=auth) as resp:
                    return resp.status, resp.content_type, await resp.json()

            slow = asyncio.create_task(stuck())
            async with asyncio.timeout(BOUND_S):
                await engine.pause_started.wait()
            # While the handler hangs, reads on other connections are answered.
            for path in ("/api/trading/state", "/api/positions", "/health/live", "/api/websocket/status"):
                async with http.get(base + path) as resp:
                    assert resp.status == 200, path
            assert not slow.done()
            async with asyncio.timeout(BOUND_S):
                status, content_type, body = await slow
            assert status == 504
            assert content_type == "application/json"
            assert body == {"error": "request took longer than 0.5s"}
            # The overrunning handler was cancelled, not left running in the background.
            assert engine.pause_cancelled.is_set()
            async with http.get(base + "/api/trading/state") as resp:
                assert resp.status == 200 and await resp.json() == {"state": "ACTIVE"}
    finally:
        await server.stop()


async def test_a_sync_longer_than_the_request_timeout_answers_202_with_its_operation_not_504(tmp_path):
    engine = StuckEngine()
    server = await _server(tmp_path, engine=engine, request_timeout_s=0.5, idle_timeout_s=5.0)
    base = f"http://127.0.0.1:{server.port}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        async with aiohttp.ClientSession() as http:
            async with asyncio.timeout(BOUND_S):
                async with http.post(base + "/api/sync/positions", headers=auth) as resp:
                    assert resp.status == 202 and resp.content_type == "application/json"
                    running = await resp.json()
            assert engine.sync_started.is_set() and not engine.sync_cancelled.is_set()  # still working
            async with http.get(base + running["poll"], headers=auth) as resp:
                assert (await resp.json())["status"] == "running"
    finally:
        await server.stop()
    assert engine.sync_cancelled.is_set()  # stopping the server ends what still runs


async def test_body_that_never_finishes_answers_504_after_request_timeout(tmp_path):
    engine = StuckEngine()
    server = await _server(tmp_path, engine=engine, request_timeout_s=0.4, idle_timeout_s=5.0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        # A complete head announcing 100 body bytes, then only 10 of them.
        writer.write(b"POST /api/trading/pause HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"reason\":")
        await writer.drain()
        async with asyncio.timeout(BOUND_S):
            head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 504 ")
        assert b"application/json" in head
        # The rest of the announced body never comes: after reading what it can for at most
        # request_timeout_s more, the server closes the connection.
        rest = await _read_until_closed(reader)
        writer.close()
        assert rest == b'{"error":"request took longer than 0.4s"}'
    finally:
        await server.stop()


async def test_slowloris_connections_do_not_stop_status_reads_and_are_all_cut_off(tmp_path):
    crowd = 60
    server = await _server(tmp_path, idle_timeout_s=2.0, request_timeout_s=5.0)
    base = f"http://127.0.0.1:{server.port}"
    streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        for _ in range(crowd):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /api/websocket/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            streams.append((reader, writer))
        await asyncio.gather(*(writer.drain() for _, writer in streams))
        async with aiohttp.ClientSession() as http:
            for path in ("/api/websocket/status", "/health/live", "/api/config"):
                async with http.get(base + path) as resp:
                    assert resp.status == 200, path
                    assert resp.content_type == "application/json"
            # The crowd was really being held open while those reads were answered.
            assert _open_connections(server) >= crowd
        received = await asyncio.gather(*(_read_until_closed(reader) for reader, _ in streams))
        assert received == [b""] * crowd
        for _, writer in streams:
            writer.close()
    finally:
        await server.stop()
