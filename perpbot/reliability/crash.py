"""Crash recovery: SIGKILL `python -m perpbot.cli run` while it trades against a simulator running as its
OWN process (`perpbot sim`), restart it on the same journal, and check that nothing was lost or doubled
and that the restarted bot repairs what the kill left: venue orders all journalled and unique, venue
fills == journal fills, local positions == venue positions, every open trade in the journal == what the
venues hold, no exit refused as "does not reduce position", no naked leg and no unaccounted sub-lot
residue at the venues.

Kill points (rotated, `KILL_POINTS`):
- `random`: a random moment of trading;
- `exit_settled`: partial-fill faults on BOTH legs' venues of an open trade (ratios chosen so both legs
  fill the same part), killed right after the trade's exit orders settled: a partial exit the journal
  must keep;
- `repair_in_flight` / `repair_settled`: partial-fill faults on both legs with different ratios, so the
  exit (or, failing an open trade, an entry) needs a hedge/unwind; killed as soon as that corrective
  order is journalled (in flight) or as soon as it settled;
- `residue`: three partial fills on the finer-lot leg of an open trade, so what the legs policy is left
  with at the end is below one lot of the coarser venue; killed right after the exit intent finished;
- `startup_repair`: as `repair_in_flight`, then the restarted bot is killed again as soon as its
  start-up journals a corrective order (a crash during the repair of a crash);
- `fill_pushed`: killed right after a fill frame of a private stream (OKX, Bybit, Binance: relayed by
  `perpbot.reliability.relay`) was handed to the bot's socket, 0-10 ms later, i.e. between the pushed
  fill and its journal write (each kill is classified afterwards from the journal: the trade id not in
  `venue_trades` yet / noted there but the order not booked / already booked). The restarted bot must
  learn the fill over REST (or the stream) and book it once.

Measured per restart: restart -> ACTIVE (process start to a reconciled, trading state), restart -> repair
(process start to the first corrective order for exposure a kill left: hedge/unwind/repair orders
journalled after the restart) and the venue-seen unhedged notional x seconds from the kill to ACTIVE."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

from perpbot.reliability import invariants as inv
from perpbot.reliability.crash_rig import NOT_CORRECTIVE, CrashRig, _env, _query, read_journal, read_open_trades
from perpbot.reliability.kill_points import KILL_POINTS, aim, pushed_fill_state

# The rig (processes, configuration, journal reads) lives in perpbot.reliability.crash_rig and the kill
# points in perpbot.reliability.kill_points; CrashRig, _env and KILL_POINTS are re-exported here.
__all__ = ["KILL_POINTS", "CrashResult", "CrashRig", "Restart", "_env", "run_crash"]

log = logging.getLogger("perpbot.reliability")


@dataclasses.dataclass(slots=True)
class CrashResult:
    seed: int
    kills: int = 0
    kills_mid_trade: int = 0  # a kill while the journal held an unresolved order
    orders: int = 0
    fills: int = 0
    violations: list[str] = dataclasses.field(default_factory=list)
    recovery_s: list[float] = dataclasses.field(default_factory=list)  # restart -> ACTIVE again
    residual_exposure_usdt: list[str] = dataclasses.field(default_factory=list)
    # kill point -> [kills aimed there, kills that hit the aimed-at moment (else killed at the deadline)]
    kill_points: dict[str, list[int]] = dataclasses.field(default_factory=dict)
    partial_exits: int = 0  # exits the fault filled in part before the kill
    repair_s: list[float] = dataclasses.field(default_factory=list)  # restart -> first corrective order
    repairs_needed: int = 0  # restarts facing exposure a kill left mid-trade
    repairs_without_order: int = 0  # ... that was gone by ACTIVE without any corrective order
    repairs_missing: int = 0  # ... still there after ACTIVE, no corrective order
    restart_unhedged_usdt_s: list[str] = dataclasses.field(default_factory=list)  # kill -> ACTIVE
    reduce_only_refusals: int = 0
    halts: list[str] = dataclasses.field(default_factory=list)
    operator: list[str] = dataclasses.field(default_factory=list)
    faults_fired: dict[str, int] = dataclasses.field(default_factory=dict)
    kill_log: list[str] = dataclasses.field(default_factory=list)  # per kill: point, hit or not, what
    startup_repair_kills: int = 0  # second kills that landed on the restarted bot's start-up repair
    # fill_pushed kills by what the journal held of the pushed fill at the kill: "not journalled" (trade id
    # not in venue_trades), "noted, not booked" (in venue_trades, the order's booked fill short of it), "booked"
    pushed_fill_kills: dict[str, int] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(slots=True)
class Restart:
    """What one restart faced and how fast it recovered (filled in after the next kill)."""

    number: int
    started_wall: float  # time.time() when the process was started (the journal's clock)
    exposed: set[str]  # bases a kill left exposed mid-trade: they need a corrective order
    sending: set[str]  # intents still 'sending' at the kill
    active_wall: float = 0.0
    exposure_at_active: dict[str, Decimal] = dataclasses.field(default_factory=dict)  # in no open trade


def _exposed_bases(accounts: dict[str, Any], trades: list[dict[str, Any]], lots: dict[tuple[str, str], Decimal],
                   mid_trade: set[str]) -> set[str]:
    """Bases a kill left exposed: net venue exposure the journal's open trades do not account for (a
    residue kept on a trade is accounted for), of a base traded by an interrupted intent or of at least
    one lot of the base's coarsest venue."""
    coarse = inv.coarse_lots(lots)
    out = set()
    for base, (_, unexplained) in inv.base_residue(accounts, trades).items():
        if unexplained and (base in mid_trade or abs(unexplained) >= coarse.get(base, Decimal(0))):
            out.add(base)
    return out


