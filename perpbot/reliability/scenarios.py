"""Hostile-venue scenarios: every simulator fault kind on every venue, alone and combined, injected
while the bot trades, each followed by recovery measurement and the invariant checks."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

from perpbot.reliability import invariants as inv
from perpbot.reliability.live import VENUES, LiveBot, wait_for
from perpbot.sim.faults import MARKET_FAULTS, TRADING_FAULTS

log = logging.getLogger("perpbot.reliability")

# Faults after which a book could be wrong: the book must be invalidated and resynced.
INTEGRITY_FAULTS = ("gap", "bad_checksum", "malformed")
TIMED_FAULTS = ("stall", "maintenance")

# Per kind: how many occurrences (or seconds, for timed faults) and the parameters.
FAULT_SHAPES: dict[str, dict[str, Any]] = {
    "drop": {"count": 1},
    "stall": {"duration_s": 1.5},
    "gap": {"count": 2},
    "bad_checksum": {"count": 2},
    "malformed": {"count": 2},
    "delay": {"count": 20, "params": {"ms": 300}},
    "reorder": {"count": 3},
    "price_jump": {"count": 1, "params": {"bps": 60}},
    "rest_5xx": {"count": 2, "params": {"on": "order"}},
    "timeout": {"count": 1, "params": {"hold_s": 3}},
    "rate_limit": {"count": 2, "params": {"on": "order", "retry_after_s": 1}},
    "reject": {"count": 2},
    "insufficient_margin": {"count": 2},
    "partial_fill": {"count": 2, "params": {"ratio": "0.5"}},
    "lost_response": {"count": 2},
    "maintenance": {"duration_s": 1.5, "params": {"on": "order"}},
}

COMBINATIONS: dict[str, list[tuple[str, str]]] = {
    "gap+lost_response": [("gap", "binance"), ("lost_response", "okx")],
    "partial_fill+timeout": [("partial_fill", "bybit"), ("timeout", "hyperliquid")],
    "bad_checksum+reject+rate_limit": [("bad_checksum", "okx"), ("reject", "binance"), ("rate_limit", "bybit")],
    "drop+maintenance": [("drop", "hyperliquid"), ("maintenance", "okx")],
    "malformed+insufficient_margin+delay": [("malformed", "bybit"), ("insufficient_margin", "okx"),
                                            ("delay", "binance")],
}


def fault(kind: str, venue: str) -> dict[str, Any]:
    return {"kind": kind, "venue": venue, **FAULT_SHAPES[kind]}


@dataclasses.dataclass(slots=True)
class Scenario:
    name: str
    faults: list[dict[str, Any]]


@dataclasses.dataclass(slots=True)
class ScenarioResult:
    name: str
    runs: int = 0
    faults_fired: int = 0
    violations: list[str] = dataclasses.field(default_factory=list)
    halts: list[str] = dataclasses.field(default_factory=list)
    books_recovery_s: list[float] = dataclasses.field(default_factory=list)
    active_recovery_s: list[float] = dataclasses.field(default_factory=list)
    unhedged_usdt_seconds: Decimal = Decimal(0)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "runs": self.runs, "faults_fired": self.faults_fired,
                "violations": list(self.violations), "halts": list(self.halts),
                "books_recovery_s": max(self.books_recovery_s, default=None),
                "active_recovery_s": max(self.active_recovery_s, default=None),
                "unhedged_usdt_seconds": str(self.unhedged_usdt_seconds)}


def scenarios(short: bool) -> list[Scenario]:
    """Short: each kind on all four venues at once (one phase per kind). Full: each kind on each venue
    separately. Both end with the combinations."""
    out: list[Scenario] = []
    for kind in MARKET_FAULTS + TRADING_FAULTS:
        if short:
            out.append(Scenario(f"{kind} @ all venues", [fault(kind, v) for v in VENUES]))
        else:
            out += [Scenario(f"{kind} @ {v}", [fault(kind, v)]) for v in VENUES]
    out += [Scenario(f"combo {name}", [fault(k, v) for k, v in pairs]) for name, pairs in COMBINATIONS.items()]
    return out


async def _sample_exposure(bot: LiveBot, meter: inv.ExposureMeter, stop: asyncio.Event) -> None:
    """The venue's own view of unhedged notional, sampled while the phase runs."""
    while not stop.is_set():
        try:
            accounts = await bot.admin.accounts()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            log.warning("exposure sample failed: %s", exc)  # the next sample holds the last value longer
            await asyncio.sleep(0.25)
            continue
        meter.sample(time.monotonic(), sum(inv.net_exposure_usdt(accounts, inv.marks_from(accounts)).values(),
                                           Decimal(0)))
        try:
            await asyncio.wait_for(stop.wait(), 0.25)
        except asyncio.TimeoutError:
            pass


