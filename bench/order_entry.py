"""Order entry in the running bot, the product's path end to end: frame -> orders at the venue -> fills known.

`python bench/order_entry.py [--samples 40]` runs the built-in simulator in a process of its own
(`perpbot sim`, with `sim.record_timings`) and the real bot in this one (perpbot.app.App: its feeds,
scanner, risk gate, journal on SQLite, order sockets, ccxt clients, private streams; a `live`-mode
client of the simulator's loopback ports, as the crash rig runs it), twice: with orders over REST (ccxt,
`execution.order_entry: rest`) and over the venues' order WebSockets (`ws`, the default). Random
dislocations are off; the bench moves one venue's book (`POST /admin/jump`) and times, on one clock
(time.perf_counter = CLOCK_MONOTONIC, shared by both processes):

* frame -> order: from the simulator writing the first depth frame after the jump (the frame that
  shows the dislocation) to each leg's order reaching the simulated venue's matching engine, per venue
  of the leg, and for the first of the two legs;
* skew on the wire: between the bot's writes of the two legs' requests (its order socket's frame, or
  ccxt's HTTP request), and at the venue (arrivals, which include the simulator taking the first leg);
* frame -> both fills known: to the second of the two legs' sends settled in the bot (its order
  lifecycle returned: fills, price and fee booked);
* REST requests per trade (every HTTP request of the bot's ccxt clients while sampling, over the
  trades opened and closed);
* signing: Hyperliquid's order frame per order (build + native sign + JSON; bench/hl_signing.py).

Only entries caused by the bench's jumps count (an intent whose first order arrives after the jump's
frame). The bot runs unmodified; the bench wraps its order lifecycle's `send`, its order sockets'
`send` and ccxt's `fetch` to stamp them (a few microseconds each).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402

from perpbot.app import App  # noqa: E402
from perpbot.execution.order_routing import rest_of  # noqa: E402
from perpbot.reliability.ports import free_port  # noqa: E402
from perpbot.settings import SIM_ORDER_PATHS, SIM_PATHS, SIM_PRIVATE_PATHS, Settings  # noqa: E402
from perpbot.venue_instruments import SIM_CREDENTIALS  # noqa: E402

VENUES = {"okx": "BTC-USDT-SWAP", "binance": "BTCUSDT", "bybit": "BTCUSDT", "hyperliquid": "BTC"}
JUMP_BPS = 60.0
# The client order id in a request as each venue names it (WebSocket frame or REST body/query).
CLIENT_ID = re.compile(r'(?:clOrdId|orderLinkId|newClientOrderId|"c")"?\s*[:=]\s*"?([A-Za-z0-9x]+)')


def sim_config(workdir: Path) -> tuple[dict[str, Any], dict[str, int], int]:
    ports = {venue: free_port() for venue in VENUES}
    admin = free_port()
    config = {"mode": "sim", "log_dir": str(workdir / "sim-logs"), "log_level": "WARNING",
              "http": {"host": "127.0.0.1", "port": free_port()},
              "venues": {venue: {"symbols": [symbol]} for venue, symbol in VENUES.items()},
              "sim": {"enabled": True, "ports": ports, "admin_port": admin, "seed": 11, "tick_interval_s": 0.1,
                      "dislocation_rate": 0.0, "record_timings": True}}
    return config, ports, admin


def bot_settings(workdir: Path, ports: dict[str, int], admin: int, entry: str) -> Settings:
    venues: dict[str, dict[str, Any]] = {}
    for venue, symbol in VENUES.items():
        base = f"127.0.0.1:{ports[venue]}"
        venues[venue] = {"symbols": [symbol], "ws_url": f"ws://{base}{SIM_PATHS[venue][0]}",
                         "rest_url": f"http://{base}{SIM_PATHS[venue][1]}",
                         "private_ws_url": f"ws://{base}{SIM_PRIVATE_PATHS[venue]}",
                         "order_ws_url": f"ws://{base}{SIM_ORDER_PATHS[venue]}",
                         **({"wallet_address": SIM_CREDENTIALS["wallet_address"],
                             "private_key": SIM_CREDENTIALS["private_key"]} if venue == "hyperliquid" else
                            {"api_key": SIM_CREDENTIALS["api_key"], "api_secret": SIM_CREDENTIALS["api_secret"],
                             "passphrase": SIM_CREDENTIALS["passphrase"]})}
    return Settings(
        mode="live", log_dir=str(workdir / "logs"), journal={"path": str(workdir / f"journal-{entry}.sqlite")},
        http={"host": "127.0.0.1", "port": 0}, api_token="bench-token", log_level="WARNING", venues=venues,
        sim={"enabled": False, "admin_port": admin},
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


def stamp_requests(clients: dict[str, Any], wire: dict[str, float]) -> list[tuple[str, str, str]]:
    """Every ccxt HTTP request (venue, method, path); an order's time of leaving by its client id."""
    seen: list[tuple[str, str, str]] = []
    for venue, client in clients.items():
        rest = rest_of(client)
        send = rest.exchange.fetch

        async def recording(url: str, method: str = "GET", headers: Any = None, body: Any = None,
                            _venue: str = venue, _send: Any = send) -> Any:
            found = CLIENT_ID.search(f"{url} {body or ''}") if method == "POST" else None
            if found is not None:
                wire.setdefault(found.group(1), time.perf_counter())
            seen.append((_venue, method, urlsplit(url).path))
            return await _send(url, method, headers, body)

        rest.exchange.fetch = recording
    return seen


