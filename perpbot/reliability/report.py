"""Writes docs/RELIABILITY.md from the hostile-venue and crash-recovery results."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from perpbot.reliability.crash import CrashResult
from perpbot.reliability.invariants import summary
from perpbot.reliability.scenarios import ScenarioResult

HEADER = """# Reliability: hostile venues and crash recovery

Generated on {when} (UTC) from:
{command}

Rerun them to refresh this page (`--save` each run, then `python -m perpbot.reliability report --load
<file> ...`); the pytest versions (`python -m pytest tests/reliability -q`) run the short forms and
fail on any violation or on a fault that never fired.

## How it works
- **Hostile venues** (`perpbot/reliability/scenarios.py`): the whole bot (App: in-process simulator,
  feeds, scanner, risk gate, engine, SQLite journal) trades against the simulator; each scenario
  injects faults through the simulator's admin API (`POST /admin/faults`) while it trades, clears
  them (the venue recovers), waits for recovery and checks the invariants under the engine's trade
  lock with nothing in flight. Full mode runs each of the 23 kinds on each venue separately (92,
  of which 7 cannot occur on that venue's wire and are listed n/a: bad_checksum off OKX, the only
  venue with a book checksum; gap on Hyperliquid, whose book frames are unsequenced snapshots;
  listenkey_expire off Binance, the only private stream with a listen key) plus the combinations;
  short mode (pytest) runs each kind once on a rotating venue plus two combinations. The 23 kinds
  are the 16 market/trading ones and the 7 private-stream ones (`perpbot.sim.faults.PRIVATE_FAULTS`:
  private_drop, private_stall x3 events, fill_duplicate x2, fill_out_of_order x2, listenkey_expire,
  stream_lag x4 of 1.5 s, rest_lag x3 of 1.5 s: the lags exceed `execution.stream_confirm_timeout_s`,
  so the sender falls back to REST and the late push must not book again).
  Trading and private-stream faults (all but listenkey_expire, which the simulator's key watch takes
  at once) only fire when an order reaches the venue, so the suite provokes one: a price jump
  on that venue (`POST /admin/jump`, +-90 bps on every symbol, every 1.5 s) until the simulator's
  `faults_fired` counter shows the fault fired (deadline 30 s; a fault that never fired is a
  violation). Maintenance stays on until it fired and then 1.5 s more. Faults fired = the simulator's
  own counters.
- **Operator steps**: every scenario starts from an ACTIVE bot. After a HALT (or a naked leg left at
  the venues) the suite does what an operator does: close-all (repeated while a flatten failed),
  then resume; each such step is listed below with the HALT reason.
- **Crash recovery** (`perpbot/reliability/crash.py`): the simulator runs as its own process
  (`perpbot sim`), the bot as `python -m perpbot.cli run` (mode live, venue URLs pointing at the
  simulator), SIGKILLed and restarted on the same journal. Kill points rotate: `random` (a random
  moment of trading); `exit_settled` (partial-fill faults on both legs' venues of an open trade, both
  legs filling the same part, killed right after the exit orders settled); `repair_in_flight` /
  `repair_settled` (partial fills of different ratios on both legs, killed as soon as the hedge/unwind
  is journalled, or as soon as it settled; an entry's when no trade is open); `residue` (three partial
  fills on the finer-lot leg, so the legs policy ends below one lot of the coarser venue; killed after
  the exit finished); `startup_repair` (as `repair_in_flight`, then the restarted bot killed again as
  soon as its start-up journals a corrective order); `fill_pushed` (killed 0-10 ms after a fill frame
  of OKX's, Bybit's or Binance's private stream, relayed through the rig, reached the bot's socket:
  between the pushed fill and its journal write; each such kill is classified from the journal left
  behind). Trades hold 2-3 s at most, so exits come often.
  Restart -> ACTIVE: process start to a reconciled trading state; restart -> repair: process start to
  the first corrective order (hedge/unwind/repair) for a base a kill left exposed mid-trade.
