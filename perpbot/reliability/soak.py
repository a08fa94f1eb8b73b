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
import gc
import itertools
import json
import logging
import math
import os
import sys
import tempfile
import time
import tracemalloc
from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from perpbot.book.l2 import set_cache_bounds
from perpbot.telemetry.memory import malloc_figures
from perpbot.reliability.live import LiveBot, wait_for

log = logging.getLogger("perpbot.soak")

PROBE_INTERVAL_S = 0.05
_PAGE = os.sysconf("SC_PAGE_SIZE")

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

# The "flat" rule (see the module docstring for why these numbers).
MAX_RSS_SLOPE_MB_PER_MIN = 0.05
MAX_HEAP_GROWTH_MB = 1.0
# Count bound the soak gives the bounded histories (simulator orders/fills per venue, portfolio
# fills/funding) so that they fill up during the warm-up (see LiveBot.bound_histories). A traced
# 12-minute run at 200 showed the simulator's histories still filling after the warm-up (~600 orders
# in 12 minutes over 4 venues: a bound of 200 a venue is reached only after ~15 minutes), which read
# as 1.2 MB of heap growth; at 50 they are full within the first ~3 minutes of trading.
SOAK_HISTORY_BOUND = 50
# SQLite's page cache for the journal during a soak (KiB; its default, 2 MiB, fills as the journal
# grows, which a 30-minute run reads as ~0.05 MB/min of malloc in-use growth).
SOAK_JOURNAL_CACHE_KIB = 256


class HeapTracer:
    """tracemalloc at the soak's sample points: the traced Python heap at every sample, and two
    snapshots (the first sample after warm-up and the last) whose difference names the allocation
    sites (file:line) that grew. gc.collect() runs first so that cyclic garbage not yet collected
    does not count as growth. Tracing slows allocation down (lag figures of a traced run are not
    comparable with an untraced one) and its own bookkeeping shows in RSS, not in the traced heap."""

    def __init__(self, warm_index: int, frames: int = 1) -> None:
        self.warm_index = warm_index
        self.frames = frames
        self.warm: tracemalloc.Snapshot | None = None
        self.warm_t_s = 0.0
        self.last: tracemalloc.Snapshot | None = None
        self.last_t_s = 0.0

    def start(self) -> None:
        tracemalloc.start(self.frames)

    def stop(self) -> None:
        tracemalloc.stop()

    @staticmethod
    def _snapshot() -> tracemalloc.Snapshot:
        return tracemalloc.take_snapshot().filter_traces((
            tracemalloc.Filter(False, tracemalloc.__file__),
            tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
            tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
            tracemalloc.Filter(False, "<unknown>"),
        ))

    def sample(self, index: int, t_s: float, final: bool) -> float:
        """Traced heap in MB now, measured before this sample's snapshot (at the warm-up index and at
        the final sample): a snapshot is itself traced memory (~3 MB of traces), which would otherwise
        read as growth at the last sample."""
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] / 2**20
        if index == self.warm_index or (final and self.warm is None):
            self.warm, self.warm_t_s = self._snapshot(), t_s
        elif final:
            self.last, self.last_t_s = self._snapshot(), t_s
        return traced

    def top_growth(self, limit: int = 25) -> list[dict[str, Any]]:
        """The sites whose live allocations grew most between the two snapshots, biggest first."""
        if self.warm is None or self.last is None:
            return []
        diffs = [d for d in self.last.compare_to(self.warm, "lineno") if d.size_diff > 0]
        diffs.sort(key=lambda d: d.size_diff, reverse=True)
        out = []
        for diff in diffs[:limit]:
            frame = diff.traceback[0]
            out.append({"site": f"{_short_path(frame.filename)}:{frame.lineno}",
                        "size_delta_kb": round(diff.size_diff / 1024, 1), "count_delta": diff.count_diff,
                        "size_kb": round(diff.size / 1024, 1), "count": diff.count})
        return out


def _short_path(filename: str) -> str:
    """Site paths relative to the repo or to site-packages / the stdlib, for a readable report."""
    for marker in ("/site-packages/", "/perpbot/", "/lib/python3"):
        at = filename.rfind(marker)
        if at >= 0:
            return filename[at + 1:]
    return filename


