"""Benchmark: scanner + risk gate cost per book update at 4 venues x 50 symbols (python bench/bench_scanner.py).

Main figure, the realistic stream: what the bot does. An approved entry becomes an open trade (the
engine never enters a venue/symbol already held), a close leaves it, exits are priced on every update
of a base with an open trade, so a dislocation that persists until its book's next update is entered
once, not on every update. The stress row keeps the old mix (every dislocated scan's entry goes
through the gate and nothing is ever held), so the slow case stays visible.
Reported per update: screen only (bases skipped by the incremental screens), full evaluation, gate, total.
"""

from __future__ import annotations

import contextlib
import io
import random
import statistics
import sys
import time
from collections import deque
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perpbot.book.store import BookStore  # noqa: E402
from perpbot.book.sync import APPLY, apply_update  # noqa: E402
from perpbot.core.decisions import Refusal  # noqa: E402
from perpbot.core.events import BookUpdate, FundingUpdate  # noqa: E402
from perpbot.core.orders import OrderRequest  # noqa: E402
from perpbot.core.instruments import Instrument  # noqa: E402
from perpbot.risk.context import RiskContext  # noqa: E402
from perpbot.risk.gate import RiskGate  # noqa: E402
from perpbot.risk.states import TradingState  # noqa: E402
from perpbot.scanner.protocol import FundingMap, OpenTrade  # noqa: E402
from perpbot.scanner.scanner import Scanner  # noqa: E402
from perpbot.settings import ExecutionSettings, RiskSettings, StrategiesSettings  # noqa: E402
from perpbot.telemetry.metrics import Metrics  # noqa: E402
from strategies import build_strategies  # noqa: E402

D = Decimal
VENUES = ("okx", "hyperliquid", "binance", "bybit")
SYMBOLS = 50
LEVELS = 20
UPDATES = 20_000
REPEATS = 3  # whole runs; the figures returned are their medians
DISLOCATED = 0.02  # stress row: share of updates that move one book 30 bps away from the others
REAL_DISLOCATED = 0.005  # realistic row: the same, rarer (one dislocation a second at the rate below)
REAL_TICK = 0.1  # realistic row: 1 bp spread (the stress row keeps its 10 bp one), so converged trades exit
DENSITIES = (0.0, 0.0005, 0.001, 0.002, 0.005)  # the density sweep's dislocating shares of updates
UPDATES_PER_S = 200.0  # realistic row: stream rate (1 update/s per book; 20,000 updates = 100 s)


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


def levels(mid: float, side: int, contract: bool, tick: float = 1.0) -> list[list[str]]:
    """LEVELS levels a side, `tick` apart, the best half a tick from `mid` (spread = tick)."""
    size = "50" if contract else "0.5"
    return [[f"{mid + side * tick * (0.5 + i):.2f}", size] for i in range(LEVELS)]


def _setup(tick: float = 1.0):
    now = 1_700_000_000.0
    store = BookStore(stale_after_s=1e9)
    instruments = {}
    # A FundingMap, as the bot's FundingStore holds (the scanner re-judges funding only after a write).
    funding = FundingMap()
    for n in range(SYMBOLS):
        for venue in VENUES:
            inst = instrument(venue, f"C{n}")
            instruments[inst.key] = inst
            funding[inst.key] = FundingUpdate(venue, inst.symbol, D("0.0001"), 1 if venue == "hyperliquid" else 8,
                                              None, None, 0, now)
    rules = AcceptAll()
    for inst in instruments.values():
        book = store.add(inst.venue, inst.symbol, inst.contract_size)
        okx = inst.venue == "okx"
        apply_update(book, BookUpdate(inst.venue, inst.symbol, True, levels(1000.0, -1, okx, tick),
                                      levels(1000.0, 1, okx, tick), 1, None, None, None, 0, now), rules)
    return now, store, instruments, funding, rules


def _stream(instruments, dislocated: float, tick: float = 1.0) -> list:
    rng = random.Random(7)
    keys = list(instruments)
    deltas = []
    for i in range(UPDATES):
        key = rng.choice(keys)
        inst = instruments[key]
        # DISLOCATED of updates move a book by 30 bps, so some scans find (and the gate checks) entries;
        # the book stays dislocated until its own next update.
        shift = 3.0 if rng.random() < dislocated else 0.0
        okx = inst.venue == "okx"
        deltas.append((key, shift > 0, BookUpdate(inst.venue, inst.symbol, True, levels(1000.0 + shift, -1, okx, tick),
                                                   levels(1000.0 + shift, 1, okx, tick), i + 2, None, None, None, 0,
                                                   0.0)))
    return deltas


