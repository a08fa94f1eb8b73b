"""`python -m perpbot.reliability hostile|crash|all [--short]`: run the reliability suite, write docs/RELIABILITY.md."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
from pathlib import Path

from perpbot.reliability.crash import run_crash
from perpbot.reliability.report import write
from perpbot.reliability.scenarios import run_hostile

REPORT = Path(__file__).resolve().parents[2] / "docs" / "RELIABILITY.md"


async def _main(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="perpbot-reliability-"))
    seeds = tuple(range(1, args.seeds + 1))
    hostile, crashes = [], []
    if args.command in ("hostile", "all"):
        hostile = await run_hostile(workdir, short=args.short, seeds=seeds[:1] if args.short else seeds)
    if args.command in ("crash", "all"):
        kills = args.kills or (20 if args.short else 100)
        per_seed = max(1, -(-kills // len(seeds)))
        for seed in seeds:
            crashes.append(await run_crash(workdir, per_seed, seed, check_every=args.check_every))
    command = "python -m perpbot.reliability " + " ".join(sys.argv[1:])
    if not args.no_report:
        write(Path(args.report), command, hostile, crashes)
    violations = [v for r in hostile for v in r.violations] + [v for c in crashes for v in c.violations]
    print(json.dumps({"hostile": [r.as_dict() for r in hostile], "crash": [c.as_dict() for c in crashes],
                      "violations": len(violations)}, indent=1))
    return 1 if violations else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m perpbot.reliability", description=__doc__)
    parser.add_argument("command", choices=("hostile", "crash", "all"))
    parser.add_argument("--short", action="store_true", help="CI length: each fault kind on all venues at once")
    parser.add_argument("--kills", type=int, help="total SIGKILLs across seeds (default 20 short, 100 long)")
    parser.add_argument("--seeds", type=int, default=1, help="market seeds (crash kills are spread over them)")
    parser.add_argument("--check-every", type=int, default=1, help="full settle-and-check every n kills")
    parser.add_argument("--workdir", help="where journals and logs go (default: a temp dir)")
    parser.add_argument("--report", default=str(REPORT), help="report path (default docs/RELIABILITY.md)")
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
