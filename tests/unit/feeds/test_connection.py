"""Connection layer against real loopback WebSocket servers: backoff, recovery, watchdog, keepalive, resubscribe."""

from __future__ import annotations

import asyncio
import logging
import random
import time

import pytest

from perpbot.core.venue import ConnectionSpec
from perpbot.feeds.connection import Connection, backoff_delay
from perpbot.settings import FeedSettings
from perpbot.telemetry.metrics import Metrics

from testkit import free_port, wait_until

SUB = '{"op":"subscribe","args":["books"]}'


def make_conn(url: str, settings: FeedSettings, frames: list | None = None, **kw) -> Connection:
    received = frames if frames is not None else []

    def on_frame(conn: Connection, frame, recv_ts: float) -> None:
        if frame == "pong":
            conn.note_pong()
        received.append(frame)

    spec = ConnectionSpec("test", url, [SUB], ["BTC"])
    return Connection("okx", spec, settings, on_frame, rng=random.Random(7), **kw)


async def _run(conn: Connection):
    return asyncio.get_running_loop().create_task(conn.run())


async def _finish(conn: Connection, task: asyncio.Task) -> None:
    await conn.stop()
    await asyncio.wait_for(task, 5)


def test_backoff_delay_is_jittered_capped_and_never_below_initial():
    rng = random.Random(1)
    delays = [backoff_delay(attempt, 0.5, 4.0, rng) for attempt in range(40) for _ in range(20)]
    assert min(delays) >= 0.5
    assert max(delays) <= 4.0
    late = [backoff_delay(30, 0.5, 4.0, rng) for _ in range(200)]
    assert len({round(d, 6) for d in late}) > 100  # jitter, not a fixed schedule
    assert max(late) > 3.0  # the window really grew to the cap


async def test_refused_connection_backs_off_capped_then_recovers_after_set_url(ws_server, caplog):
    caplog.set_level(logging.WARNING, "perpbot.feeds.connection")
    settings = FeedSettings(backoff_initial_s=0.05, backoff_max_s=0.2, watchdog_s=5, ping_interval_s=5)
    metrics = Metrics()
    dead_url = f"ws://127.0.0.1:{free_port()}/ws"
    conn = make_conn(dead_url, settings, metrics=metrics)
    started = time.monotonic()
    task = await _run(conn)
    await wait_until(lambda: conn.reconnects >= 6, timeout=5)
    elapsed = time.monotonic() - started
    assert conn.connected is False
    assert conn.status()["connected"] is False
    # 6 retries with >= 0.05 s each: no spinning; and the cap keeps the wait bounded.
    assert elapsed >= 6 * 0.05
    assert conn.next_retry_s is None or conn.next_retry_s <= 0.2
    assert "refused" in (conn.last_error or "")
    assert any("WebSocket connection failed" in r.getMessage() and "refused" in r.getMessage()
               for r in caplog.records)
    refused = metrics.registry.get_sample_value(
        "perpbot_websocket_reconnects_total", {"exchange": "okx", "reason": "connect"})
    assert refused is not None and refused >= 5

    async def handler(server, ws):
        async for frame in ws:
            await server.record(frame)
            await ws.send('{"ok":1}')

    async with ws_server(handler) as server:
        await conn.set_url(server.url)
        await server.wait_for(lambda: SUB in server.received)
        await wait_until(lambda: conn.messages >= 1)
        assert conn.connected is True
        status = conn.status()
        assert status["connected"] is True and status["url"] == server.url
        assert status["connected_since"] is not None
        assert status["last_message_age_s"] is not None and status["last_message_age_s"] < 5
        await _finish(conn, task)
    assert conn.connected is False


async def test_watchdog_reconnects_a_stalled_server(ws_server):
    settings = FeedSettings(backoff_initial_s=0.02, backoff_max_s=0.05, watchdog_s=0.3, ping_interval_s=5)
    metrics = Metrics()

    async def silent(server, ws):
        async for frame in ws:  # accepts subscriptions, never sends anything back
            await server.record(frame)

    async with ws_server(silent) as server:
        conn = make_conn(server.url, settings, metrics=metrics, ping_frame="ping", ping_interval_s=5)
        task = await _run(conn)
        await server.wait_for(lambda: server.connections >= 2, timeout=5)
        await wait_until(lambda: metrics.registry.get_sample_value(
            "perpbot_websocket_reconnects_total", {"exchange": "okx", "reason": "watchdog"}) is not None)
        assert conn.reconnects >= 1
        await _finish(conn, task)


