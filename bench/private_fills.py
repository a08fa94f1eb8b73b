"""Private streams in the running bot: fills pushed -> booked, and REST requests per trade.

`python bench/private_fills.py [--seconds 20]` runs the real bot (perpbot.app.App, its ccxt
clients, its journal on SQLite) against the built-in simulator twice in one process: once with
the private streams off (fills learnt over REST, as before issue 14) and once with them on. It
records every HTTP request the bot's ccxt clients send while trades happen (at ccxt's fetch), and
prints, per run: trades, REST requests per trade (all, and beyond the orders themselves), the
order execution time (send -> settled, the engine's own histogram), and with the streams on the
time from a fill frame's arrival on the bot's socket to the fill booked in journal and portfolio
(p50/p90/p99). Loopback only. The ratios row compares the two runs of this one invocation.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from perpbot.app import App  # noqa: E402
from perpbot.reliability.ports import free_port  # noqa: E402
from perpbot.settings import Settings  # noqa: E402

VENUES = {"hyperliquid": "BTC", "binance": "BTCUSDT", "okx": "BTC-USDT-SWAP", "bybit": "BTCUSDT"}
ORDER_PATHS = {("hyperliquid", "POST", "/exchange"), ("binance", "POST", "/fapi/v1/order"),
               ("okx", "POST", "/api/v5/trade/order"), ("okx", "POST", "/api/v5/trade/batch-orders"),
               ("bybit", "POST", "/v5/order/create")}  # ccxt's okx places a single order through batch-orders


def settings(workdir: Path, streams: bool) -> Settings:
    ports = {venue: free_port() for venue in VENUES}
    return Settings(
        mode="sim", log_dir=str(workdir / "logs"), journal={"path": str(workdir / "journal.sqlite")},
        http={"host": "127.0.0.1", "port": 0}, api_token="bench-token", log_level="WARNING",
        venues={venue: {"symbols": [symbol]} for venue, symbol in VENUES.items()},
        sim={"enabled": True, "ports": ports, "admin_port": free_port(), "seed": 11, "tick_interval_s": 0.05,
             "dislocation_rate": 0.6, "dislocation_bps": 80.0},
        feeds={"backoff_initial_s": 0.05, "backoff_max_s": 0.5},
        risk={"min_edge_bps": 1, "max_orders_per_minute": 600, "max_book_age_s": 5.0},
        strategies={"price_spread": {"order_size_usdt": 300, "min_edge_bps": 5, "exit_edge_bps": 2,
                                     "max_hold_s": 0.5},
                    "funding_spread": {"enabled": False}},
        # The periodic reconciliation is a backstop on its own schedule: out of this window.
        execution={"reconcile_interval_s": 3600.0, "order_timeout_s": 5.0, "private_streams": streams},
    )


async def wait_for(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.05)


def record(clients: dict[str, Any]) -> list[tuple[str, str, str]]:
    seen: list[tuple[str, str, str]] = []
    for venue, client in clients.items():
        send = client.exchange.fetch

        async def recording(url: str, method: str = "GET", headers: Any = None, body: Any = None,
                            _venue: str = venue, _send: Any = send) -> Any:
            seen.append((_venue, method, urlsplit(url).path))
            return await _send(url, method, headers, body)

        client.exchange.fetch = recording
    return seen


def time_trades(engine: Any) -> list[float]:
    """Seconds from the newest frame of a decision's two books (the one that dislocated them) to
    the trade booked (both legs settled, repaired if needed, the intent's end journalled)."""
    times: list[float] = []
    inner = engine.trades.on_decisions

    async def timed(decisions: list[Any]) -> list[dict[str, Any]]:
        triggers = []
        for decision in decisions:
            books = [engine.store.get(leg.venue, leg.symbol) for leg in decision.legs]
            triggers.append(max((b.recv_ts for b in books if b is not None), default=None))
        answers: list[dict[str, Any]] = await inner(decisions)
        done = time.time()
        for trigger, answer in zip(triggers, answers):
            if trigger and isinstance(answer, dict) and answer.get("outcome") not in (None, "skipped", "refused"):
                times.append(done - trigger)
        return answers

    engine.trades.on_decisions = timed
    return times


def counter_total(metric: Any) -> float:
    return sum(sample.value for family in metric.collect() for sample in family.samples
               if sample.name.endswith("_total"))


def histogram_means(metric: Any) -> dict[str, float]:
    """Mean per label value (the venue) of a one-label histogram."""
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for family in metric.collect():
        for sample in family.samples:
            label = next(iter(sample.labels.values()), "") if sample.labels else ""
            if sample.name.endswith("_sum"):
                sums[label] = sample.value
            elif sample.name.endswith("_count"):
                counts[label] = sample.value
    return {k: sums[k] / counts[k] for k in sums if counts.get(k)}


def histogram_mean(metric: Any) -> float | None:
    total = count = 0.0
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith("_sum"):
                total += sample.value
            elif sample.name.endswith("_count"):
                count += sample.value
    return total / count if count else None


async def run(streams: bool, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        app = App(settings(Path(tmp), streams))
        task = asyncio.get_running_loop().create_task(app.run())
        await wait_for(lambda: app.engine is not None and app.engine.engine.state == "ACTIVE", 60)
        service = app.engine
        engine = service.engine
        if streams:
            await wait_for(lambda: all(s.live for s in service.private_streams.streams.values()), 30)
        for background in (engine.startup_funding, service.instrument_refresh):
            if background is not None:
                await asyncio.wait_for(asyncio.shield(background), 60)
        seen = record(service.clients)
        frame_to_booked = time_trades(engine)
        trades_before = counter_total(engine.metrics.trades_total)
        confirmations = engine.desk.confirmations
        if confirmations is not None:
            confirmations.booking_latency_s.clear()
        await asyncio.sleep(seconds)
        async with engine._trade_lock:  # noqa: SLF001 - a quiet moment: nothing in flight
            trades = int(counter_total(engine.metrics.trades_total) - trades_before)
            requests = list(seen)
        latencies = list(confirmations.booking_latency_s) if confirmations is not None else []
        order_mean = histogram_mean(engine.metrics.order_execution_duration)
        per_venue = histogram_means(engine.metrics.order_execution_duration)
        app.request_stop()
        await asyncio.wait_for(task, 30)
    orders = sum(1 for r in requests if r in ORDER_PATHS)
    beyond: dict[str, int] = {}
    for venue, method, path in requests:
        if (venue, method, path) not in ORDER_PATHS:
            beyond[f"{venue} {method} {path}"] = beyond.get(f"{venue} {method} {path}", 0) + 1
    result: dict[str, Any] = {"streams": streams, "trades": trades, "requests": len(requests), "orders": orders,
                              "beyond": beyond, "order_ms_by_venue": {k: round(v * 1000, 1) for k, v in per_venue.items()},
                              "order_ms": None if order_mean is None else order_mean * 1000}
    if frame_to_booked:
        arr = np.array(frame_to_booked) * 1000
        result["trade_ms"] = {q: float(np.percentile(arr, q, method="inverted_cdf")) for q in (50, 90, 99)}
    if latencies:
        arr = np.array(latencies) * 1000
        result["booked_ms"] = {q: float(np.percentile(arr, q, method="inverted_cdf")) for q in (50, 90, 99)}
        result["fills"] = len(latencies)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    rows = [asyncio.run(run(False, args.seconds)), asyncio.run(run(True, args.seconds))]
    print("| private streams | trades | REST requests | of which orders | beyond orders per trade | "
          "order send->settled mean ms | fill frame->booked p50/p90/p99 ms | frame->trade booked p50/p90/p99 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        per_trade = (row["requests"] - row["orders"]) / row["trades"] if row["trades"] else float("nan")
        booked = row.get("booked_ms")
        booked_text = "/".join(f"{booked[q]:.2f}" for q in (50, 90, 99)) + f" ({row['fills']} fills)" if booked else "-"
        order_ms = f"{row['order_ms']:.1f}" if row["order_ms"] is not None else "-"
        trade = row.get("trade_ms")
        trade_text = "/".join(f"{trade[q]:.1f}" for q in (50, 90, 99)) if trade else "-"
        print(f"| {'on' if row['streams'] else 'off'} | {row['trades']} | {row['requests']} | {row['orders']} | "
              f"{per_trade:.2f} | {order_ms} | {booked_text} | {trade_text} |")
    for row in rows:
        print(f"streams {'on' if row['streams'] else 'off'}: requests beyond the orders: {row['beyond'] or 'none'}; "
              f"order send->settled mean ms by venue: {row['order_ms_by_venue']}")
    off, on = rows
    if off["order_ms"] and on["order_ms"]:
        print(f"\norder send->settled, streams on / off: {on['order_ms'] / off['order_ms']:.2f}x "
              f"(median of one run each: {statistics.median([on['order_ms']]):.1f} ms vs {off['order_ms']:.1f} ms)")


if __name__ == "__main__":
    main()
