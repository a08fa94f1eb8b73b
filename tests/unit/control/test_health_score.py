"""Health score rule (pure) and the monitor over real books, a real Redis and the loop-lag sampler."""

from __future__ import annotations

import asyncio
import time

from perpbot.book.store import BookStore
from perpbot.telemetry.health import WEIGHTS, HealthMonitor, lag_component, score
from perpbot.telemetry.looplag import LoopLagMonitor
from perpbot.telemetry.metrics import Metrics

from testkit import free_port


def test_weights_sum_to_one_hundred_and_all_fine_scores_100():
    assert sum(WEIGHTS.values()) == 100
    assert score({name: 1.0 for name in WEIGHTS}) == 100.0


def test_no_feed_connected_caps_health_below_the_alert_threshold():
    assert score({"feeds": 0.0, "books": 1.0}) == 40.0
    assert score({"feeds": 0.5, "books": 0.5}) == 100 - 15 - 12.5


def test_configured_redis_down_caps_at_80_but_unconfigured_redis_is_fine():
    assert score({"redis": 0.0}, redis_configured=True) == 80.0
    assert score({}, redis_configured=False) == 100.0


def test_loop_lag_component_is_linear_between_50_and_500_ms():
    assert lag_component(0.01) == 1.0
    assert lag_component(0.5) == 0.0
    assert abs(lag_component(0.275) - 0.5) < 1e-9


async def test_monitor_exports_score_and_components_with_a_real_redis(redis_server):
    metrics = Metrics()
    store = BookStore()
    book = store.add("okx", "BTC-USDT-SWAP")
    book.replace([["100", "1"]], [["101", "1"]])
    book.valid, book.recv_ts = True, time.time()
    store.add("okx", "ETH-USDT-SWAP")  # never synced
    lag = LoopLagMonitor(metrics, interval_s=0.01)
    lag.record(0.002)
    monitor = HealthMonitor(metrics, store=store, loop_lag=lag, redis_url=redis_server)
    result = await monitor.evaluate()
    await monitor.close()
    assert result["components"]["redis"] == 1.0
    assert result["components"]["books"] == 0.5
    assert result["score"] == 100 - 12.5
    assert metrics.registry.get_sample_value("perpbot_system_health") == 87.5
    assert metrics.registry.get_sample_value("perpbot_component_health", {"component": "books"}) == 0.5


async def test_monitor_reports_an_unreachable_redis_as_down():
    metrics = Metrics()
    monitor = HealthMonitor(metrics, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    result = await monitor.evaluate()
    await monitor.close()
    assert result["components"]["redis"] == 0.0
    assert result["score"] == 80.0
    assert "redis not reachable" in result["reasons"]


async def test_loop_lag_sampler_sees_a_blocked_loop():
    metrics = Metrics()
    lag = LoopLagMonitor(metrics, interval_s=0.01)
    task = asyncio.get_running_loop().create_task(lag.run())
    while lag.samples < 1:
        await asyncio.sleep(0.005)
    time.sleep(0.1)  # deliberately block the event loop: the lag under test
    target = lag.samples + 1
    while lag.samples < target:
        await asyncio.sleep(0.005)
    task.cancel()
    assert lag.take_max() >= 0.08
    assert metrics.registry.get_sample_value("perpbot_event_loop_lag_seconds_count") >= 2
