"""Feed supervisor with the real venue adapters over loopback sockets, replaying recorded venue frames."""

from __future__ import annotations

import asyncio
import json
import logging

import orjson
import pytest
from aiohttp import web

from perpbot.book.l2 import L2Book
from perpbot.book.store import BookStore
from perpbot.book.sync import apply_update
from perpbot.feeds import supervisor as supervisor_module
from perpbot.feeds.supervisor import FeedSupervisor
from perpbot.settings import FeedSettings
from perpbot.telemetry.metrics import Metrics
from perpbot.venues.registry import feed_adapter

from testkit import wait_until

FAST = FeedSettings(backoff_initial_s=0.02, backoff_max_s=0.1, watchdog_s=5, ping_interval_s=5)


def _load(path) -> list[dict]:
    return json.loads(path.read_text())


def _dumps(msg) -> str:
    return orjson.dumps(msg).decode()


class Scripted:
    """A WS handler that records what the client sends and sends whatever the test queues."""

    def __init__(self) -> None:
        self.outbox: asyncio.Queue[str] = asyncio.Queue()
        self.paths: list[str] = []

    async def __call__(self, server, ws) -> None:
        self.paths.append(ws.request.path)

        async def pump() -> None:
            while True:
                await ws.send(await self.outbox.get())

        pumper = asyncio.get_running_loop().create_task(pump())
        try:
            async for frame in ws:
                await server.record(frame)
                if frame == "ping":
                    await ws.send("pong")
        finally:
            pumper.cancel()


async def _start(sup: FeedSupervisor) -> asyncio.Task:
    task = asyncio.get_running_loop().create_task(sup.run())
    await asyncio.wait_for(sup.started.wait(), 5)
    return task


async def _stop(sup: FeedSupervisor, task: asyncio.Task) -> None:
    await sup.stop()
    await asyncio.wait_for(task, 5)


def _resyncs(metrics: Metrics, venue: str, reason: str) -> float:
    return metrics.registry.get_sample_value(
        "perpbot_book_resyncs_total", {"exchange": venue, "reason": reason}) or 0.0


async def test_okx_malformed_frame_never_changes_a_valid_book_and_forces_resync(
    ws_server, shared_fixtures, monkeypatch, caplog
):
    monkeypatch.setattr(supervisor_module, "RESYNC_COOLDOWN_S", 0.0)
    caplog.set_level(logging.WARNING)
    replay = _load(shared_fixtures / "okx" / "books_checksum_replay_BTC-USDT_2022-05-13.json")
    ack, snapshot, *updates = [_dumps(item["msg"]) for item in replay if item["dir"] == "recv"]
    script = Scripted()
    store, metrics = BookStore(), Metrics()
    sup = FeedSupervisor(store, metrics, FAST)
    async with ws_server(script) as server:
        sup.add_venue(feed_adapter("okx", FAST), server.url, "http://127.0.0.1:9", ["BTC-USDT"])
        task = await _start(sup)
        await server.wait_for(lambda: any('"subscribe"' in f for f in server.received))
        book = store.get("okx", "BTC-USDT")
        for frame in (ack, snapshot, *updates[:10]):
            script.outbox.put_nowait(frame)
        await wait_until(lambda: book.updates == 11)
        assert book.valid, book.invalid_reason
        before = (dict(book.bids), dict(book.asks))
        assert metrics.registry.get_sample_value("perpbot_websocket_connected", {"exchange": "okx"}) == 1

        script.outbox.put_nowait('{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[["oops')
        await server.wait_for(lambda: any('"unsubscribe"' in f for f in server.received))
        assert (dict(book.bids), dict(book.asks)) == before  # the garbage touched nothing
        assert not book.valid and book.invalid_reason == "parse_error"
        assert _resyncs(metrics, "okx", "parse_error") == 1
        assert metrics.registry.get_sample_value("perpbot_parse_errors_total", {"exchange": "okx"}) == 1
        resync = [json.loads(f) for f in server.received if f.startswith("{")][-2:]
        assert [r["op"] for r in resync] == ["unsubscribe", "subscribe"]
        assert resync[1]["args"] == [{"channel": "books", "instId": "BTC-USDT"}]

        # Deltas before the fresh snapshot are ignored; the snapshot makes the book valid again.
        script.outbox.put_nowait(updates[10])
        script.outbox.put_nowait(snapshot)
        await wait_until(lambda: book.valid)
        assert sup.status()["okx"]["resyncs"] == 1

        # A delta whose checksum does not match: invalid at once, counted, resubscribed.
        tampered = json.loads(updates[0])
        tampered["data"][0]["checksum"] = tampered["data"][0]["checksum"] + 1
        sent_before = len(server.received)
        script.outbox.put_nowait(_dumps(tampered))
        await server.wait_for(lambda: any('"unsubscribe"' in f for f in server.received[sent_before:]))
        assert not book.valid and book.invalid_reason == "checksum"
        assert _resyncs(metrics, "okx", "checksum") == 1
        assert any("Book resync" in r.getMessage() and "checksum" in r.getMessage() for r in caplog.records)
        await _stop(sup, task)
    assert metrics.registry.get_sample_value("perpbot_websocket_connected", {"exchange": "okx"}) == 0


