"""Order entry in the running bot, the product's path end to end: frame -> orders at the venue -> fills known.

`python bench/order_entry.py [--samples 40]` runs the real bot (perpbot.app.App: its feeds, scanner,
risk gate, journal on SQLite, order sockets, ccxt clients, private streams) against the built-in
simulator on loopback, twice in one process: with orders over REST (ccxt, `execution.order_entry:
rest`) and over the venues' order WebSockets (`ws`, the default). Random dislocations are off; the
bench moves one venue's book itself (Market.apply_jump) and times, with one clock (time.perf_counter,
bot and simulator in one process):

* frame -> order: from the simulator writing the first depth frame after the jump (the frame that
  shows the dislocation; SimStats.frame_hook) to each leg's order reaching the simulated venue's
  matching engine (SimExchange.arrival_hook), per venue of the leg, and for the first of the two;
* skew: between the two legs' arrivals;
* frame -> both fills known: to the second of the two legs' sends settled in the bot (its order
  lifecycle returned: fills, price and fee booked);
* REST requests per trade (every HTTP request of the bot's ccxt clients while sampling, over the
  trades opened and closed);
* signing: Hyperliquid's native signer per order, when its order link exists (bench/hl_signing.py
  compares it with ccxt's).

Only entries caused by the bench's jumps are counted (an intent whose first order arrives after the
jump's frame). The hooks are attributes that are None in the product; nothing else is stubbed.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
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
from perpbot.execution.order_routing import rest_of  # noqa: E402
from perpbot.reliability.ports import free_port  # noqa: E402
from perpbot.settings import Settings  # noqa: E402

VENUES = {"okx": "BTC-USDT-SWAP", "binance": "BTCUSDT", "bybit": "BTCUSDT", "hyperliquid": "BTC"}
DEPTH_MARKERS = {"okx": '"books', "binance": "depthUpdate", "bybit": "orderbook.", "hyperliquid": "l2Book"}
JUMP_BPS = 60.0


def settings(workdir: Path, entry: str) -> Settings:
    ports = {venue: free_port() for venue in VENUES}
    return Settings(
        mode="sim", log_dir=str(workdir / "logs"), journal={"path": str(workdir / "journal.sqlite")},
        http={"host": "127.0.0.1", "port": 0}, api_token="bench-token", log_level="WARNING",
        venues={venue: {"symbols": [symbol]} for venue, symbol in VENUES.items()},
        sim={"enabled": True, "ports": ports, "admin_port": free_port(), "seed": 11, "tick_interval_s": 0.02,
             "dislocation_rate": 0.0},
        feeds={"backoff_initial_s": 0.05, "backoff_max_s": 0.5},
        risk={"min_edge_bps": 1, "max_orders_per_minute": 6000, "max_book_age_s": 5.0},
        strategies={"price_spread": {"order_size_usdt": 300, "min_edge_bps": 15, "exit_edge_bps": 2,
                                     "max_hold_s": 0.2},
                    "funding_spread": {"enabled": False}},
        execution={"reconcile_interval_s": 3600.0, "order_timeout_s": 5.0, "order_entry": entry},
    )


async def wait_for(predicate: Any, timeout: float, step: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True


def record_rest(clients: dict[str, Any]) -> list[tuple[str, str, str]]:
    seen: list[tuple[str, str, str]] = []
    for venue, client in clients.items():
        rest = rest_of(client)
        send = rest.exchange.fetch

        async def recording(url: str, method: str = "GET", headers: Any = None, body: Any = None,
                            _venue: str = venue, _send: Any = send) -> Any:
            seen.append((_venue, method, urlsplit(url).path))
            return await _send(url, method, headers, body)

        rest.exchange.fetch = recording
    return seen


def time_settled(engine: Any, settled: dict[str, float]) -> None:
    """Record when each order's send returns in the bot (its fills, price and fee known)."""
    lifecycle = engine.trades.orders
    inner = lifecycle.send

    async def timed(approved: Any, strategy: str | None) -> Any:
        sent = await inner(approved, strategy)
        settled[approved.request.client_order_id] = time.perf_counter()
        return sent

    lifecycle.send = timed


def intents_of(journal_path: str) -> dict[str, tuple[str, str]]:
    """client order id -> (intent id, action) from the bot's journal."""
    db = sqlite3.connect(f"file:{journal_path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT o.client_order_id, o.intent_id, i.action FROM orders o "
                          "JOIN intents i ON i.intent_id = o.intent_id").fetchall()
    finally:
        db.close()
    return {cid: (intent, action) for cid, intent, action in rows}


def hl_signing_us() -> float | None:
    try:
        sys.path.insert(0, str(ROOT / "bench"))
        from hl_signing import place_frame_us  # type: ignore[import-not-found]
    except ImportError:
        return None
    return float(place_frame_us())


