"""Benchmark: scanner + risk gate cost per book update at 4 venues x 50 symbols (python bench/bench_scanner.py)."""

from __future__ import annotations

import random
import sys
import time
from collections import deque
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perpbot.book.store import BookStore  # noqa: E402
from perpbot.book.sync import APPLY, apply_update  # noqa: E402
from perpbot.core.events import BookUpdate, FundingUpdate  # noqa: E402
from perpbot.core.instruments import Instrument  # noqa: E402
from perpbot.risk.context import RiskContext  # noqa: E402
from perpbot.risk.gate import RiskGate  # noqa: E402
from perpbot.risk.states import TradingState  # noqa: E402
from perpbot.scanner.scanner import Scanner  # noqa: E402
from perpbot.settings import ExecutionSettings, RiskSettings, StrategiesSettings  # noqa: E402
from perpbot.telemetry.metrics import Metrics  # noqa: E402
from strategies import build_strategies  # noqa: E402

D = Decimal
VENUES = ("okx", "hyperliquid", "binance", "bybit")
SYMBOLS = 50
LEVELS = 20
UPDATES = 20_000


class AcceptAll:
    def check_sequence(self, book, update):
        return APPLY

    def verify_checksum(self, book, checksum):
        return True


def instrument(venue: str, base: str) -> Instrument:
    symbol = {"okx": f"{base}-USDT-SWAP", "hyperliquid": base}.get(venue, f"{base}USDT")
    contract = D("0.01") if venue == "okx" else D(1)
    return Instrument(venue, symbol, base, "USDT", f"{base}/USDT:USDT", D("0.1"), D("1") if venue == "okx" else D("0.001"),
                      D("1") if venue == "okx" else D("0.001"), D("0"), contract_size=contract)


def levels(mid: float, side: int, contract: bool) -> list[list[str]]:
    size = "50" if contract else "0.5"
    return [[f"{mid + side * (0.5 + i):.1f}", size] for i in range(LEVELS)]


def main() -> dict[str, float]:
    """Run the scanner bench, print it, and return its figures (us per update) for bench/run.py."""
    results: dict[str, float] = {}
    rng = random.Random(7)
    now = 1_700_000_000.0
    store = BookStore(stale_after_s=1e9)
    instruments = {}
    funding = {}
    for n in range(SYMBOLS):
        for venue in VENUES:
            inst = instrument(venue, f"C{n}")
            instruments[inst.key] = inst
            funding[inst.key] = FundingUpdate(venue, inst.symbol, D("0.0001"), 1 if venue == "hyperliquid" else 8,
                                              None, None, 0, now)
    rules = AcceptAll()
    for key, inst in instruments.items():
        book = store.add(inst.venue, inst.symbol, inst.contract_size)
        okx = inst.venue == "okx"
        apply_update(book, BookUpdate(inst.venue, inst.symbol, True, levels(1000.0, -1, okx), levels(1000.0, 1, okx),
                                      1, None, None, None, 0, now), rules)
    metrics = Metrics()
    scanner = Scanner(store, build_strategies(StrategiesSettings()), metrics, instruments, funding, clock=lambda: now)
    gate = RiskGate(RiskSettings(max_position_size_usdt=D("100000")), ExecutionSettings(), metrics)
    keys = list(instruments)
    deltas = []
    for i in range(UPDATES):
        key = rng.choice(keys)
        inst = instruments[key]
        # 2 % of updates dislocate a book by 30 bps so some scans find (and the gate checks) entries.
        shift = 3.0 if rng.random() < 0.02 else 0.0
        okx = inst.venue == "okx"
        deltas.append((key, BookUpdate(inst.venue, inst.symbol, True, levels(1000.0 + shift, -1, okx),
                                       levels(1000.0 + shift, 1, okx), i + 2, None, None, None, 0, now)))

    def ctx() -> RiskContext:
        return RiskContext(TradingState.ACTIVE, now, {v: D("1e6") for v in VENUES}, {v: D(0) for v in VENUES}, {},
                           {}, 0, D(0), deque(maxlen=1000), D(0), {v: True for v in VENUES}, store, instruments,
                           {v: D(3) for v in VENUES})

    context = ctx()

    # 1) every update scanned on its own (no conflation), entries through the gate
    apply_ns = scan_ns = gate_ns = 0
    entries = 0
    for i, (key, update) in enumerate(deltas):
        t0 = time.perf_counter_ns()
        apply_update(store.books[key], update, rules)
        t1 = time.perf_counter_ns()
        decisions = scanner.scan((key,), ())
        t2 = time.perf_counter_ns()
        for decision in decisions:
            if decision.action == "open":
                entries += 1
                context.recent_order_times.clear()
                gate.approve_entry(decision, context, f"i{i}", (f"a{i}", f"b{i}"))
        t3 = time.perf_counter_ns()
        apply_ns += t1 - t0
        scan_ns += t2 - t1
        gate_ns += t3 - t2
    n = len(deltas)
    print(f"books: {len(VENUES)} venues x {SYMBOLS} symbols, {LEVELS} levels/side; {n} updates")
    print(f"book apply (reference, not ours):     {apply_ns / n / 1000:8.2f} us/update")
    print(f"scanner, one scan per update:         {scan_ns / n / 1000:8.2f} us/update")
    print(f"risk gate (approve_entry):            {gate_ns / max(entries, 1) / 1000:8.2f} us/entry "
          f"({entries} entries, {gate_ns / n / 1000:.2f} us/update amortised)")
    print(f"scanner + gate per update:            {(scan_ns + gate_ns) / n / 1000:8.2f} us/update")
    results["scan_gate_us"] = (scan_ns + gate_ns) / n / 1000
    results["gate_us_per_entry"] = gate_ns / max(entries, 1) / 1000
    results["entries"] = entries

    # 2) quiet market: books back in line, no strategy finds anything (the common case)
    for key, inst in instruments.items():
        okx = inst.venue == "okx"
        apply_update(store.books[key], BookUpdate(inst.venue, inst.symbol, True, levels(1000.0, -1, okx),
                                                  levels(1000.0, 1, okx), 10**9, None, None, None, 0, now), rules)
    t0 = time.perf_counter_ns()
    for key, _ in deltas:
        scanner.scan((key,), ())
    results["quiet_scan_us"] = (time.perf_counter_ns() - t0) / n / 1000
    print(f"scanner, quiet market, per update:    {results['quiet_scan_us']:8.2f} us/update")

    # 3) conflated: bursts of 200 updates between scans (what Scanner.run does under load)
    burst = 200
    scan_ns = 0
    for start in range(0, n, burst):
        chunk = deltas[start:start + burst]
        changed = set()
        for key, update in chunk:
            apply_update(store.books[key], update, rules)
            changed.add(key)
        t0 = time.perf_counter_ns()
        scanner.scan(changed, ())
        scan_ns += time.perf_counter_ns() - t0
    print(f"scanner, conflated bursts of {burst}:     {scan_ns / n / 1000:8.2f} us/update")
    results["conflated_scan_us"] = scan_ns / n / 1000
    return results


if __name__ == "__main__":
    main()