- **Invariants** (`perpbot/reliability/invariants.py`, pure): local positions == the venue's; every
  venue order's client id is in the journal's orders table and used once; venue fills == journal fills
  per order; per order the journal holds final, its booked filled quantity (orders table) == the venue
  order's filled quantity for that client id (a fill pushed twice, late or out of order, or learnt
  over REST while the stream was down, neither adds to the order nor goes missing); venue fees ==
  journal fees per order, exactly; unhedged notional x seconds (measured from the venues' positions,
  and as the engine accounted it) within `risk.unhedged_budget_usdt_seconds`; after gap / bad_checksum / malformed the
  venue's books were invalidated and a resync counted; after recovery the bot is ACTIVE, or HALTED with
  a reason; in the hostile runs, a periodic reconciliation that had to correct a local position is also
  a violation (it would otherwise hide drift). Crash runs add, after each checked restart: the journal's
  open trades hold what the venues hold (per venue/symbol, within one lot of the base's coarsest venue);
  no order refused as "does not reduce position" (`perpbot_risk_refusals_total{{reason="reduce_only"}}`,
  scraped from every bot process before its kill); per base, the venues' net position is below one lot
  of the coarsest venue (else a naked leg, unless HALTED), and a sub-lot residue is carried by the
  journal's open trades or reported by the bot (a `*residue*` gauge or the unhedged notional); the
  venue-seen unhedged notional x seconds from each kill to ACTIVE within the unhedged budget.
- Recovery time: from the moment the faults were cleared to all books valid / state ACTIVE (0 when the
  bot had already recovered before the fault window closed; "-" when it ended HALTED). "fired after"
  is the time from injection until every fault of the scenario had fired.
"""


FINDINGS_PATH = Path(__file__).with_name("findings.md")


def _fmt(value: Any) -> str:
    return "-" if value is None else str(value)


def _mm(values: list[float]) -> str:
    median, top = summary(values)
    return "-" if median is None else f"{median:.1f} / {top:.1f}"


KINDS = (
    ("reduce-only orders refused", "exit/unwind refused as 'does not reduce position'"),
    ("trades vs venue", "open trade in the journal != venue position"),
    ("unhedged residue", "sub-lot residue in no trade and not reported"),
    ("naked ", "naked leg (a coarse lot or more) at the venues"),
    ("over the budget", "unhedged notional x seconds over the budget"),
    ("position ", "local position != venue"),
    ("order fills ", "journal order's booked fill != venue order's filled"),
    ("fees ", "venue fees != journal fees"),
    ("fills ", "venue fills != journal fills"),
    ("venue order", "venue order not journalled / sent twice"),
)


def violation_kinds(violations: list[str]) -> dict[str, int]:
    """Violations counted by kind (the text after 'kill N (point): ')."""
    counts: dict[str, int] = {}
    for violation in violations:
        text = violation.split("): ", 1)[-1]
        kind = next((name for marker, name in KINDS if marker in text), "other")
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def _crash_section(crashes: list[CrashResult]) -> list[str]:
    out = ["## Crash recovery (SIGKILL)\n"]
    recovery = [x for c in crashes for x in c.recovery_s]
    repairs = [x for c in crashes for x in c.repair_s]
    points: dict[str, list[int]] = {}
    for c in crashes:
        for point, (aimed, hit) in (c.kill_points or {}).items():
            total = points.setdefault(point, [0, 0])
            total[0] += aimed
            total[1] += hit
    out.append(f"{sum(c.kills for c in crashes)} kills over {len(crashes)} seed(s); "
               f"{sum(c.kills_mid_trade for c in crashes)} with an order unresolved in the journal; "
               f"{sum(c.partial_exits for c in crashes)} with an exit filled in part just before; "
               f"{sum(c.startup_repair_kills for c in crashes)} second kills during a start-up repair; "
               f"{sum(len(c.violations) for c in crashes)} violations. "
               f"Restart -> ACTIVE (median / max): {_mm(recovery)} s over {len(recovery)} restarts; "
               f"restart -> repair (first corrective order): {_mm(repairs)} s over {len(repairs)} restarts "
               f"that needed one ({sum(c.repairs_without_order for c in crashes)} more found the exposure gone "
               f"without an order, {sum(c.repairs_missing for c in crashes)} got no repair by ACTIVE).\n")
    kinds = violation_kinds([v for c in crashes for v in c.violations])
    if kinds:
        out.append("Violations by kind: " + "; ".join(f"{k}: {n}" for k, n in kinds.items()) + ".\n")
    pushed: dict[str, int] = {}
    for c in crashes:
        for state, n in (c.pushed_fill_kills or {}).items():
            pushed[state] = pushed.get(state, 0) + n
    if pushed:
        out.append("fill_pushed kills by what the journal held of the pushed fill at the kill: "
                   + ", ".join(f"{state} {n}" for state, n in sorted(pushed.items())) + ".\n")
    if points:
        out.append("Kill points (kills aimed / hit the aimed-at moment): "
                   + ", ".join(f"{p} {a}/{h}" for p, (a, h) in points.items()) + ".\n")
    out.append("| seed | kills | kills with an order unresolved | partial exits | orders | fills | violations "
               "| restart -> ACTIVE median / max (s) | restart -> repair median / max (s) | repairs n | "
               "kill -> ACTIVE unhedged USDT*s max | reduce-only refusals | HALTs | "
               "residual naked exposure after restarts (USDT) |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for c in crashes:
        residual = max((float(x) for x in c.residual_exposure_usdt), default=0.0)
        unhedged = max((float(x) for x in c.restart_unhedged_usdt_s), default=0.0)
        out.append(f"| {c.seed} | {c.kills} | {c.kills_mid_trade} | {c.partial_exits} | {c.orders} | {c.fills} | "
                   f"{len(c.violations)} | {_mm(c.recovery_s)} | {_mm(c.repair_s)} | {len(c.repair_s)} | "
                   f"{unhedged:.0f} | {c.reduce_only_refusals} | {len(c.halts)} | {residual:.1f} |")
    out.append("")
    steps = [s for c in crashes for s in c.operator]
    if steps:
        out.append("Operator steps after a HALT:\n")
        out += [f"- seed {c.seed}, {s}" for c in crashes for s in c.operator]
        out.append("")
    return out


def render(command: str, hostile: list[ScenarioResult], crashes: list[CrashResult]) -> str:
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    commands = "\n".join(f"- `{c.strip()}`" for c in command.split(" + "))
    out = [HEADER.format(command=commands, when=when)]
    if hostile:
        out.append("## Hostile-venue scenarios\n")
        ran = [r for r in hostile if r.skip is None]
        fired_all = sum(1 for r in ran if r.fired and all(n > 0 for n in r.fired.values()))
        out.append(f"{len(hostile)} scenarios: {len(ran)} run, {len(hostile) - len(ran)} not applicable; "
                   f"every injected fault fired in {fired_all} of {len(ran)}; "
                   f"{sum(r.faults_fired for r in ran)} fault occurrences in all; "
                   f"{sum(len(r.violations) for r in ran)} violations; {sum(len(r.halts) for r in ran)} HALTs; "
                   f"{sum(len(r.operator) for r in ran)} operator close-all + resume.\n")
        out.append("| scenario | runs | faults fired | violations | fired after (s) | books valid after (s) "
                   "| ACTIVE after (s) | venue-seen unhedged USDT*s | HALTs | operator steps |")
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        for r in hostile:
            d = r.as_dict()
            if r.skip:
                out.append(f"| {r.name} | 0 | {r.skip} | - | - | - | - | - | - | - |")
                continue
            fired = ", ".join(f"{k}: {n}" for k, n in r.fired.items()) or "0"
            out.append(f"| {r.name} | {r.runs} | {fired} | {len(r.violations)} | {_fmt(d['fire_s'])} | "
                       f"{_fmt(d['books_recovery_s'])} | {_fmt(d['active_recovery_s'])} | "
                       f"{float(r.unhedged_usdt_seconds):.0f} | {len(r.halts)} | {len(r.operator)} |")
        out.append("")
        steps = [(r.name, h) for r in hostile for h in r.halts] + [(r.name, o) for r in hostile for o in r.operator]
        if steps:
            out.append("HALT reasons and operator steps:\n")
            out += [f"- {name}: {line}" for name, line in steps]
            out.append("")
    if crashes:
        out += _crash_section(crashes)
    out.append(FINDINGS_PATH.read_text(encoding="utf-8"))
    violations = [v for r in hostile for v in r.violations] + [v for c in crashes for v in c.violations]
    out.append(f"## Violations: {len(violations)}\n")
    out += [f"- {v}" for v in violations[:200]]
    out.append("")
    return "\n".join(out)


def write(path: Path, command: str, hostile: list[ScenarioResult], crashes: list[CrashResult]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(command, hostile, crashes), encoding="utf-8")