async def run(entry: str, samples: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        conf = settings(Path(tmp), entry)
        app = App(conf)
        task = asyncio.get_running_loop().create_task(app.run())
        assert await wait_for(lambda: app.engine is not None and app.engine.engine.state == "ACTIVE", 60)
        service = app.engine
        engine = service.engine
        assert await wait_for(lambda: all(s.live for s in service.private_streams.streams.values()), 30)
        if service.order_sockets is not None:
            assert await wait_for(lambda: all(s.ready() for s in service.order_sockets.sockets.values()), 30)
        for background in (engine.startup_funding, service.instrument_refresh):
            if background is not None:
                await asyncio.wait_for(asyncio.shield(background), 60)
        sim = app.simulator
        frames: list[tuple[str, float]] = []
        arrivals: dict[str, tuple[str, float]] = {}
        settled: dict[str, float] = {}
        watching: dict[str, str | None] = {"venue": None}

        def on_frame(venue: str, text: str, ts: float) -> None:
            if venue == watching["venue"] and DEPTH_MARKERS[venue] in text[:200]:
                frames.append((venue, ts))
                watching["venue"] = None

        def on_arrival(venue: str, cid: str | None, ts: float) -> None:
            if cid is not None and cid not in arrivals:
                arrivals[cid] = (venue, ts)

        sim.stats.frame_hook = on_frame
        for exchange in sim.exchanges.values():
            exchange.arrival_hook = on_arrival
        time_settled(engine, settled)
        seen = record_rest(service.clients)
        trades_before = sum(s.value for f in engine.metrics.trades_total.collect() for s in f.samples
                            if s.name.endswith("_total"))
        names = list(VENUES)
        for i in range(samples):
            venue = names[i % len(names)]
            sign = 1 if (i // len(names)) % 2 == 0 else -1
            # Quiet first: nothing open, nothing in flight.
            await wait_for(lambda: not engine.open_trades and not engine.desk.in_flight, 10)
            watching["venue"] = venue
            sim.market.apply_jump(venue, VENUES[venue], sign * JUMP_BPS)
            count = len(settled)
            await wait_for(lambda: len(settled) >= count + 2, 3)
            await asyncio.sleep(0.05)
            sim.market.apply_jump(venue, VENUES[venue], -sign * JUMP_BPS)  # back: the exit's edge
        await wait_for(lambda: not engine.open_trades and not engine.desk.in_flight, 10)
        async with engine._trade_lock:  # noqa: SLF001
            requests = list(seen)
            trades = int(sum(s.value for f in engine.metrics.trades_total.collect() for s in f.samples
                             if s.name.endswith("_total")) - trades_before)
        app.request_stop()
        await asyncio.wait_for(task, 30)
        owners = intents_of(conf.journal.path)
    by_intent: dict[str, list[str]] = {}
    for cid, (intent, action) in owners.items():
        if action == "open" and cid in arrivals:
            by_intent.setdefault(intent, []).append(cid)
    first_ms: list[float] = []
    skew_ms: list[float] = []
    fills_ms: list[float] = []
    per_venue: dict[str, list[float]] = {v: [] for v in VENUES}
    used: set[str] = set()
    for _venue, frame_ts in frames:
        candidates = [(min(arrivals[c][1] for c in cids), intent, cids) for intent, cids in by_intent.items()
                      if intent not in used and len(cids) == 2 and min(arrivals[c][1] for c in cids) >= frame_ts]
        if not candidates:
            continue
        first, intent, cids = min(candidates)
        if first - frame_ts > 1.0:
            continue
        used.add(intent)
        times = [arrivals[c][1] for c in cids]
        first_ms.append((first - frame_ts) * 1000)
        skew_ms.append(abs(times[0] - times[1]) * 1000)
        for c in cids:
            per_venue[arrivals[c][0]].append((arrivals[c][1] - frame_ts) * 1000)
        if all(c in settled for c in cids):
            fills_ms.append((max(settled[c] for c in cids) - frame_ts) * 1000)
    return {"entry": entry, "samples": len(first_ms), "jumps": len(frames), "trades": trades,
            "rest_per_trade": len(requests) / trades if trades else float("nan"),
            "first": first_ms, "skew": skew_ms, "fills": fills_ms, "per_venue": per_venue}


def pct(values: list[float], q: float) -> str:
    if not values:
        return "-"
    return f"{float(np.percentile(np.array(values), q, method='inverted_cdf')):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=40)
    args = parser.parse_args()
    rows = [asyncio.run(run("rest", args.samples)), asyncio.run(run("ws", args.samples))]
    print("| order entry | entries timed | frame->first order p50/p99 ms | leg skew p50/p99 ms | "
          "frame->both fills known p50/p99 ms | REST requests per trade |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['entry']} | {row['samples']} of {row['jumps']} jumps | {pct(row['first'], 50)} / {pct(row['first'], 99)} | "
              f"{pct(row['skew'], 50)} / {pct(row['skew'], 99)} | {pct(row['fills'], 50)} / {pct(row['fills'], 99)} | "
              f"{row['rest_per_trade']:.2f} |")
    print("\nframe -> this venue's leg at the venue, p50/p99 ms (n):")
    print("| order entry | " + " | ".join(VENUES) + " |")
    print("|---|" + "---|" * len(VENUES))
    for row in rows:
        cells = [f"{pct(row['per_venue'][v], 50)} / {pct(row['per_venue'][v], 99)} ({len(row['per_venue'][v])})"
                 for v in VENUES]
        print(f"| {row['entry']} | " + " | ".join(cells) + " |")
    rest, ws = rows
    if rest["first"] and ws["first"]:
        ratio = float(np.median(rest["first"])) / float(np.median(ws["first"]))
        print(f"\nframe->first order p50, rest / ws: {ratio:.1f}x")
    signing = hl_signing_us()
    if signing is not None:
        print(f"Hyperliquid order frame (build + native sign + JSON): {signing:.1f} us per order")


if __name__ == "__main__":
    main()
