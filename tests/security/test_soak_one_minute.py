"""The soak runner for one minute with faults: every fault kind fires, the loop stays responsive,
RSS does not run away, and the report carries every figure."""

from __future__ import annotations

from perpbot.reliability.soak import format_report, slope_per_minute, soak


def test_rss_slope_is_the_least_squares_slope_per_minute():
    assert slope_per_minute([(0.0, 100.0), (60.0, 101.0), (120.0, 102.0)]) == 1.0
    assert slope_per_minute([(0.0, 5.0), (30.0, 5.0)]) == 0.0
    assert slope_per_minute([(0.0, 5.0)]) == 0.0


async def test_one_minute_soak_with_faults_reports_rss_lag_reconnects_resyncs_and_trades(tmp_path):
    report = await soak(1.0, True, seed=5, workdir=tmp_path, sample_s=10.0, fault_every_s=2.0)
    print(format_report(report))
    assert len(report["samples"]) >= 6
    assert report["faults_injected"] >= 20
    fired = report["faults_fired"]
    assert any(k.endswith(":drop") for k in fired) and any(k.endswith(":gap") for k in fired)
    assert report["reconnects"] >= 1  # drop faults close connections: the bot reconnected
    assert report["resyncs"] >= 1  # gap faults break sequences: the bot resynced
    assert report["loop_lag_p99_ms"] < 250.0
    assert report["rss_max_mb"] - report["rss_start_mb"] < 150.0
    assert report["books_recovered"], report["books_still_invalid"]