def _account_repair(rig: CrashRig, restart: Restart, result: CrashResult) -> None:
    """After the restarted bot ran (it has since been killed, or settled): restart -> first corrective
    order for the bases the kill before it left exposed."""
    if not restart.exposed:
        return
    result.repairs_needed += 1
    horizon = (restart.active_wall or time.time()) + 5.0
    rows = _query(rig.journal, "SELECT symbol, venue, purpose, created_ts FROM orders WHERE created_ts >= ? "
                  "AND created_ts <= ? ORDER BY created_ts", (restart.started_wall, horizon))
    for symbol, venue, purpose, created in rows:
        if purpose not in NOT_CORRECTIVE and inv.base_of(venue, symbol) in restart.exposed:
            result.repair_s.append(round(created - restart.started_wall, 3))
            return
    if any(restart.exposure_at_active.get(b) for b in restart.exposed):
        result.repairs_missing += 1
        log.warning("restart %d: %s still exposed at ACTIVE, no corrective order", restart.number,
                    sorted(restart.exposed))
    else:
        result.repairs_without_order += 1


async def _operator(rig: CrashRig, result: CrashResult, number: int, when: str) -> None:
    """An operator's step when the bot is HALTED: close-all if the venues hold naked exposure, then resume."""
    state = await rig.state()
    if not state or state["state"] != "HALTED":
        return
    result.halts.append(f"kill {number} ({when}): {state['reason']}")
    log.warning("crash %d: bot HALTED %s: %s", number, when, state["reason"])
    exposure, _ = await rig.exposure()
    naked = sum(exposure.values(), Decimal(0))
    flattened = None
    if naked:
        flattened = await rig.post("positions/close-all")
    resumed = await rig.post("trading/resume")
    answer = flattened.get("state", "done") if isinstance(flattened, dict) else flattened
    step = f"close-all ({answer}), " if naked else ""
    result.operator.append(f"kill {number} ({when}): HALTED ({state['reason']}): {step}resume -> "
                           f"{resumed.get('state', resumed) if isinstance(resumed, dict) else resumed}; "
                           f"naked before {naked:.1f} USDT")