class _LagBuffer:
    """The loop-lag probes of a run in a preallocated array: append, len, slices and iteration over
    the values written so far (what percentile and the sample window read)."""

    def __init__(self, capacity: int) -> None:
        self._values = array("d", bytes(8 * capacity))
        self._n = 0

    def append(self, value: float) -> None:
        if self._n < len(self._values):
            self._values[self._n] = value
            self._n += 1
        else:  # beyond the planned length (a late stop): grow as a plain array would
            self._values.append(value)
            self._n += 1

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[float]:
        return iter(self._values[: self._n])

    def __getitem__(self, index: slice) -> array:
        start, stop, step = index.indices(self._n)  # slices of what was written (the sample window)
        return self._values[start:stop:step]


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE


def thread_count() -> int:
    """OS threads of this process (aiosqlite's connection thread, the default executor's resolver
    threads...): each may own a glibc malloc arena, which shows in RSS and not in the traced heap."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, in value per minute (0 with < 2 points)."""
    if len(points) < 2:
        return 0.0
    series = np.asarray(points, dtype=np.float64)
    t = series[:, 0] - series[:, 0].mean()
    var = float(np.dot(t, t))
    if var == 0:
        return 0.0
    return float(np.dot(t, series[:, 1] - series[:, 1].mean())) / var * 60.0


def percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank percentile (the sample itself, never an interpolation between two)."""
    data = np.fromiter(values, dtype=np.float64)
    if data.size == 0:
        return 0.0
    return float(np.percentile(data, q, method="nearest"))


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


def _warm_count(n_samples: int) -> int:
    """Samples that belong to the warm-up: the first 20% of the run, at least one."""
    return max(1, n_samples // 5)


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


def _judge(report: dict[str, Any], max_slope_mb_per_min: float, max_heap_growth_mb: float) -> dict[str, Any]:
    """Adds the RSS slope after warm-up, the traced heap's growth over the second half (when traced)
    and the verdict `rss_flat` (see the module docstring for the rule and its thresholds)."""
    samples = report["samples"]
    steady = samples[_warm_count(len(samples)):]
    slope = slope_per_minute([(s["t_s"], s["rss_mb"]) for s in steady])
    report["rss_slope_mb_per_min"] = round(slope, 4)
    report["rss_slope_limit_mb_per_min"] = max_slope_mb_per_min
    flat = slope <= max_slope_mb_per_min
    if "traced_mb" in samples[0]:
        half = samples[len(samples) // 2:]
        growth = half[-1]["traced_mb"] - half[0]["traced_mb"]
        report["heap_start_mb"] = samples[0]["traced_mb"]
        report["heap_end_mb"] = samples[-1]["traced_mb"]
        report["heap_max_mb"] = max(s["traced_mb"] for s in samples)
        report["heap_second_half_growth_mb"] = round(growth, 3)
        report["heap_second_half_slope_mb_per_min"] = round(
            slope_per_minute([(s["t_s"], s["traced_mb"]) for s in half]), 4)
        report["heap_growth_limit_mb"] = max_heap_growth_mb
        flat = flat and growth <= max_heap_growth_mb
    report["rss_flat"] = flat
    return report


def format_report(report: dict[str, Any]) -> str:
    traced = bool(report["samples"]) and "traced_mb" in report["samples"][0]
    heap_col = f" {'heap_mb':>8}" if traced else ""
    lines = [f"{'t_s':>8} {'rss_mb':>8}{heap_col} {'lag_p99_ms':>10} {'reconn':>7} {'resync':>7} {'trades':>7} "
             f"{'valid':>6} {'tasks':>6}"]
    for s in report["samples"]:
        heap = f" {s['traced_mb']:>8}" if traced else ""
        lines.append(f"{s['t_s']:>8} {s['rss_mb']:>8}{heap} {s['lag_p99_ms']:>10} {s['reconnects']:>7.0f} "
                     f"{s['resyncs']:>7.0f} {s['trades']:>7.0f} {s['books_valid']:>6} {s.get('tasks', ''):>6}")
    growth = report.get("heap_top_growth")
    if growth:
        t0, t1 = report["heap_snapshots_t_s"]
        lines.append(f"traced heap: top allocation sites that grew between t={t0}s and t={t1}s")
        lines.append(f"{'size_delta_kb':>14} {'count_delta':>12} {'size_kb':>10}  site")
        for g in growth:
            lines.append(f"{g['size_delta_kb']:>14} {g['count_delta']:>12} {g['size_kb']:>10}  {g['site']}")
    summary = {k: v for k, v in report.items() if k not in ("samples", "heap_top_growth")}
    lines.append(json.dumps(summary, indent=2, default=str))
    return "\n".join(lines)


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
