"""GET /api/websocket/status shows each venue's private stream, and /metrics its gauges, end to end: the
in-process App on the default sim configuration (all four venues, default symbols, backoff and strategies),
every private stream live and logged in; the simulator's private_drop fault on OKX shows it not live in the
status and `perpbot_private_stream_connected{exchange="okx"} 0` on /metrics, then live again after the
reconnect, while the other venues' streams and OKX's public feed stay up. Everything over loopback HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import Any

import aiohttp

from perpbot.app import App
from perpbot.settings import Settings

from testkit import free_port, wait_started, wait_until

VENUES = ("okx", "hyperliquid", "binance", "bybit")
PRIVATE_FIELDS = {"live", "connected", "logged_in", "connected_since", "last_message_age_s", "reconnects",
                  "messages", "login_failures", "key_renewals", "parse_errors", "last_error"}
PUBLIC_FIELDS = {"connected", "connected_since", "last_message_age_s", "reconnects", "resyncs", "latency_ms",
                 "ping_rtt_ms", "books", "connections"}
POLL_S = 0.02  # the watcher's polling step (a bounded poll of state owned by the bot, as testkit.wait_until)


def default_sim_settings(tmp_path) -> Settings:
    """The embedded defaults (mode sim, every venue, default symbols, feeds, risk and strategies), with
    only what a test must own changed: free loopback ports, temp log and journal paths."""
    return Settings(
        mode="sim", log_dir=str(tmp_path / "logs"), journal={"path": str(tmp_path / "journal.sqlite")},
        http={"host": "127.0.0.1", "port": 0},
        sim={"enabled": True, "ports": {venue: free_port() for venue in VENUES}, "admin_port": free_port()},
    )


def gauge(metrics_text: str, name: str, venue: str) -> float | None:
    found = re.search(rf'^{name}{{exchange="{venue}"}} (\S+)$', metrics_text, re.MULTILINE)
    return float(found.group(1)) if found else None


class Watch:
    """Polls /metrics (and, once `with_status` is set, /api/websocket/status) in the background and keeps
    the latest answers and every private-stream state seen, so short windows are not missed."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base
        self.with_status = False
        self.status: dict[str, Any] = {}
        self.metrics = ""
        self.polls = 0
        self.seen_live: dict[str, set[bool]] = {v: set() for v in VENUES}  # status private.live values
        self.seen_gauge: dict[str, set[float]] = {v: set() for v in VENUES}  # connected gauge values
        self.seen_public_down: set[str] = set()
        self.task: asyncio.Task | None = None

    def reset(self) -> None:
        for venue in VENUES:
            self.seen_live[venue].clear()
            self.seen_gauge[venue].clear()
        self.seen_public_down.clear()

    async def run(self) -> None:
        while True:
            async with self.http.get(f"{self.base}/metrics") as resp:
                assert resp.status == 200
                self.metrics = await resp.text()
            for venue in VENUES:
                value = gauge(self.metrics, "perpbot_private_stream_connected", venue)
                if value is not None:
                    self.seen_gauge[venue].add(value)
            if self.with_status:
                async with self.http.get(f"{self.base}/api/websocket/status") as resp:
                    assert resp.status == 200
                    self.status = await resp.json()
                for venue, item in self.status.items():
                    if item.get("private") is not None:
                        self.seen_live[venue].add(item["private"]["live"])
                    if not item.get("connected"):
                        self.seen_public_down.add(venue)
            self.polls += 1
            await asyncio.sleep(POLL_S)

    async def until(self, predicate: Any, timeout: float) -> None:
        """testkit.wait_until on the watcher's observations; what ended the watcher (a failed request)
        is raised at once instead of a bare timeout."""
        def ready() -> bool:
            if self.task is not None and self.task.done():
                self.task.result()
                raise AssertionError("the watcher stopped")
            return bool(predicate())
        await wait_until(ready, timeout=timeout)

    def private(self, venue: str) -> dict[str, Any] | None:
        item = self.status.get(venue)
        return None if item is None else item.get("private")

    def all_live(self) -> bool:
        return all((p := self.private(v)) is not None and p["live"] and p["logged_in"] for v in VENUES)


