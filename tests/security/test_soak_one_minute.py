"""The soak runner for one minute with faults: every fault kind fires, the loop stays responsive,
RSS does not run away, and the report carries every figure."""

from __future__ import annotations

import tracemalloc

from perpbot.reliability import soak as soak_module
from perpbot.reliability.soak import HeapTracer, format_report, slope_per_minute, soak


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


def _samples(rss, heap=None):
    out = []
    for n, r in enumerate(rss):
        sample = {"t_s": 60.0 * n, "rss_mb": r, "lag_p99_ms": 0.0, "reconnects": 0, "resyncs": 0, "trades": 0,
                  "books_valid": 8}
        if heap is not None:
            sample["traced_mb"] = heap[n]
        out.append(sample)
    return out


def _judged(rss, heap=None):
    report = {"samples": _samples(rss, heap)}
    return soak_module._judge(report, soak_module.MAX_RSS_SLOPE_MB_PER_MIN, soak_module.MAX_HEAP_GROWTH_MB)


def test_flat_means_at_most_72_mb_a_day_after_warm_up_and_a_stable_traced_heap():
    # Warm-up growth (the first 20% of the samples) does not count; 0.04 MB/min after it is flat.
    assert _judged([100.0, 120.0] + [130.0 + 0.04 * n for n in range(8)])["rss_flat"]
    # The old threshold's 0.44 MB/min (the last 30-minute run before the fixes) is not flat any more.
    judged = _judged([100.0, 120.0] + [130.0 + 0.44 * n for n in range(8)])
    assert not judged["rss_flat"] and judged["rss_slope_mb_per_min"] == 0.44
    # RSS flat but the traced heap still growing by 2 MB over the second half: not flat.
    heap = [50.0] * 5 + [50.0, 50.5, 51.0, 51.5, 52.0]
    judged = _judged([130.0] * 10, heap)
    assert judged["heap_second_half_growth_mb"] == 2.0 and not judged["rss_flat"]
    assert _judged([130.0] * 10, [50.0] * 5 + [50.0, 50.2, 50.1, 50.3, 50.2])["rss_flat"]


def test_heap_tracer_names_the_line_that_grew_after_warm_up():
    kept = []
    tracer = HeapTracer(warm_index=0)
    tracer.start()
    try:
        tracer.sample(0, 0.0, final=False)
        kept.extend(bytearray(1000) for _ in range(300))  # the growth: ~300 KB, 300 objects, this line
        heap_mb = tracer.sample(1, 10.0, final=True)
    finally:
        tracer.stop()
    assert not tracemalloc.is_tracing()
    assert heap_mb > 0.29
    top = tracer.top_growth()
    assert top[0]["site"].endswith("test_soak_one_minute.py:" + str(_line_of("kept.extend(bytearray")))
    assert top[0]["count_delta"] >= 300 and top[0]["size_delta_kb"] >= 290
    assert [tracer.warm_t_s, tracer.last_t_s] == [0.0, 10.0]


def _line_of(text):
    with open(__file__) as source:
        return next(n for n, line in enumerate(source, 1) if text in line and "_line_of" not in line)


def test_heap_figures_are_taken_before_the_snapshots_they_trigger():
    # Many small traced blocks make a snapshot of them large (its traces are traced memory too).
    kept = [bytearray(8) for _ in range(100_000)]
    tracer = HeapTracer(warm_index=0)
    tracer.start()
    try:
        kept += [bytearray(8) for _ in range(100_000)]
        at_warm = tracer.sample(0, 0.0, final=False)  # measured, then the warm snapshot taken (and held)
        middle = tracer.sample(1, 5.0, final=False)
        at_end = tracer.sample(2, 10.0, final=True)  # measured before the final snapshot
    finally:
        tracer.stop()
    assert middle - at_warm > 0.5  # the held warm snapshot: large, and after the warm-up figure
    assert abs(at_end - middle) < 0.1  # nothing grew; the final snapshot is not counted
    assert len(kept) == 200_000


def test_the_lag_buffer_reads_like_the_values_written_and_outgrows_its_plan():
    from perpbot.reliability.soak import _LagBuffer, percentile

    buffer = _LagBuffer(3)
    for value in (0.004, 0.001, 0.003, 0.002, 0.005):  # two beyond the planned three
        buffer.append(value)
    assert len(buffer) == 5 and list(buffer) == [0.004, 0.001, 0.003, 0.002, 0.005]
    assert list(buffer[-2:]) == [0.002, 0.005] and list(buffer[-100:]) == list(buffer)
    assert max(buffer) == 0.005 and percentile(buffer, 50) == 0.003
    assert len(_LagBuffer(10)) == 0 and list(_LagBuffer(10)[-5:]) == []
