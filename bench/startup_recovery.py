"""Benchmark: how soon a restarted bot repairs a leg a crash left naked (python bench/startup_recovery.py).

Two processes on loopback only, as in the crash suite (perpbot.reliability.crash): the simulator
(`perpbot sim`) and the bot (`python -m perpbot.cli run`, a `live` client of the simulator) over one
journal. Before each measured start the bot is not running and the journal holds a naked leg: an intent
still 'sending' whose leg a (~200 USDT of BTC on binance) filled at the venue and whose leg b (bybit)
never left. Timed from just before the bot process is spawned (wall clock) to:

* repair: the first corrective order (hedge or unwind of that intent) as the venue received it
  (the simulator's created_ms, wall clock);
* ACTIVE: the journal's state change to ACTIVE of that run.

Also reported: the import floor, a fresh interpreter importing what the bot imports before it can send
anything (ccxt's package imports every exchange it has): no start can repair sooner than that.

A first start (no naked leg, an empty instrument cache) warms the journal the way an earlier run
would; it is reported apart. The bot is SIGKILLed after each measured start (a crash again). Market
dislocations are off so the bot does not trade between starts.

    python bench/startup_recovery.py [--rounds 7] [--repo PATH]

`--repo` runs another checkout of perpbot (e.g. a `git worktree` of an older commit) for before/after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

NAKED_USDT = Decimal(200)
LEG_A = ("binance", "BTCUSDT")
LEG_B = ("bybit", "BTCUSDT")


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="measured restarts (default 7)")
    parser.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]),
                        help="perpbot checkout to run (default: this one)")
    parser.add_argument("--workdir", help="keep configs, journal and logs here (default: a temp dir)")
    return parser.parse_args()


ARGS = _args() if __name__ == "__main__" else None
if ARGS is not None:
    sys.path.insert(0, ARGS.repo)

import aiohttp  # noqa: E402
import yaml  # noqa: E402

from perpbot.core.orders import OrderRequest  # noqa: E402

try:  # the venue port takes only an ApprovedOrder (issue 13); the bench stages the crash state the
    # engine would have left, so it mints the one order it sends the way the risk gate does.
    from perpbot.risk.approved import _mint  # noqa: E402

    def as_sent(request: OrderRequest) -> Any:
        return _mint(request, "entry", "bench-" + request.client_order_id)
except ImportError:  # an older tree (--repo) whose port took the bare request
    def as_sent(request: OrderRequest) -> Any:
        return request
from perpbot.execution.ccxt_client import CcxtClient  # noqa: E402
from perpbot.execution.client_ids import client_order_id, new_intent_id  # noqa: E402
from perpbot.journal.sqlite import Journal  # noqa: E402
from perpbot.reliability import crash  # noqa: E402
from perpbot.settings import Settings  # noqa: E402
from perpbot.wiring import venue_credentials  # noqa: E402


class Bench:
    def __init__(self, workdir: Path) -> None:
        self.rig = crash.CrashRig(workdir, seed=11)
        self.rig.sim_config["sim"]["dislocation_rate"] = 0.0  # no trading between starts
        (workdir / "sim.yaml").write_text(yaml.safe_dump(self.rig.sim_config))
        # The bot's own settings; model_copy (not validated) only lends it the simulator's stand-in keys.
        self.settings = Settings.model_validate(self.rig.bot_config).model_copy(update={"mode": "sim"})
        self.journal = self.rig.journal

    def _client(self, venue: str) -> CcxtClient:
        return CcxtClient(venue, venue_credentials(self.settings, venue), self.settings.rest_url(venue))

    async def _mark(self, venue: str, symbol: str) -> Decimal:
        port = self.rig.sim_config["sim"]["ports"][venue]
        async with aiohttp.ClientSession(trust_env=False) as http:
            async with http.get(f"http://127.0.0.1:{port}/fapi/v1/premiumIndex", params={"symbol": symbol}) as r:
                return Decimal(str((await r.json())["markPrice"]))

    async def make_naked_leg(self, number: int) -> str:
        """Journal an intent as a crash would leave it, with leg a filled at the venue, leg b never sent."""
        intent_id = new_intent_id()
        side_a, side_b = ("buy", "sell") if number % 2 == 0 else ("sell", "buy")  # positions net out
        mark = await self._mark(*LEG_A)
        client_a, client_b = self._client(LEG_A[0]), self._client(LEG_B[0])
        try:
            inst_a = (await client_a.load_instruments([LEG_A[1]]))[LEG_A[1]]
            inst_b = (await client_b.load_instruments([LEG_B[1]]))[LEG_B[1]]
            base_qty = (NAKED_USDT / mark / inst_a.lot_size).to_integral_value(ROUND_DOWN) * inst_a.lot_size
            slip = Decimal("1.01") if side_a == "buy" else Decimal("0.99")
            req_a = OrderRequest(*LEG_A, side_a, inst_a.base_to_venue_qty(base_qty),
                                 inst_a.round_price(mark * slip, side_a), client_order_id(LEG_A[0], intent_id, "a", 0))
            slip_b = Decimal("1.01") if side_b == "buy" else Decimal("0.99")
            req_b = OrderRequest(*LEG_B, side_b, inst_b.base_to_venue_qty(base_qty),
                                 inst_b.round_price(mark * slip_b, side_b), client_order_id(LEG_B[0], intent_id, "b", 0))
            journal = Journal(self.journal)
            await journal.open()
            try:
                legs = [{"venue": r.venue, "symbol": r.symbol, "side": r.side, "base_qty": str(base_qty),
                         "ref_price": str(mark)} for r in (req_a, req_b)]
                await journal.record_intent(intent_id, "price_spread", "open", "BTC",
                                            {"edge_bps": "10", "edge_usdt": "0.2", "reason": "bench", "legs": legs},
                                            [(req_a, "entry"), (req_b, "entry")])
            finally:
                await journal.close()
            result = await client_a.place_order(as_sent(req_a))  # the crash came before leg b was sent
            if result.filled_qty <= 0:
                raise RuntimeError(f"leg a did not fill: {result}")
        finally:
            await client_a.close()
            await client_b.close()
        return intent_id

    def _corrective_ids(self, intent_id: str) -> set[tuple[str, str]]:
        ids = set()
        for venue, leg in ((LEG_A[0], "a"), (LEG_B[0], "b")):
            for kind in ("h", "u"):
                for attempt in range(1, 10):
                    ids.add((venue, client_order_id(venue, intent_id, kind + leg, attempt)))
        return ids

    def _active_ts(self, since: float) -> tuple[str, float] | None:
        with contextlib.closing(sqlite3.connect(f"file:{self.journal}?mode=ro", uri=True, timeout=5)) as db:
            row = db.execute("SELECT to_state, ts FROM state_changes WHERE ts >= ? AND actor='recovery'"
                             " AND to_state IN ('ACTIVE','HALTED') ORDER BY id LIMIT 1", (since,)).fetchone()
        return None if row is None else (row[0], row[1])

    def _intent_status(self, intent_id: str) -> str:
        with contextlib.closing(sqlite3.connect(f"file:{self.journal}?mode=ro", uri=True, timeout=5)) as db:
            return db.execute("SELECT status FROM intents WHERE intent_id=?", (intent_id,)).fetchone()[0]

    async def start(self, intent_id: str | None) -> dict[str, Any]:
        rig = self.rig
        started = time.time()
        rig.bot = subprocess.Popen(
            [sys.executable, "-m", "perpbot.cli", "run", "--config", str(rig.workdir / "bot.yaml")],
            cwd=rig.workdir, env=crash._env(), stdout=subprocess.DEVNULL,
            stderr=open(rig.workdir / "bot.err", "ab"),
        )
        deadline = time.monotonic() + 90
        reached = None
        while reached is None:
            if rig.bot.poll() is not None:
                raise RuntimeError(f"bot exited with {rig.bot.returncode}; see {rig.workdir / 'bot.err'}")
            if time.monotonic() > deadline:
                raise RuntimeError("bot did not reach ACTIVE")
            await asyncio.sleep(0.05)
            with contextlib.suppress(sqlite3.Error):
                reached = self._active_ts(started)
        out: dict[str, Any] = {"state": reached[0], "active_s": reached[1] - started}
        if intent_id is not None:
            wanted = self._corrective_ids(intent_id)
            accounts = await rig.admin.accounts()
            times = [o["created_ms"] / 1000 for venue, account in accounts.items() for o in account["orders"]
                     if (venue, o["client_id"]) in wanted]
            out["repair_s"] = (min(times) - started) if times else None
            out["intent"] = self._intent_status(intent_id)
        rig.kill_bot()
        return out


def import_floor(runs: int = 3) -> float:
    """Median seconds for a fresh interpreter to import what the bot imports before it can send an
    order (perpbot.cli, perpbot.app, perpbot.wiring: ccxt included): no start-up can be faster."""
    times = []
    for _ in range(runs):
        started = time.time()
        subprocess.run([sys.executable, "-c", "import perpbot.cli, perpbot.app, perpbot.wiring"], env=crash._env(),
                       check=True)
        times.append(time.time() - started)
    return statistics.median(times)


async def run(workdir: Path, rounds: int) -> dict[str, Any]:
    floor = import_floor()
    bench = Bench(workdir)
    async with bench.rig:
        first = await bench.start(None)
        results = []
        for number in range(rounds):
            intent_id = await bench.make_naked_leg(number)
            result = await bench.start(intent_id)
            results.append(result)
            print(f"round {number + 1}: start->repair {result['repair_s']:.3f} s, start->{result['state']} "
                  f"{result['active_s']:.3f} s, intent {result['intent']}", flush=True)
    repairs = [r["repair_s"] for r in results if r["repair_s"] is not None]
    actives = [r["active_s"] for r in results]
    summary = {
        "repo": ARGS.repo if ARGS else None, "rounds": rounds,
        "import_floor_s": round(floor, 3),
        "first_start_active_s": round(first["active_s"], 3),
        "repair_median_s": round(statistics.median(repairs), 3) if repairs else None,
        "repair_max_s": round(max(repairs), 3) if repairs else None,
        "active_median_s": round(statistics.median(actives), 3),
        "active_max_s": round(max(actives), 3),
        "outcomes": [r["intent"] for r in results],
    }
    print(json.dumps(summary, indent=2))
    return summary


def main() -> dict[str, Any]:
    assert ARGS is not None
    if ARGS.workdir:
        return asyncio.run(run(Path(ARGS.workdir), ARGS.rounds))
    with tempfile.TemporaryDirectory(prefix="perpbot-startup-") as tmp:
        return asyncio.run(run(Path(tmp), ARGS.rounds))


if __name__ == "__main__":
    main()