def _context(now, store, instruments) -> RiskContext:
    return RiskContext(TradingState.ACTIVE, now, {v: D("1e6") for v in VENUES}, {v: D(0) for v in VENUES}, {},
                       {}, 0, D(0), deque(maxlen=1000), D(0), {v: True for v in VENUES}, store, instruments,
                       {v: D(3) for v in VENUES})


def realistic(results: dict[str, float], density: float = REAL_DISLOCATED, quiet: bool = False) -> None:
    """The bot's loop: scan per update, approve entries into open trades, exits out of them.
    `density`: the share of updates that move a book 30 bps (each an opportunity); `quiet`
    prints nothing (the density sweep)."""
    now, store, instruments, funding, rules = _setup(REAL_TICK)
    clock = [now]
    metrics = Metrics()
    scanner = Scanner(store, build_strategies(StrategiesSettings()), metrics, instruments, funding,
                      clock=lambda: clock[0])
    # Limits wide enough that the gate approves what it sees (refused entries are re-proposed on every
    # update of their base: that case is the stress row's).
    risk = RiskSettings(max_position_size_usdt=D("100000"), max_open_positions=SYMBOLS, max_orders_per_minute=600)
    gate = RiskGate(risk, ExecutionSettings(), metrics)
    context = _context(now, store, instruments)
    deltas = _stream(instruments, density, REAL_TICK)
    trades: list[OpenTrade] = []
    # What the bot's TradingService.open_trades hands the scanner: a new tuple whenever the trades change.
    held_trades: tuple[OpenTrade, ...] = ()
    held: set = set()
    screen_ns = eval_ns = gate_ns = 0
    screened_n = dislocations = entries = exits = refused = decisions_n = exit_refusals = exit_attempts = 0
    for i, (key, dislocated, update) in enumerate(deltas):
        t = now + i / UPDATES_PER_S
        clock[0] = context.now = update.recv_ts = t
        dislocations += dislocated
        apply_update(store.books[key], update, rules)
        before = scanner.screened
        t1 = time.perf_counter_ns()
        decisions = scanner.scan((key,), held_trades)
        t2 = time.perf_counter_ns()
        if scanner.screened != before:
            screen_ns += t2 - t1
            screened_n += 1
        else:
            eval_ns += t2 - t1
        decisions_n += len(decisions)
        for decision in decisions:
            if decision.action == "open":
                # The engine: never a venue/symbol already held (decisions of one scan included).
                if any((leg.venue, leg.symbol) in held for leg in decision.legs):
                    continue
                g0 = time.perf_counter_ns()
                approved, _ = gate.approve_entry(decision, context, f"i{i}", (f"a{i}", f"b{i}"))
                gate_ns += time.perf_counter_ns() - g0
                if not approved:
                    refused += 1
                    continue
                entries += 1
                for order in approved:
                    request = order.request
                    pos_key = (request.venue, request.symbol)
                    signed = request.qty * instruments[pos_key].contract_size
                    context.positions[pos_key] = context.positions.get(pos_key, D(0)) + (
                        signed if request.side == "buy" else -signed)
                    context.mark_prices[pos_key] = request.price  # the engine's marks: every held symbol has one
                    held.add(pos_key)
                trades.append(OpenTrade(f"t{i}", decision.strategy, decision.base, decision.legs, t, decision.edge_bps))
                held_trades = tuple(trades)
                context.open_trades = len(trades)
            else:
                trade = next(tr for tr in trades if tr.trade_id == decision.trade_id)
                g0 = time.perf_counter_ns()
                answers = []
                for n, leg in enumerate(decision.legs):
                    inst = instruments[(leg.venue, leg.symbol)]
                    request = OrderRequest(leg.venue, leg.symbol, leg.side, inst.base_to_venue_qty(leg.base_qty),
                                           gate.limit_price(inst, leg.side, leg.ref_price), f"x{i}.{n}",
                                           reduce_only=True)
                    answers.append(gate.approve_order(request, "exit", context, f"x{i}"))
                gate_ns += time.perf_counter_ns() - g0
                exit_attempts += 1
                refused_legs = sum(1 for answer in answers if isinstance(answer, Refusal))
                if refused_legs:
                    # The engine keeps the trade and the next scan of its base proposes the close again
                    # (here: a leg's book older than max_book_age_s).
                    exit_refusals += refused_legs
                    continue
                exits += 1
                for leg in trade.legs:
                    context.positions.pop((leg.venue, leg.symbol), None)
                    context.mark_prices.pop((leg.venue, leg.symbol), None)
                    held.discard((leg.venue, leg.symbol))
                trades.remove(trade)
                held_trades = tuple(trades)
                context.open_trades = len(trades)
    n = len(deltas)
    total = (screen_ns + eval_ns + gate_ns) / n / 1000
    # What one opportunity costs on top of the screen: its evaluations (entry, exit, and the held base's
    # updates that could not be screened) and its gate calls, per trade entered.
    per_trade = (eval_ns + gate_ns) / max(entries, 1) / 1000
    if quiet:
        results[f"density_{density}"] = total
        results[f"density_{density}_entries"] = entries
        return
    print(f"REALISTIC stream: {n} updates at {UPDATES_PER_S:.0f}/s; {dislocations / n:.1%} dislocate a book, "
          f"{entries / n:.2%} give an entry ({entries}), {exits / n:.2%} an exit ({exits}); "
          f"{refused} entries refused, {exit_refusals} exit legs refused; {len(trades)} trades still open")
    print(f"  screen only ({screened_n / n:.1%} of updates): {screen_ns / max(screened_n, 1) / 1000:8.2f} us each, "
          f"{screen_ns / n / 1000:.2f} us/update")
    print(f"  full evaluation ({(n - screened_n) / n:.1%}):  {eval_ns / max(n - screened_n, 1) / 1000:8.2f} us each, "
          f"{eval_ns / n / 1000:.2f} us/update")
    print(f"  risk gate (entry / close attempts): {gate_ns / max(entries + refused + exit_attempts, 1) / 1000:8.2f} us each, "
          f"{gate_ns / n / 1000:.2f} us/update")
    print(f"  scanner + gate per update:          {total:8.2f} us/update   (target <= 1 us)")
    print(f"  per trade (its evaluations + gate calls, entry to exit): {per_trade:8.2f} us")
    results["scan_gate_us"] = total
    results["quiet_update_us"] = screen_ns / max(screened_n, 1) / 1000
    results["per_trade_us"] = per_trade
    results["entries"] = entries
    results["exits"] = exits
    results["screen_us"] = screen_ns / n / 1000
    results["eval_us"] = eval_ns / n / 1000
    results["gate_us"] = gate_ns / n / 1000
    results["dislocated_pct"] = dislocations / n * 100
    results["entry_pct"] = entries / n * 100
    results["exit_pct"] = exits / n * 100