async def test_text_pings_keep_a_strict_server_open_and_measure_round_trip(ws_server):
    """The server closes any connection that goes 0.4 s without a ping; ours pings on silence."""
    settings = FeedSettings(backoff_initial_s=0.05, backoff_max_s=0.1, watchdog_s=2.0, ping_interval_s=5)
    closed_for_silence = []

    async def strict(server, ws):
        while True:
            try:
                frame = await asyncio.wait_for(ws.recv(), 0.4)
            except TimeoutError:
                closed_for_silence.append(True)
                await ws.close()
                return
            await server.record(frame)
            if frame == "ping":
                await ws.send("pong")

    async with ws_server(strict) as server:
        conn = make_conn(server.url, settings, ping_frame="ping", ping_interval_s=0.1)
        task = await _run(conn)
        await server.wait_for(lambda: server.received.count("ping") >= 8, timeout=5)
        assert closed_for_silence == []
        assert server.connections == 1
        assert conn.reconnects == 0
        assert conn.ping_rtt_s is not None and 0 <= conn.ping_rtt_s < 0.5
        await _finish(conn, task)


async def test_without_pings_the_strict_server_drops_us_and_we_reconnect(ws_server):
    settings = FeedSettings(backoff_initial_s=0.02, backoff_max_s=0.05, watchdog_s=5.0, ping_interval_s=60)

    async def strict(server, ws):
        try:
            frame = await asyncio.wait_for(ws.recv(), 10)
            await server.record(frame)
            await asyncio.wait_for(ws.recv(), 0.2)
        except TimeoutError:
            await ws.close()

    async with ws_server(strict) as server:
        conn = make_conn(server.url, settings, ping_frame="ping", ping_interval_s=60)
        task = await _run(conn)
        await server.wait_for(lambda: server.connections >= 3, timeout=5)
        assert conn.reconnects >= 2
        await _finish(conn, task)


async def test_protocol_pings_are_used_when_the_venue_has_no_text_ping(ws_server):
    settings = FeedSettings(backoff_initial_s=0.05, backoff_max_s=0.1, watchdog_s=5.0, ping_interval_s=60)

    async def quiet(server, ws):
        async for frame in ws:
            await server.record(frame)

    async with ws_server(quiet) as server:
        conn = make_conn(server.url, settings, ping_frame=None, ping_interval_s=0.05)
        task = await _run(conn)
        await wait_until(lambda: conn.ping_rtt_s is not None)
        assert conn.ping_rtt_s < 0.5
        assert server.received == [SUB]  # no text ping went out
        await _finish(conn, task)


async def test_subscriptions_are_resent_on_every_reconnect(ws_server):
    settings = FeedSettings(backoff_initial_s=0.02, backoff_max_s=0.05, watchdog_s=5.0, ping_interval_s=5)
    extra = '{"op":"subscribe","args":["funding"]}'

    async def drop_first_after_two(server, ws):
        first = server.connections == 1
        count = 0
        async for frame in ws:
            await server.record(frame)
            await ws.send('{"ack":true}')
            count += 1
            if first and count == 2:
                await ws.close()
                return

    async with ws_server(drop_first_after_two) as server:
        conn = make_conn(server.url, settings)
        task = await _run(conn)
        await server.wait_for(lambda: SUB in server.received)
        await conn.opened.wait()
        await conn.subscribe(extra)
        await server.wait_for(lambda: server.connections >= 2 and server.received.count(extra) >= 2)
        assert server.received == [SUB, extra, SUB, extra]
        assert conn.reconnects == 1
        await _finish(conn, task)


@pytest.mark.parametrize("reason_word", ["refused"])
async def test_a_refused_feed_never_spins(reason_word):
    """Over 0.5 s with a 0.1 s floor there can be at most ~5 attempts, not thousands."""
    settings = FeedSettings(backoff_initial_s=0.1, backoff_max_s=0.1, watchdog_s=5, ping_interval_s=5)
    conn = make_conn(f"ws://127.0.0.1:{free_port()}/ws", settings)
    task = await _run(conn)
    await wait_until(lambda: conn.reconnects >= 1)
    first = conn.reconnects
    start = time.monotonic()
    await wait_until(lambda: time.monotonic() - start >= 0.5, step=0.05)
    assert conn.reconnects - first <= 6
    assert reason_word in conn.last_error
    await _finish(conn, task)