async def test_websocket_status_and_metrics_show_a_private_stream_drop_and_its_reconnect(tmp_path):
    settings = default_sim_settings(tmp_path)
    assert settings.execution.private_streams and set(v for v, _ in settings.venues.enabled()) == set(VENUES)
    app = App(settings)
    task = asyncio.get_running_loop().create_task(app.run())
    await wait_started(app, task)
    http = aiohttp.ClientSession()
    watch = Watch(http, f"http://127.0.0.1:{app.control.port}")
    try:
        admin = f"http://{settings.sim.host}:{app.simulator.admin_port}"
        watch.task = asyncio.get_running_loop().create_task(watch.run())

        # 1. The gauges reach /metrics without anyone calling the status API (periodic refresh).
        await watch.until(lambda: all(gauge(watch.metrics, "perpbot_private_stream_connected", v) == 1.0
                                      for v in VENUES), timeout=60)
        await watch.until(lambda: all(
            gauge(watch.metrics, "perpbot_private_stream_last_message_age_seconds", v) is not None
            for v in VENUES), timeout=10)
        assert watch.status == {}  # not called yet

        # 2. The status API: every venue's private stream live and logged in; public fields as before.
        watch.with_status = True
        await watch.until(watch.all_live, timeout=30)
        for venue in VENUES:
            item = watch.status[venue]
            assert PUBLIC_FIELDS <= set(item), item
            assert item["connected"] is True
            private = item["private"]
            assert set(private) == PRIVATE_FIELDS, private
            assert private["live"] is True and private["logged_in"] is True and private["connected"] is True
            assert private["connected_since"] is not None and private["login_failures"] == 0
        # Each venue's order socket beside it (orders over WebSocket by default).
        await watch.until(lambda: all((watch.status[v].get("orders") or {}).get("ready") for v in VENUES), timeout=30)
        for venue in VENUES:
            orders = watch.status[venue]["orders"]
            assert orders["connected"] is True and orders["unknown"] == 0 and orders["login_failures"] == 0, orders
        reconnects_before = watch.private("okx")["reconnects"]

        # 3. private_drop on OKX: its private sockets close at the next push (an account push here).
        watch.reset()
        async with http.post(f"{admin}/admin/faults", json={"kind": "private_drop", "venue": "okx"}) as resp:
            assert resp.status == 201, await resp.text()
        okx = app.simulator.exchanges["okx"]
        symbol = settings.venues.okx.symbols[0]
        held = okx.account.positions.get(symbol)
        okx.set_position(symbol, held.size if held else 0, held.entry if held else 0)  # same position: a push
        await watch.until(lambda: False in watch.seen_live["okx"] and 0.0 in watch.seen_gauge["okx"], timeout=10)

        # 4. ... and live again after the reconnect (backoff, login, subscribe).
        polls = watch.polls
        await watch.until(lambda: watch.polls > polls and watch.all_live(), timeout=30)
        okx_private = watch.private("okx")
        assert okx_private["reconnects"] >= reconnects_before + 1, okx_private
        assert okx_private["logged_in"] is True and okx_private["login_failures"] == 0
        await watch.until(lambda: gauge(watch.metrics, "perpbot_private_stream_connected", "okx") == 1.0,
                          timeout=10)
        async with http.get(f"{admin}/admin/stats") as resp:
            assert (await resp.json())["faults_fired"]["okx"]["private_drop"] == 1
        # Only OKX's private stream went down: the others and every public feed stayed up.
        for venue in VENUES[1:]:
            assert watch.seen_live[venue] == {True}, (venue, watch.seen_live[venue])
            assert watch.seen_gauge[venue] == {1.0}, (venue, watch.seen_gauge[venue])
        assert watch.seen_public_down == set()
        assert 'perpbot_private_stream_reconnects_total{exchange="okx"' in watch.metrics
    finally:
        if watch.task is not None:
            watch.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # its own failure was raised above
                await watch.task
        await http.close()
        app.request_stop()
        assert await asyncio.wait_for(task, 30) == 0