def stress(results: dict[str, float]) -> None:
    """The old mix: every entry a scan finds goes through the gate, nothing is ever held (so a persisting
    dislocation is re-entered on every update of its base). Not what the bot does; kept as the slow case."""
    now, store, instruments, funding, rules = _setup()
    metrics = Metrics()
    scanner = Scanner(store, build_strategies(StrategiesSettings()), metrics, instruments, funding, clock=lambda: now)
    gate = RiskGate(RiskSettings(max_position_size_usdt=D("100000")), ExecutionSettings(), metrics)
    context = _context(now, store, instruments)
    deltas = _stream(instruments, DISLOCATED)
    apply_ns = scan_ns = gate_ns = 0
    entries = 0
    for i, (key, _, update) in enumerate(deltas):
        update.recv_ts = now
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
    print(f"STRESS (old mix, nothing held, every entry gated): {n} updates")
    print(f"  book apply (reference, not ours):   {apply_ns / n / 1000:8.2f} us/update")
    print(f"  scanner, one scan per update:       {scan_ns / n / 1000:8.2f} us/update")
    print(f"  risk gate (approve_entry):          {gate_ns / max(entries, 1) / 1000:8.2f} us/entry "
          f"({entries} entries, {gate_ns / n / 1000:.2f} us/update amortised)")
    print(f"  scanner + gate per update:          {(scan_ns + gate_ns) / n / 1000:8.2f} us/update")
    results["stress_scan_gate_us"] = (scan_ns + gate_ns) / n / 1000
    results["gate_us_per_entry"] = gate_ns / max(entries, 1) / 1000
    results["stress_entries"] = entries

    # quiet market: books back in line (reported to the scanner, as the store's dirty set does), no
    # strategy finds anything (the common case)
    for inst in instruments.values():
        okx = inst.venue == "okx"
        apply_update(store.books[inst.key], BookUpdate(inst.venue, inst.symbol, True, levels(1000.0, -1, okx),
                                                       levels(1000.0, 1, okx), 10**9, None, None, None, 0, now), rules)
    scanner.scan(list(instruments), ())
    t0 = time.perf_counter_ns()
    for key, _, _ in deltas:
        scanner.scan((key,), ())
    results["quiet_scan_us"] = (time.perf_counter_ns() - t0) / n / 1000
    print(f"scanner, quiet market, per update:    {results['quiet_scan_us']:8.2f} us/update")

    # conflated: bursts of 200 updates between scans (what Scanner.run does under load)
    burst = 200
    scan_ns = 0
    for start in range(0, n, burst):
        changed = set()
        for key, _, update in deltas[start:start + burst]:
            apply_update(store.books[key], update, rules)
            changed.add(key)
        t0 = time.perf_counter_ns()
        scanner.scan(changed, ())
        scan_ns += time.perf_counter_ns() - t0
    print(f"scanner, conflated bursts of {burst}:     {scan_ns / n / 1000:8.2f} us/update")
    results["conflated_scan_us"] = scan_ns / n / 1000