async def run_crash(workdir: Path, kills: int, seed: int, min_s: float = 0.3, max_s: float = 3.0,
                    check_every: int = 1, points: tuple[str, ...] = KILL_POINTS) -> CrashResult:
    """`kills` SIGKILLs, rotating over the kill points `points` (random moments: uniform in [min_s, max_s]
    after ACTIVE)."""
    rng = random.Random(seed)
    result = CrashResult(seed)
    async with CrashRig(workdir / f"crash-{seed}", seed) as rig:
        await rig.start_bot()
        naked_since: float | None = None  # when the venues first showed exposure no leg hedged
        restart: Restart | None = None
        for number in range(1, kills + 1):
            point = points[(number - 1) % len(points)]
            aimed = await aim(rig, point, rng, min_s, max_s)
            refused = inv.metric_sum(rig.metrics, "perpbot_risk_refusals_total", reason="reduce_only")
            refusals = max(0.0, refused - rig.refusals_reported)
            rig.kill_bot()
            killed_at = time.monotonic()
            with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError, RuntimeError):
                await rig.admin.clear()
            counts = result.kill_points.setdefault(point, [0, 0])
            counts[0] += 1
            counts[1] += int(aimed.hit)
            result.partial_exits += int(aimed.partial_exit)
            partial = " partial exit" if aimed.partial_exit else ""
            note = f": {aimed.note}" if aimed.note else ""
            if aimed.pushed is not None:
                state = pushed_fill_state(rig.journal, aimed.pushed)
                result.pushed_fill_kills[state] = result.pushed_fill_kills.get(state, 0) + 1
                note += f" ({state} at the kill)"
            result.kill_log.append(f"{number} {point} {'hit' if aimed.hit else 'missed'}{partial}{note}")
            log.info("kill %s", result.kill_log[-1])
            result.kills += 1
            violations = inv.check_exits_not_refused(refusals, f"by the bot killed at kill {number}")
            rig.refusals_total += refusals
            if restart is not None:
                _account_repair(rig, restart, result)
            orders, _, _ = read_journal(rig.journal)
            if any(o.status in ("pending", "unknown", "open") for o in orders):
                result.kills_mid_trade += 1
            # Right after the kill: whatever the venue holds must already be in the journal.
            quick, accounts = await rig.check(full=False)
            violations += quick
            meter = inv.ExposureMeter()
            meter.sample(killed_at, sum(inv.net_exposure_usdt(accounts, inv.marks_from(accounts)).values(),
                                        Decimal(0)))
            if point == "startup_repair":
                # A second kill, while the restarted bot repairs what the first one left.
                second = await rig.kill_in_startup_repair(meter)
                result.startup_repair_kills += int(second.startswith("repair"))
                result.kill_log[-1] += f"; second kill at start-up: {second}"
                with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError, RuntimeError):
                    await rig.admin.clear()
                quick, accounts = await rig.check(full=False)
                violations += quick
            sending = {r[0] for r in _query(rig.journal, "SELECT intent_id FROM intents WHERE status='sending'")}
            mid_bases = {r[0] for r in _query(rig.journal, "SELECT base FROM intents WHERE status='sending'")}
            exposed = _exposed_bases(accounts, read_open_trades(rig.journal), rig.lots, mid_bases)
            restart = Restart(number, time.time(), exposed, sending)
            result.recovery_s.append(round(await rig.start_bot(meter), 3))
            restart.active_wall = time.time()
            exposure, accounts = await rig.exposure()
            meter.sample(time.monotonic(), sum(exposure.values(), Decimal(0)))
            restart.exposure_at_active = {b: unexplained for b, (_, unexplained) in
                                          inv.base_residue(accounts, read_open_trades(rig.journal)).items()
                                          if unexplained}
            result.restart_unhedged_usdt_s.append(str(round(meter.usdt_seconds, 1)))
            violations += inv.check_unhedged(meter.usdt_seconds, Decimal(rig.budget),
                                             "exposure at the venues from the kill to ACTIVE")
            if number % check_every == 0 or number == kills:
                await asyncio.sleep(1.5)  # the restarted bot trades (and exits) before the check
                await rig.settle()
                full, accounts = await rig.check(full=True)
                violations += full
                exposure = inv.net_exposure_usdt(accounts, inv.marks_from(accounts))
                naked = sum(exposure.values(), Decimal(0))
                result.residual_exposure_usdt.append(str(naked))
                # A leg left naked by the kill must be hedged or unwound by the restarted bot: exposure
                # still there this long after the kill is charged against the unhedged budget.
                naked_since = (naked_since or killed_at) if naked else None
                naked_for = time.monotonic() - naked_since if naked_since is not None else 0.0
                violations += inv.check_unhedged(naked * Decimal(str(round(naked_for, 3))),
                                                 Decimal(rig.budget), "exposure left at the venues after a restart")
                await _operator(rig, result, number, "at the check")
                await rig.post("trading/resume")
            else:
                await _operator(rig, result, number, "after the restart")
            result.violations += [f"kill {number} ({point}): {v}" for v in violations]
        if restart is not None:
            _account_repair(rig, restart, result)
        await rig.settle()
        orders, fills, _ = read_journal(rig.journal)
        result.orders, result.fills = len(orders), len(fills)
        result.reduce_only_refusals = int(rig.refusals_total)
        fired = await rig.admin.fired()
        result.faults_fired = {f"{venue} {kind}": n for (venue, kind), n in sorted(fired.items())}
    return result
