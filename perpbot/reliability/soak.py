"""Soak run: the whole bot on the simulator for N minutes, with periodic faults; reports RSS drift,
event-loop lag, reconnects, resyncs and trades, and (with --tracemalloc) the traced Python heap.

    python -m perpbot.reliability.soak --minutes 30 --faults [--tracemalloc] [--json report.json]

RSS is sampled from /proc/self/statm every --sample-s seconds; event-loop lag by a probe that asks
for a 50 ms sleep and records the overshoot. With --tracemalloc the traced heap is sampled too
(after a gc.collect()), and two snapshots, at the end of the warm-up and at the end, name the
allocation sites (file:line) that grew, with their size and count deltas.

"Flat" (the verdict `rss_flat`), for a service meant to run for weeks:
- the least-squares RSS slope after the warm-up (the first 20% of the samples) is at most
  0.05 MB/min (MAX_RSS_SLOPE_MB_PER_MIN): 72 MB a day is the most a multi-week run could
  afford between restarts, and it is about the resolution a 30-minute run can measure
  (allocator arenas and the kernel's page accounting move RSS by ~1 MB steps); the former
  threshold, 0.5 MB/min, let 720 MB a day pass as flat;
- and, when traced, the traced heap grew by at most 1 MB (MAX_HEAP_GROWTH_MB) over the second
  half of the run. The heap is what the code holds, free of allocator noise: a leak of one
  object per trade (~1 KB x ~650 trades) shows there even when RSS hides it in free arena space.
Bounded structures (the simulator's and the portfolio's histories, bounded by count) would take
hours to fill at their production bounds and would read as growth in a 30-minute run; the soak
lowers them to --history-bound entries (SOAK_HISTORY_BOUND) so they are full after the warm-up
and the run measures the steady state of a weeks-long run (0 keeps the production bounds).
Under --tracemalloc, allocation is slower and each snapshot blocks the loop for seconds: lag
figures of a traced run are not comparable with an untraced one, and RSS includes the tracer's
own bookkeeping (the first snapshot is taken at the last warm-up sample so it stays out of the
slope). Exit code 0 when the run was flat and every book was valid again after the faults.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from perpbot.book.l2 import set_cache_bounds
from perpbot.telemetry.memory import malloc_figures
from perpbot.reliability.live import LiveBot, wait_for
from perpbot.reliability.soak_stats import (
    MAX_HEAP_GROWTH_MB,
    MAX_RSS_SLOPE_MB_PER_MIN,
    HeapTracer,
    _judge,
    _LagBuffer,
    _warm_count,
    format_report,
    percentile,
    rss_bytes,
    slope_per_minute,
    thread_count,
)

# The measurements, statistics and verdict live in perpbot.reliability.soak_stats; re-exported here.
__all__ = ["MAX_HEAP_GROWTH_MB", "MAX_RSS_SLOPE_MB_PER_MIN", "HeapTracer", "_LagBuffer", "_judge", "format_report",
           "main", "percentile", "slope_per_minute", "soak", "thread_count"]

log = logging.getLogger("perpbot.soak")

PROBE_INTERVAL_S = 0.05

# Faults injected in rotation (one every --fault-every-s seconds), each on one venue in turn.
MARKET_FAULTS: tuple[dict[str, Any], ...] = (
    {"kind": "drop", "count": 1},
    {"kind": "gap", "count": 1},
    {"kind": "malformed", "count": 1},
    {"kind": "reorder", "count": 1},
    {"kind": "stall", "duration_s": 4.0},
    {"kind": "delay", "count": 3, "params": {"ms": 200}},
    {"kind": "bad_checksum", "count": 1},
)
TRADING_FAULTS: tuple[dict[str, Any], ...] = (
    {"kind": "rest_5xx", "count": 1},
    {"kind": "timeout", "count": 1},
    {"kind": "rate_limit", "count": 1},
    {"kind": "reject", "count": 1},
    {"kind": "partial_fill", "count": 1},
)
VENUES = ("okx", "hyperliquid", "binance", "bybit")

# Count bound the soak gives the bounded histories (simulator orders/fills per venue, portfolio
# fills/funding) so that they fill up during the warm-up (see LiveBot.bound_histories). A traced
# 12-minute run at 200 showed the simulator's histories still filling after the warm-up (~600 orders
# in 12 minutes over 4 venues: a bound of 200 a venue is reached only after ~15 minutes), which read
# as 1.2 MB of heap growth; at 50 they are full within the first ~3 minutes of trading.
SOAK_HISTORY_BOUND = 50
# SQLite's page cache for the journal during a soak (KiB; its default, 2 MiB, fills as the journal
# grows, which a 30-minute run reads as ~0.05 MB/min of malloc in-use growth).
SOAK_JOURNAL_CACHE_KIB = 256


def _counter_sum(metric: Any) -> float:
    total = 0.0
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                total += sample.value
    return total


async def _lag_probe(lags: _LagBuffer, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        start = loop.time()
        await asyncio.sleep(PROBE_INTERVAL_S)
        lags.append(max(0.0, loop.time() - start - PROBE_INTERVAL_S))


async def _inject_faults(bot: LiveBot, every_s: float, stop: asyncio.Event, injected: list[dict[str, Any]]) -> None:
    plan = itertools.cycle(
        [dict(f, venue=v) for f in MARKET_FAULTS for v in VENUES]
        + [dict(f, venue=v) for f in TRADING_FAULTS for v in VENUES]
    )
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), every_s)
            return
        except TimeoutError:
            pass
        fault = next(plan)
        try:
            await bot.admin.inject(fault)
            injected.append(fault)
        except Exception as exc:  # a refused fault is reported, the soak goes on
            log.warning("fault %s not injected: %s", fault, exc)


async def _operator(bot: LiveBot, every_s: float, stop: asyncio.Event, halts: list[str]) -> None:
    """Keep the soak trading: after a HALT, do what the runbook's operator does (close-all, then
    resume) and note the HALT's reason, so a 30-minute run exercises trading, not a halted bot."""
    from perpbot.reliability.scenarios import operator_recover

    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), every_s)
            return
        except TimeoutError:
            pass
        engine = bot.engine
        if engine is None or engine.state != "HALTED":
            continue
        reason = engine.state_reason
        try:
            halts.append(f"{reason} -> {await operator_recover(bot, 'soak HALT')}")
        except Exception as exc:  # a fault still active: try again on the next round
            halts.append(f"{reason} -> operator recovery failed: {exc}")