async def test_okx_reconnect_invalidates_books_until_the_resubscribed_snapshot(ws_server, shared_fixtures):
    replay = _load(shared_fixtures / "okx" / "books_checksum_replay_BTC-USDT_2022-05-13.json")
    ack, snapshot, *updates = [_dumps(item["msg"]) for item in replay if item["dir"] == "recv"]
    script = Scripted()
    store, metrics = BookStore(), Metrics()
    sup = FeedSupervisor(store, metrics, FAST)
    async with ws_server(script) as server:
        (conn,) = sup.add_venue(feed_adapter("okx", FAST), server.url, "http://127.0.0.1:9", ["BTC-USDT"])
        task = await _start(sup)
        await server.wait_for(lambda: len(server.received) >= 1)
        script.outbox.put_nowait(snapshot)
        book = store.get("okx", "BTC-USDT")
        await wait_until(lambda: book.valid)
        await conn.set_url(server.url)  # forces a reconnect to the same endpoint
        await server.wait_for(lambda: server.connections == 2 and len(server.received) >= 2)
        assert not book.valid
        assert server.received[0] == server.received[1]  # the same subscription, re-sent
        script.outbox.put_nowait(snapshot)
        await wait_until(lambda: book.valid)
        assert sup.status()["okx"]["reconnects"] == 1
        await _stop(sup, task)


@pytest.fixture
async def depth_server():
    """A loopback REST server for Binance depth snapshots, held until the test releases it."""
    state = {"body": b"{}", "requests": [], "release": asyncio.Event()}

    async def depth(request: web.Request) -> web.Response:
        state["requests"].append(request.path_qs)
        await state["release"].wait()
        return web.Response(body=state["body"], content_type="application/json")

    app = web.Application()
    app.router.add_get("/fapi/v1/depth", depth)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state["url"] = f"http://127.0.0.1:{port}"
    yield state
    await runner.cleanup()


async def test_binance_deltas_are_buffered_while_the_rest_snapshot_is_in_flight_then_replayed(
    ws_server, shared_fixtures, depth_server
):
    scenario = _load(shared_fixtures / "binance" / "depth_sync_scenario_SUSHIUSDT_2021-07-22.json")
    rest = next(item for item in scenario if item["dir"] == "rest")
    deltas = [item["msg"] for item in scenario if item["dir"] == "recv"]
    depth_server["body"] = orjson.dumps(rest["msg"])

    # The book a correct sync must produce: snapshot, then every delta through the venue rules.
    adapter = feed_adapter("binance", FAST)
    reference = L2Book("binance", "SUSHIUSDT")
    reference.awaiting_first_delta = True
    assert apply_update(reference, adapter.parse_snapshot(orjson.dumps(rest["msg"]), "SUSHIUSDT", 0.0),
                        adapter.rules) is None
    for msg in deltas:
        for event in adapter.parse(_dumps(msg), 0.0):
            assert apply_update(reference, event, adapter.rules) is None
    assert reference.valid

    script = Scripted()
    store, metrics = BookStore(), Metrics()
    sup = FeedSupervisor(store, metrics, FAST)
    async with ws_server(script) as server:
        sup.add_venue(adapter, server.url.removesuffix("/ws"), depth_server["url"], ["SUSHIUSDT"])
        task = await _start(sup)
        await wait_until(lambda: len(depth_server["requests"]) == 1)  # snapshot requested on connect
        assert depth_server["requests"][0] == "/fapi/v1/depth?symbol=SUSHIUSDT&limit=1000"
        assert any(p.startswith("/public/stream?streams=sushiusdt@depth") for p in script.paths)
        book = store.get("binance", "SUSHIUSDT")
        half = len(deltas) // 2
        for msg in deltas[:half]:
            script.outbox.put_nowait(_dumps(msg))
        feed = sup.venues["binance"]
        await wait_until(lambda: len(feed.buffers.get("SUSHIUSDT", ())) == half)
        assert not book.valid and book.updates == 0  # nothing applied while the snapshot is out
        depth_server["release"].set()
        await wait_until(lambda: "SUSHIUSDT" not in feed.buffers)
        for msg in deltas[half:]:
            script.outbox.put_nowait(_dumps(msg))
        await wait_until(lambda: book.seq == reference.seq)
        assert book.valid, book.invalid_reason
        assert book.bids == reference.bids and book.asks == reference.asks
        assert len(depth_server["requests"]) == 1
        assert _resyncs(metrics, "binance", "gap") == 0
        await _stop(sup, task)