def timer_overhead_us() -> float:
    """What one timed region adds by itself (two perf_counter_ns calls), us; min of repeats."""
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter_ns()
        for _ in range(10_000):
            time.perf_counter_ns()
            time.perf_counter_ns()
        best = min(best, (time.perf_counter_ns() - t0) / 10_000 / 1000)
    return best


def main() -> dict[str, float]:
    """Run the scanner bench REPEATS times, print the last run and the medians, and return the median
    figures (us per update) for bench/run.py.

    Keys: scan_gate_us (realistic total), screen_us, eval_us, gate_us (its parts, per update), entries,
    exits, dislocated_pct, entry_pct, exit_pct (realistic stream); stress_scan_gate_us, gate_us_per_entry,
    stress_entries (stress row); quiet_scan_us, conflated_scan_us; timer_us (what one timed region adds)."""
    runs: list[dict[str, float]] = []
    sink = io.StringIO()
    for n in range(REPEATS):
        results: dict[str, float] = {}
        last = n == REPEATS - 1
        with contextlib.redirect_stdout(sys.stdout if last else sink):
            if last:
                print(f"books: {len(VENUES)} venues x {SYMBOLS} symbols, {LEVELS} levels/side (run {n + 1} of {REPEATS})")
            realistic(results)
            stress(results)
        runs.append(results)
    results = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    results["timer_us"] = timer_overhead_us()
    # Opportunity density: the same loop with more or fewer of the updates dislocating a book (median of
    # REPEATS runs each, the densities interleaved).
    sweeps: list[dict[str, float]] = []
    for _ in range(REPEATS):
        sweeps.append({})
        for density in DENSITIES:
            realistic(sweeps[-1], density, quiet=True)
    sweep = {key: statistics.median(run[key] for run in sweeps) for key in sweeps[0]}
    results.update(sweep)
    print(f"opportunity density (share of updates that dislocate a book by 30 bps; 0.5% is the main row; median of "
          f"{REPEATS}; few trades carry their first-time costs: caches filled, a refusal's first log line):")
    print("| dislocating updates | trades entered | scanner + gate us/update |")
    print("|--------------------:|---------------:|-------------------------:|")
    for density in DENSITIES:
        print(f"| {density:18.2%} | {sweep[f'density_{density}_entries']:14.0f} | {sweep[f'density_{density}']:24.2f} |")
    print(f"median of {REPEATS} runs: a quiet update (screened) {results['quiet_update_us']:.2f} us; one trade "
          f"{results['per_trade_us']:.1f} us of evaluations + gate, entry to exit")
    print(f"median of {REPEATS} runs: scanner + gate {results['scan_gate_us']:.2f} us/update realistic "
          f"(screen {results['screen_us']:.2f} + evaluation {results['eval_us']:.2f} + gate {results['gate_us']:.2f}; "
          f"each timed scan/gate call carries {results['timer_us']:.2f} us of timer), "
          f"{results['stress_scan_gate_us']:.2f} us/update stress; gate {results['gate_us_per_entry']:.2f} us/entry; "
          f"quiet {results['quiet_scan_us']:.2f}, conflated {results['conflated_scan_us']:.2f} us/update")
    return results


if __name__ == "__main__":
    main()