async def soak(
    minutes: float,
    faults: bool,
    *,
    seed: int = 1,
    workdir: Path | None = None,
    sample_s: float = 10.0,
    fault_every_s: float = 10.0,
    max_slope_mb_per_min: float = MAX_RSS_SLOPE_MB_PER_MIN,
    max_heap_growth_mb: float = MAX_HEAP_GROWTH_MB,
    operator: bool = True,
    trace: bool = False,
    history_bound: int | None = SOAK_HISTORY_BOUND,
) -> dict[str, Any]:
    """Run the bot for `minutes` and return the report (see the module docstring)."""
    expected_samples = math.ceil(minutes * 60.0 / sample_s) + 1
    # The first snapshot is taken at the last warm-up sample: the memory it holds (tens of MB)
    # then lands inside the warm-up, not in the RSS slope measured after it.
    tracer = HeapTracer(warm_index=_warm_count(expected_samples) - 1) if trace else None
    if tracer is not None:
        tracer.start()
    try:
        report = await _soak(minutes, faults, seed, workdir, sample_s, fault_every_s, operator, tracer,
                             history_bound)
    finally:
        if tracer is not None:
            tracer.stop()
    return _judge(report, max_slope_mb_per_min, max_heap_growth_mb)


async def _soak(minutes: float, faults: bool, seed: int, workdir: Path | None, sample_s: float,
                fault_every_s: float, operator: bool, tracer: HeapTracer | None,
                history_bound: int | None) -> dict[str, Any]:
    cache_bounds = None  # the books' cache bounds before the soak lowered them
    try:
        with tempfile.TemporaryDirectory(prefix="perpbot-soak-") as tmp:
            bot = LiveBot(workdir or Path(tmp), seed)
            async with bot:
                if history_bound:
                    cache_bounds = bot.bound_histories(history_bound)
                    await bot.bound_journal_cache(SOAK_JOURNAL_CACHE_KIB)
                metrics = bot.app.metrics
                stop = asyncio.Event()
                # Seconds, 8 bytes a probe, allocated up front for the whole run (~290 KB for 30 minutes)
                # so that the measurement's own buffer does not grow under the RSS it measures.
                lags = _LagBuffer(int(minutes * 60.0 / PROBE_INTERVAL_S) + 1000)
                injected: list[dict[str, Any]] = []
                tasks = [asyncio.create_task(_lag_probe(lags, stop), name="soak-lag")]
                halts: list[str] = []
                if faults:
                    tasks.append(asyncio.create_task(_inject_faults(bot, fault_every_s, stop, injected), name="soak-faults"))
                if operator:
                    tasks.append(asyncio.create_task(_operator(bot, 15.0, stop, halts), name="soak-operator"))
                start = time.monotonic()
                end = start + minutes * 60.0
                samples: list[dict[str, Any]] = []
                while True:
                    now = time.monotonic()
                    window = lags[-int(sample_s / PROBE_INTERVAL_S) or 1:]
                    t_s = round(now - start, 1)
                    final = now >= end
                    if tracer is not None and len(samples) == tracer.warm_index and not final:
                        # The warm-up snapshot first: the memory it holds for the rest of the run then
                        # shows in this last warm-up sample's RSS, not as a step after the warm-up.
                        traced = {"traced_mb": round(tracer.sample(len(samples), t_s, final=False), 3)}
                        rss_mb = round(rss_bytes() / 2**20, 2)
                    else:
                        rss_mb = round(rss_bytes() / 2**20, 2)  # before the final snapshot, which takes memory
                        traced = {} if tracer is None else {
                            "traced_mb": round(tracer.sample(len(samples), t_s, final=final), 3)}
                    samples.append({
                        "t_s": t_s,
                        **traced,
                        "rss_mb": rss_mb,
                        "lag_p99_ms": round(percentile(window, 99) * 1000, 2),
                        "reconnects": _counter_sum(metrics.websocket_reconnects_total),
                        "resyncs": _counter_sum(metrics.book_resyncs_total),
                        "trades": _counter_sum(metrics.trades_total),
                        "books_valid": sum(b.valid for b in bot.books()),
                        "tasks": len(asyncio.all_tasks()),  # a task leak shows as a rising count
                        "threads": thread_count(),
                        **malloc_figures(),
                    })
                    log.info("soak sample %s", samples[-1])
                    if now >= end:
                        break
                    await asyncio.sleep(min(sample_s, end - now))  # the sampling period itself
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)
                if faults:
                    await bot.admin.clear()
                # Faults are over: every book must come back (resync) within the watchdog horizon.
                recovered = await wait_for(bot.books_valid, 30.0)
                still_invalid = [f"{b.venue}:{b.symbol}:{b.invalid_reason}" for b in bot.books() if not b.valid]
                fired = await bot.admin.fired()
                trading_state = bot.engine.trading_state() if bot.app.engine is not None else None
        last = samples[-1]
        report = {
            "minutes": minutes,
            "faults": faults,
            "history_bound": history_bound or "production",
            "faults_injected": len(injected),
            "faults_fired": {f"{v}:{k}": n for (v, k), n in sorted(fired.items())},
            "rss_start_mb": samples[0]["rss_mb"],
            "rss_end_mb": last["rss_mb"],
            "rss_max_mb": max(s["rss_mb"] for s in samples),
            "loop_lag_p50_ms": round(percentile(lags, 50) * 1000, 2),
            "loop_lag_p99_ms": round(percentile(lags, 99) * 1000, 2),
            "loop_lag_max_ms": round(max(lags, default=0.0) * 1000, 2),
            "reconnects": last["reconnects"],
            "resyncs": last["resyncs"],
            "trades": last["trades"],
            "books_recovered": recovered,
            "books_still_invalid": still_invalid,
            "trading_state": trading_state,
            "halts": halts,
            "samples": samples,
        }
        if tracer is not None:
            report["heap_top_growth"] = tracer.top_growth()
            report["heap_snapshots_t_s"] = [tracer.warm_t_s, tracer.last_t_s]
        return report
    finally:
        if cache_bounds is not None:  # the 1-minute soak test runs inside pytest's process
            set_cache_bounds(*cache_bounds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perpbot.reliability.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--faults", action="store_true", help="inject market and trading faults in rotation")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sample-s", type=float, default=10.0, help="seconds between RSS/lag samples")
    parser.add_argument("--fault-every-s", type=float, default=10.0)
    parser.add_argument("--max-slope-mb-per-min", type=float, default=MAX_RSS_SLOPE_MB_PER_MIN,
                        help="RSS slope after warm-up above which the run is not flat")
    parser.add_argument("--max-heap-growth-mb", type=float, default=MAX_HEAP_GROWTH_MB,
                        help="with --tracemalloc: traced-heap growth over the second half above which it is not flat")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="trace the Python heap: its size at every sample and the sites that grew after warm-up")
    parser.add_argument("--history-bound", type=int, default=SOAK_HISTORY_BOUND,
                        help="count bound of the simulator's and portfolio's histories for this run "
                             "(0: the production bounds, which take hours to reach)")
    parser.add_argument("--json", type=Path, help="also write the full report here")
    parser.add_argument("--no-operator", action="store_true",
                        help="leave a HALTed bot halted (default: close-all + resume like the runbook's operator)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    report = asyncio.run(soak(args.minutes, args.faults, seed=args.seed, sample_s=args.sample_s,
                              fault_every_s=args.fault_every_s, max_slope_mb_per_min=args.max_slope_mb_per_min,
                              max_heap_growth_mb=args.max_heap_growth_mb, operator=not args.no_operator,
                              trace=args.tracemalloc, history_bound=args.history_bound))
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0 if report["rss_flat"] and report["books_recovered"] else 1


if __name__ == "__main__":
    sys.exit(main())