def stamp_sockets(sockets: Any, wire: dict[str, float]) -> None:
    for socket in (sockets.sockets.values() if sockets is not None else ()):
        conn = socket.connection
        inner = conn.send

        async def timed(frame: str, _inner: Any = inner) -> bool:
            sent = await _inner(frame)
            found = CLIENT_ID.search(frame)
            if found is not None:
                wire.setdefault(found.group(1), time.perf_counter())
            return bool(sent)

        conn.send = timed


def stamp_settled(engine: Any, settled: dict[str, float]) -> None:
    """When each order's send returns in the bot (its fills, price and fee known)."""
    lifecycle = engine.trades.orders
    inner = lifecycle.send

    async def timed(approved: Any, strategy: str | None) -> Any:
        sent = await inner(approved, strategy)
        settled[approved.request.client_order_id] = time.perf_counter()
        return sent

    lifecycle.send = timed


def stamp_stages(engine: Any, stages: dict[str, dict[str, float]]) -> None:
    """Per intent: when its decision reached the engine and when its write-ahead rows were committed."""
    trades = engine.trades
    inner_execute = trades.execute
    journal = engine.desk.journal
    inner_record = journal.record_intent
    current: dict[str, float] = {}

    offset = time.time() - time.perf_counter()

    async def execute(decision: Any) -> Any:
        current["decided"] = time.perf_counter()
        books = [engine.store.get(leg.venue, leg.symbol) for leg in decision.legs]
        current["received"] = max((b.recv_ts for b in books if b is not None), default=offset) - offset
        return await inner_execute(decision)

    async def record(intent_id: str, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = await inner_record(intent_id, *args, **kwargs)
        stages[intent_id] = {"decided": current.get("decided", started), "received": current.get("received", started),
                             "journal_start": started,
                             "journaled": time.perf_counter()}
        return result

    trades.execute = execute
    journal.record_intent = record


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


async def run(entry: str, samples: int, workdir: Path, ports: dict[str, int], admin: int) -> dict[str, Any]:
    conf = bot_settings(workdir, ports, admin, entry)
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
    wire: dict[str, float] = {}
    settled: dict[str, float] = {}
    stamp_settled(engine, settled)
    stages: dict[str, dict[str, float]] = {}
    stamp_stages(engine, stages)
    stamp_sockets(service.order_sockets, wire)
    seen = stamp_requests(service.clients, wire)
    admin_url = f"http://127.0.0.1:{admin}"
    async with aiohttp.ClientSession() as http:
        await (await http.get(f"{admin_url}/admin/timings")).json()  # start clean
        trades_before = sum(s.value for f in engine.metrics.trades_total.collect() for s in f.samples
                            if s.name.endswith("_total"))
        names = list(VENUES)
        for i in range(samples):
            venue = names[i % len(names)]
            sign = 1 if (i // len(names)) % 2 == 0 else -1
            await wait_for(lambda: not engine.open_trades and not engine.desk.in_flight, 10)
            count = len(settled)
            await http.post(f"{admin_url}/admin/jump", json={"venue": venue, "symbol": VENUES[venue],
                                                              "bps": sign * JUMP_BPS})
            await wait_for(lambda: len(settled) >= count + 2, 3)
            await asyncio.sleep(0.05)
            await http.post(f"{admin_url}/admin/jump", json={"venue": venue, "symbol": VENUES[venue],
                                                              "bps": -sign * JUMP_BPS, "watch": False})
        await wait_for(lambda: not engine.open_trades and not engine.desk.in_flight, 10)
        async with engine._trade_lock:  # noqa: SLF001
            requests = list(seen)
            trades = int(sum(s.value for f in engine.metrics.trades_total.collect() for s in f.samples
                             if s.name.endswith("_total")) - trades_before)
        timings = await (await http.get(f"{admin_url}/admin/timings")).json()
    app.request_stop()
    await asyncio.wait_for(task, 30)
    owners = intents_of(conf.journal.path)
    arrivals: dict[str, tuple[str, float]] = {}
    for venue, cid, ts in timings["arrivals"]:
        arrivals.setdefault(cid, (venue, ts))
    by_intent: dict[str, list[str]] = {}
    for cid, (intent, action) in owners.items():
        if action == "open" and cid in arrivals:
            by_intent.setdefault(intent, []).append(cid)
    out: dict[str, Any] = {"entry": entry, "jumps": len(timings["frames"]), "trades": trades,
                           "rest_per_trade": len(requests) / trades if trades else float("nan"),
                           "first": [], "skew_wire": [], "skew_venue": [], "fills": [],
                           "per_venue": {v: [] for v in VENUES}, "decided": [], "received": [], "journal": [], "to_wire": []}
    used: set[str] = set()
    for _venue, frame_ts in timings["frames"]:
        candidates = [(min(arrivals[c][1] for c in cids), intent, cids) for intent, cids in by_intent.items()
                      if intent not in used and len(cids) == 2 and min(arrivals[c][1] for c in cids) >= frame_ts]
        if not candidates:
            continue
        first, intent, cids = min(candidates)
        if first - frame_ts > 1.0:
            continue
        used.add(intent)
        out["first"].append((first - frame_ts) * 1000)
        out["skew_venue"].append(abs(arrivals[cids[0]][1] - arrivals[cids[1]][1]) * 1000)
        if all(c in wire for c in cids):
            out["skew_wire"].append(abs(wire[cids[0]] - wire[cids[1]]) * 1000)
        for c in cids:
            out["per_venue"][arrivals[c][0]].append((arrivals[c][1] - frame_ts) * 1000)
        stage = stages.get(intent)
        if stage is not None:
            out["decided"].append((stage["decided"] - frame_ts) * 1000)
            out["received"].append((stage["received"] - frame_ts) * 1000)
            out["journal"].append((stage["journaled"] - stage["journal_start"]) * 1000)
            if all(c in wire for c in cids):
                out["to_wire"].append((min(wire[c] for c in cids) - stage["journaled"]) * 1000)
        if all(c in settled for c in cids):
            out["fills"].append((max(settled[c] for c in cids) - frame_ts) * 1000)
    out["samples"] = len(out["first"])
    return out


async def both(samples: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        config, ports, admin = sim_config(workdir)
        (workdir / "sim.yaml").write_text(yaml.safe_dump(config))
        sim = subprocess.Popen([sys.executable, "-m", "perpbot.cli", "sim", "--config", str(workdir / "sim.yaml")],
                               cwd=workdir, stdout=subprocess.DEVNULL, stderr=open(workdir / "sim.err", "ab"))
        try:
            async with aiohttp.ClientSession() as http:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        async with http.get(f"http://127.0.0.1:{admin}/admin/stats") as resp:
                            if resp.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError("the simulator did not start: " + (workdir / "sim.err").read_text())
                    await asyncio.sleep(0.1)
            return [await run(entry, samples, workdir, ports, admin) for entry in ("rest", "ws")]
        finally:
            sim.terminate()
            sim.wait(10)


def pct(values: list[float], q: float) -> str:
    if not values:
        return "-"
    return f"{float(np.percentile(np.array(values), q, method='inverted_cdf')):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=40)
    args = parser.parse_args()
    rows = asyncio.run(both(args.samples))
    print("| order entry | entries timed | frame->first order p50/p90/p99 ms | leg skew on the wire p50/p99 ms | "
          "leg skew at the venue p50/p99 ms | frame->both fills known p50/p90/p99 ms | REST requests per trade |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['entry']} | {row['samples']} of {row['jumps']} jumps | {pct(row['first'], 50)} / "
              f"{pct(row['first'], 90)} / {pct(row['first'], 99)} | "
              f"{pct(row['skew_wire'], 50)} / {pct(row['skew_wire'], 99)} | "
              f"{pct(row['skew_venue'], 50)} / {pct(row['skew_venue'], 99)} | "
              f"{pct(row['fills'], 50)} / {pct(row['fills'], 90)} / {pct(row['fills'], 99)} | {row['rest_per_trade']:.2f} |")
    print("\nwhere the time goes, p50/p99 ms: frame -> decision at the engine | write-ahead rows | rows -> first leg "
          "written on the wire")
    for row in rows:
        print(f"  {row['entry']}: (newest book frame received {pct(row['received'], 50)}) {pct(row['decided'], 50)} / {pct(row['decided'], 99)} | "
              f"{pct(row['journal'], 50)} / {pct(row['journal'], 99)} | {pct(row['to_wire'], 50)} / {pct(row['to_wire'], 99)}")
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
