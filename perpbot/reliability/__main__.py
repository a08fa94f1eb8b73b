"""`python -m perpbot.reliability hostile|crash|all|report`: run the reliability suite, write docs/RELIABILITY.md."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

from perpbot.reliability.crash import KILL_POINTS, CrashResult, run_crash
from perpbot.reliability.report import write
from perpbot.reliability.scenarios import ScenarioResult, run_hostile

REPORT = Path(__file__).resolve().parents[2] / "docs" / "RELIABILITY.md"


def _load(paths: list[str]) -> tuple[list[str], list[ScenarioResult], list[CrashResult]]:
    """Results saved by earlier runs (--save), so long hostile and crash runs can go in parallel."""
    commands, hostile, crashes = [], [], []
    for path in paths:
        body = json.loads(Path(path).read_text(encoding="utf-8"))
        commands.append(body["command"])
        hostile += [ScenarioResult.from_dict(d) for d in body["hostile"]]
        crashes += [CrashResult(**d) for d in body["crash"]]
    return commands, hostile, crashes


async def _main(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="perpbot-reliability-"))
    seeds = tuple(range(args.first_seed, args.first_seed + args.seeds))
    hostile: list[ScenarioResult] = []
    crashes: list[CrashResult] = []
    commands = ["python -m perpbot.reliability " + " ".join(sys.argv[1:] if args.argv is None else args.argv)]
    if args.command == "report":
        commands, hostile, crashes = _load(args.load or [])
    if args.command in ("hostile", "all"):
        hostile_seeds = tuple(range(1, args.hostile_seeds + 1))
        hostile = await run_hostile(workdir, short=args.short, seeds=hostile_seeds, only=args.only)
    if args.command in ("crash", "all"):
        kills = args.kills or (20 if args.short else 100)
        per_seed = max(1, -(-kills // len(seeds)))
        for seed in seeds:
            crashes.append(await run_crash(workdir, per_seed, seed, check_every=args.check_every,
                                           points=tuple(args.kill_points.split(","))))
            if args.save:  # each seed's result kept as soon as it is done (a long run can be cut short)
                partial = {"command": " + ".join(commands), "hostile": [r.as_dict() for r in hostile],
                           "crash": [c.as_dict() for c in crashes]}
                Path(args.save).write_text(json.dumps(partial, indent=1), encoding="utf-8")
    body: dict[str, Any] = {"command": " + ".join(commands), "hostile": [r.as_dict() for r in hostile],
            "crash": [c.as_dict() for c in crashes]}
    if args.save:
        Path(args.save).write_text(json.dumps(body, indent=1), encoding="utf-8")
    if not args.no_report:
        write(Path(args.report), body["command"], hostile, crashes)
    violations = [v for r in hostile for v in r.violations] + [v for c in crashes for v in c.violations]
    print(json.dumps({**body, "violations": len(violations)}, indent=1))
    return 1 if violations else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perpbot.reliability", description=__doc__)
    parser.add_argument("command", choices=("hostile", "crash", "all", "report"))
    parser.add_argument("--short", action="store_true",
                        help="CI length: each fault kind once on a rotating venue, two combinations, 20 kills")
    parser.add_argument("--kills", type=int, help="total SIGKILLs across seeds (default 20 short, 100 long)")
    parser.add_argument("--seeds", type=int, default=1, help="crash market seeds (the kills are spread over them)")
    parser.add_argument("--first-seed", type=int, default=1, help="crash: seeds run from this one on")
    parser.add_argument("--hostile-seeds", type=int, default=1, help="hostile runs, one bot per market seed")
    parser.add_argument("--only",
                        help="hostile: only scenarios whose name contains this (or one of these, comma-separated)")
    parser.add_argument("--check-every", type=int, default=1, help="full settle-and-check every n kills")
    parser.add_argument("--kill-points", default=",".join(KILL_POINTS),
                        help=f"crash: kill points to rotate over (default {','.join(KILL_POINTS)})")
    parser.add_argument("--workdir", help="where journals and logs go (default: a temp dir)")
    parser.add_argument("--save", help="also write the results as JSON here (for `report --load`)")
    parser.add_argument("--load", action="append", help="report: results JSON saved by --save (repeatable)")
    parser.add_argument("--report", default=str(REPORT), help="report path (default docs/RELIABILITY.md)")
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args(argv)
    args.argv = argv
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
