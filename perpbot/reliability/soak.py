"""Soak run: the whole bot on the simulator for N minutes, with periodic faults; reports RSS drift,
event-loop lag, reconnects, resyncs and trades.

    python -m perpbot.reliability.soak --minutes 30 --faults [--json report.json]

RSS is sampled from /proc/self/statm; "flat" means the least-squares slope of RSS after the
warm-up (the first 20% of the run, at least one sample) stays under --max-slope-mb-per-min.
Event-loop lag is measured by a probe that asks for a 50 ms sleep and records the overshoot.
Exit code 0 when RSS stayed flat and the bot ended with every book valid, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, in value per minute (0 with < 2 points)."""
    n = len(points)
    if n < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var * 60.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(q / 100.0 * (len(ordered) - 1)))))
    return ordered[index]


def _counter_sum(metric: Any) -> float:
    total = 0.0
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                total += sample.value
    return total


async def _lag_probe(lags: list[float], stop: asyncio.Event) -> None:
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
    max_slope_mb_per_min: float = 0.5,
    operator: bool = True,
) -> dict[str, Any]:
    """Run the bot for `minutes` and return the report (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="perpbot-soak-") as tmp:
        bot = LiveBot(workdir or Path(tmp), seed)
        async with bot:
            metrics = bot.app.metrics
            stop = asyncio.Event()
            lags: list[float] = []
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
                samples.append({
                    "t_s": round(now - start, 1),
                    "rss_mb": round(rss_bytes() / 2**20, 2),
                    "lag_p99_ms": round(percentile(window, 99) * 1000, 2),
                    "reconnects": _counter_sum(metrics.websocket_reconnects_total),
                    "resyncs": _counter_sum(metrics.book_resyncs_total),
                    "trades": _counter_sum(metrics.trades_total),
                    "books_valid": sum(b.valid for b in bot.books()),
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
    warm = max(1, len(samples) // 5)
    steady = [(s["t_s"], s["rss_mb"]) for s in samples[warm:]]
    slope = slope_per_minute(steady)
    last = samples[-1]
    report = {
        "minutes": minutes,
        "faults": faults,
        "faults_injected": len(injected),
        "faults_fired": {f"{v}:{k}": n for (v, k), n in sorted(fired.items())},
        "rss_start_mb": samples[0]["rss_mb"],
        "rss_end_mb": last["rss_mb"],
        "rss_max_mb": max(s["rss_mb"] for s in samples),
        "rss_slope_mb_per_min": round(slope, 4),
        "rss_flat": slope < max_slope_mb_per_min,
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
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [f"{'t_s':>8} {'rss_mb':>8} {'lag_p99_ms':>10} {'reconn':>7} {'resync':>7} {'trades':>7} {'valid':>6}"]
    for s in report["samples"]:
        lines.append(f"{s['t_s']:>8} {s['rss_mb']:>8} {s['lag_p99_ms']:>10} {s['reconnects']:>7.0f} "
                     f"{s['resyncs']:>7.0f} {s['trades']:>7.0f} {s['books_valid']:>6}")
    summary = {k: v for k, v in report.items() if k != "samples"}
    lines.append(json.dumps(summary, indent=2, default=str))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perpbot.reliability.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--faults", action="store_true", help="inject market and trading faults in rotation")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sample-s", type=float, default=10.0, help="seconds between RSS/lag samples")
    parser.add_argument("--fault-every-s", type=float, default=10.0)
    parser.add_argument("--max-slope-mb-per-min", type=float, default=0.5)
    parser.add_argument("--json", type=Path, help="also write the full report here")
    parser.add_argument("--no-operator", action="store_true",
                        help="leave a HALTed bot halted (default: close-all + resume like the runbook's operator)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    report = asyncio.run(soak(args.minutes, args.faults, seed=args.seed, sample_s=args.sample_s,
                              fault_every_s=args.fault_every_s, max_slope_mb_per_min=args.max_slope_mb_per_min,
                              operator=not args.no_operator))
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0 if report["rss_flat"] and report["books_recovered"] else 1


if __name__ == "__main__":
    sys.exit(main())