async def test_binance_sequence_gap_resyncs_that_symbol_with_a_fresh_rest_snapshot(
    ws_server, shared_fixtures, depth_server, monkeypatch
):
    monkeypatch.setattr(supervisor_module, "RESYNC_COOLDOWN_S", 0.0)
    scenario = _load(shared_fixtures / "binance" / "depth_sync_scenario_SUSHIUSDT_2021-07-22.json")
    rest = next(item for item in scenario if item["dir"] == "rest")
    deltas = [item["msg"] for item in scenario if item["dir"] == "recv"]
    depth_server["body"] = orjson.dumps(rest["msg"])
    depth_server["release"].set()
    script = Scripted()
    store, metrics = BookStore(), Metrics()
    sup = FeedSupervisor(store, metrics, FAST)
    async with ws_server(script) as server:
        sup.add_venue(feed_adapter("binance", FAST), server.url.removesuffix("/ws"), depth_server["url"],
                      ["SUSHIUSDT"])
        task = await _start(sup)
        feed = sup.venues["binance"]
        await wait_until(lambda: len(depth_server["requests"]) == 1 and "SUSHIUSDT" not in feed.buffers)
        book = store.get("binance", "SUSHIUSDT")
        for msg in deltas[:40]:
            script.outbox.put_nowait(_dumps(msg))
        await wait_until(lambda: book.valid)
        script.outbox.put_nowait(_dumps(deltas[41]))  # skip one: pu no longer chains
        await wait_until(lambda: len(depth_server["requests"]) == 2)
        assert _resyncs(metrics, "binance", book.invalid_reason.split(":")[0] if book.invalid_reason else "gap") >= 1
        assert sum(s.value for m in metrics.registry.collect() if m.name == "perpbot_book_resyncs"
                   for s in m.samples if s.name.endswith("_total")) == 1
        assert not book.valid
        await _stop(sup, task)


async def test_okx_updates_take_the_fast_path_and_end_identical_to_parse_and_apply(ws_server, shared_fixtures):
    replay = _load(shared_fixtures / "okx" / "books_checksum_replay_BTC-USDT_2022-05-13.json")
    ack, snapshot, *updates = [_dumps(item["msg"]) for item in replay if item["dir"] == "recv"]
    adapter = feed_adapter("okx", FAST)
    taken = []
    real_fast = adapter.apply_books_frame

    def counting_fast(frame, recv_ts, books):
        done = real_fast(frame, recv_ts, books)
        taken.append(done is not None)
        return done

    adapter.apply_books_frame = counting_fast
    script = Scripted()
    store, metrics = BookStore(), Metrics()
    sup = FeedSupervisor(store, metrics, FAST)
    async with ws_server(script) as server:
        sup.add_venue(adapter, server.url, "http://127.0.0.1:9", ["BTC-USDT"])
        task = await _start(sup)
        await server.wait_for(lambda: any('"subscribe"' in f for f in server.received))
        book = store.get("okx", "BTC-USDT")
        for frame in (ack, snapshot, *updates):
            script.outbox.put_nowait(frame)
        await wait_until(lambda: book.updates == 1 + len(updates))
        assert book.valid, book.invalid_reason
        state = (dict(book.bids), dict(book.asks), list(book.bid_frags), list(book.ask_frags), book.seq, book.exchange_ts_ms)
        assert ("okx", "BTC-USDT") in store.dirty
        await _stop(sup, task)
    # ack and snapshot declined (parse + apply_update ran), every update applied by the fast path.
    assert taken == [False, False] + [True] * len(updates)
    reference = L2Book("okx", "BTC-USDT", keep_raw=True)
    rules = adapter.rules
    for frame in (snapshot, *updates):
        for event in adapter.parse(frame, 0.0):
            assert apply_update(reference, event, rules) is None
    assert state == (reference.bids, reference.asks, reference.bid_frags, reference.ask_frags, reference.seq,
                     reference.exchange_ts_ms)
    # Feed latency is still observed for every book frame (the 2022 timestamps: all of them positive).
    observed = metrics.registry.get_sample_value("perpbot_websocket_latency_seconds_count", {"exchange": "okx"})
    assert observed == 1 + len(updates)