async def run_phase(bot: LiveBot, scenario: Scenario, result: ScenarioResult, fault_window_s: float = 4.0,
                    recovery_timeout_s: float = 20.0) -> None:
    """Inject the scenario's faults during trading, end them, wait for recovery, check invariants."""
    admin = bot.admin
    fired_before = await admin.fired()
    invalid_before, resyncs_before = bot.invalidations(), bot.resyncs()
    unhedged_before = bot.engine.unhedged_usdt_seconds
    meter, stop = inv.ExposureMeter(), asyncio.Event()
    sampler = asyncio.get_running_loop().create_task(_sample_exposure(bot, meter, stop))
    try:
        for spec in scenario.faults:
            await admin.inject(spec)
        wanted = {(f["venue"], f["kind"]): f.get("count", 1) for f in scenario.faults}
        deadline = time.monotonic() + max([fault_window_s] + [f.get("duration_s") or 0 for f in scenario.faults])
        while time.monotonic() < deadline:
            fired = await admin.fired()
            counted_done = all(fired.get(key, 0) - fired_before.get(key, 0) >= n for key, n in wanted.items()
                               if key[1] not in TIMED_FAULTS)
            timed_left = any(f.get("duration_s") for f in scenario.faults)
            if counted_done and not timed_left:
                break
            await asyncio.sleep(0.1)
        await admin.clear()  # the venue recovers now
        fault_end = time.monotonic()
        fired = await admin.fired()
        fired_delta = {k: fired.get(k, 0) - fired_before.get(k, 0) for k in wanted}
        result.faults_fired += sum(fired_delta.values())
        books_ok = await wait_for(bot.books_valid, recovery_timeout_s)
        books_at = time.monotonic()
        state_ok = await wait_for(lambda: bot.engine.state in ("ACTIVE", "HALTED"), recovery_timeout_s)
        state_at = time.monotonic()
        # Give trades already under way (a held timeout reply, a resolve by query) time to settle.
        violations, extra = await bot.quiescent_check()
    finally:
        stop.set()
        await sampler
    if books_ok:
        result.books_recovery_s.append(round(books_at - fault_end, 3))
    else:
        invalid = [f"{b.venue} {b.symbol}: {b.invalid_reason}" for b in bot.books() if not b.valid]
        violations.append(f"books still invalid {recovery_timeout_s}s after the fault ended: {invalid}")
    state, reason = bot.engine.state, bot.engine.state_reason
    if state == "ACTIVE" and state_ok:
        result.active_recovery_s.append(round(state_at - fault_end, 3))
    violations += inv.check_state(state, reason, state_ok)
    integrity = [v for (v, k), n in fired_delta.items() if k in INTEGRITY_FAULTS and n > 0]
    violations += inv.check_books_invalidated(invalid_before, bot.invalidations(), resyncs_before, bot.resyncs(),
                                              integrity)
    budget = Decimal(bot.settings.risk.unhedged_budget_usdt_seconds)
    violations += inv.check_unhedged(meter.usdt_seconds, budget, "exposure seen at the venues")
    violations += inv.check_unhedged(bot.engine.unhedged_usdt_seconds - unhedged_before, budget,
                                      "exposure the engine accounted")
    result.unhedged_usdt_seconds += meter.usdt_seconds
    result.runs += 1
    result.violations += [f"{scenario.name}: {v}" for v in violations]
    if state == "HALTED":
        result.halts.append(reason)
        # The operator's way back (POST /api/trading/resume) so the next scenario trades again.
        await bot.engine.resume()
    log.warning("scenario %s: fired %s, violations %d, state %s", scenario.name, fired_delta, len(violations), state)


async def run_hostile(workdir: Path, short: bool = True, seeds: tuple[int, ...] = (7,),
                      only: str | None = None) -> list[ScenarioResult]:
    """Every scenario, one bot per seed, phases back to back while it trades."""
    results: dict[str, ScenarioResult] = {}
    for seed in seeds:
        async with LiveBot(workdir / f"hostile-{seed}", seed) as bot:
            for scenario in scenarios(short):
                if only and only not in scenario.name:
                    continue
                result = results.setdefault(scenario.name, ScenarioResult(scenario.name))
                await run_phase(bot, scenario, result)
    return list(results.values())
