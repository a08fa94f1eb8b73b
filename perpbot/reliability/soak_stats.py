"""The soak's measurements and verdict (`perpbot.reliability.soak` runs the bot and samples them): RSS from
/proc/self/statm, the process's OS threads, the traced Python heap and its growth between two snapshots
(HeapTracer), the loop-lag buffer, least-squares slope and nearest-rank percentile, the "flat" rule with
its thresholds (explained in soak's module docstring), and the report as a table."""

from __future__ import annotations

import gc
import json
import os
import tracemalloc
from array import array
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

_PAGE = os.sysconf("SC_PAGE_SIZE")

# The "flat" rule (see the module docstring for why these numbers).
MAX_RSS_SLOPE_MB_PER_MIN = 0.05
MAX_HEAP_GROWTH_MB = 1.0


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


def _warm_count(n_samples: int) -> int:
    """Samples that belong to the warm-up: the first 20% of the run, at least one."""
    return max(1, n_samples // 5)


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
