"""Writes docs/RELIABILITY.md from the hostile-venue and crash-recovery results."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from perpbot.reliability.crash import CrashResult
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
  lock with nothing in flight. Full mode runs each of the 16 kinds on each venue separately (64,
  of which 4 cannot occur on that venue's wire and are listed n/a: bad_checksum off OKX, the only
  venue with a book checksum; gap on Hyperliquid, whose book frames are unsequenced snapshots) plus
  the combinations; short mode (pytest) runs each kind once on a rotating venue plus two combinations.
  Trading faults only fire when an order reaches the venue, so the suite provokes one: a price jump
  on that venue (`POST /admin/jump`, +-90 bps on every symbol, every 1.5 s) until the simulator's
  `faults_fired` counter shows the fault fired (deadline 30 s; a fault that never fired is a
  violation). Maintenance stays on until it fired and then 1.5 s more. Faults fired = the simulator's
  own counters.
- **Operator steps**: every scenario starts from an ACTIVE bot. After a HALT (or a naked leg left at
  the venues) the suite does what an operator does: close-all (repeated while a flatten failed),
  then resume; each such step is listed below with the HALT reason.
- **Crash recovery** (`perpbot/reliability/crash.py`): the simulator runs as its own process
  (`perpbot sim`), the bot as `python -m perpbot.cli run` (mode live, venue URLs pointing at the
  simulator), SIGKILLed at random moments of trading and restarted on the same journal.
- **Invariants** (`perpbot/reliability/invariants.py`, pure): local positions == the venue's; every
  venue order's client id is in the journal's orders table and used once; venue fills == journal fills
  per order; unhedged notional x seconds (measured from the venues' positions, and as the engine
  accounted it) within `risk.unhedged_budget_usdt_seconds`; after gap / bad_checksum / malformed the
  venue's books were invalidated and a resync counted; after recovery the bot is ACTIVE, or HALTED with
  a reason; in the hostile runs, a periodic reconciliation that had to correct a local position is also
  a violation (it would otherwise hide drift).
- Recovery time: from the moment the faults were cleared to all books valid / state ACTIVE (0 when the
  bot had already recovered before the fault window closed; "-" when it ended HALTED). "fired after"
  is the time from injection until every fault of the scenario had fired.
"""


FINDINGS_PATH = Path(__file__).with_name("findings.md")


def _fmt(value: Any) -> str:
    return "-" if value is None else str(value)


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
        out.append("## Crash recovery (SIGKILL)\n")
        out.append(f"{sum(c.kills for c in crashes)} kills over {len(crashes)} seed(s); "
                   f"{sum(c.kills_mid_trade for c in crashes)} with an order unresolved in the journal; "
                   f"{sum(len(c.violations) for c in crashes)} violations; restart -> ACTIVE at most "
                   f"{max((max(c.recovery_s, default=0) for c in crashes), default=0):.1f} s.\n")
        out.append("| seed | kills | kills with an order unresolved | orders | fills | violations | restart -> ACTIVE "
                   "max (s) | residual naked exposure after restarts (USDT) |")
        out.append("|---|---|---|---|---|---|---|---|")
        for c in crashes:
            residual = max((float(x) for x in c.residual_exposure_usdt), default=0.0)
            out.append(f"| {c.seed} | {c.kills} | {c.kills_mid_trade} | {c.orders} | {c.fills} | "
                       f"{len(c.violations)} | {max(c.recovery_s, default=0):.1f} | {residual:.1f} |")
        out.append("")
    out.append(FINDINGS_PATH.read_text(encoding="utf-8"))
    violations = [v for r in hostile for v in r.violations] + [v for c in crashes for v in c.violations]
    out.append(f"## Violations: {len(violations)}\n")
    out += [f"- {v}" for v in violations[:200]]
    out.append("")
    return "\n".join(out)


def write(path: Path, command: str, hostile: list[ScenarioResult], crashes: list[CrashResult]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(command, hostile, crashes), encoding="utf-8")
