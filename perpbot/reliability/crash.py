"""Crash recovery: SIGKILL `python -m perpbot.cli run` at random moments while it trades against a
simulator running as its OWN process (`perpbot sim`), restart it on the same journal, and check that
nothing was lost or doubled: venue orders all journalled and unique, venue fills == journal fills,
local positions == venue positions once the restarted bot has reconciled."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from perpbot.reliability import invariants as inv
from perpbot.reliability.live import VENUES, Admin, free_port
from perpbot.settings import SIM_PATHS
from perpbot.wiring import SIM_CREDENTIALS

log = logging.getLogger("perpbot.reliability")

FINAL = ("filled", "partially_filled", "canceled", "expired", "rejected", "failed", "not_found")
API_TOKEN = "reliability-suite-token"
SYMBOLS = {"okx": ["BTC-USDT-SWAP", "ETH-USDT-SWAP"], "hyperliquid": ["BTC", "ETH"],
           "binance": ["BTCUSDT", "ETHUSDT"], "bybit": ["BTCUSDT", "ETHUSDT"]}
REPO = Path(__file__).resolve().parents[2]


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

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _configs(workdir: Path, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    ports = {v: free_port() for v in VENUES}
    admin = free_port()
    sim = {"enabled": True, "ports": ports, "admin_port": admin, "seed": seed, "tick_interval_s": 0.05,
           "dislocation_rate": 0.08, "dislocation_bps": 40.0}
    sim_config = {"mode": "sim", "log_dir": str(workdir / "sim-logs"), "log_level": "WARNING",
                  "http": {"host": "127.0.0.1", "port": free_port()}, "sim": sim}
    # The bot is a `live` client of the external simulator: its venue URLs point at the simulator's
    # ports, so the simulator (and the venue state in it) outlives every kill of the bot.
    venues = {v: {"ws_url": f"ws://127.0.0.1:{ports[v]}{SIM_PATHS[v][0]}",
                  "rest_url": f"http://127.0.0.1:{ports[v]}{SIM_PATHS[v][1]}"} for v in VENUES}
    for venue, names in SYMBOLS.items():
        venues[venue]["symbols"] = names
    venues["hyperliquid"]["wallet_address"] = SIM_CREDENTIALS["wallet_address"]
    bot_config = {
        "mode": "live", "log_dir": str(workdir / "bot-logs"), "log_level": "WARNING",
        "http": {"host": "127.0.0.1", "port": free_port()},
        "journal": {"path": str(workdir / "journal.sqlite")},
        "sim": {"enabled": False, "admin_port": admin}, "venues": venues,
        "feeds": {"backoff_initial_s": 0.05, "backoff_max_s": 0.5},
        "execution": {"reconcile_interval_s": 2.0, "order_timeout_s": 2.0},
        "strategies": {"price_spread": {"max_hold_s": 2}},
    }
    return sim_config, bot_config


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERPBOT_")}
    env["PYTHONPATH"] = str(REPO)
    env["PERPBOT_API_TOKEN"] = API_TOKEN
    for venue in VENUES:
        prefix = f"PERPBOT_VENUES__{venue.upper()}__"
        env[prefix + "API_KEY"] = SIM_CREDENTIALS["api_key"]
        env[prefix + "API_SECRET"] = SIM_CREDENTIALS["api_secret"]
        env[prefix + "PASSPHRASE"] = SIM_CREDENTIALS["passphrase"]
    env["PERPBOT_VENUES__HYPERLIQUID__PRIVATE_KEY"] = SIM_CREDENTIALS["private_key"]
    return env


def read_journal(path: Path) -> tuple[list[inv.JournalOrder], list[inv.JournalFill], dict]:
    """The journal as the dead (or live) bot left it on disk, read with plain sqlite3."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
        orders = [inv.JournalOrder(v, c, s, Decimal(f)) for v, c, s, f in
                  db.execute("SELECT venue, client_order_id, status, filled_qty FROM orders")]
        fills = [inv.JournalFill(v, c, Decimal(q)) for v, c, q in
                 db.execute("SELECT venue, client_order_id, base_qty FROM fills")]
        positions = {(v, s): Decimal(z) for v, s, z in db.execute("SELECT venue, symbol, size FROM positions")
                     if Decimal(z)}
    return orders, fills, positions


def final_fills_only(accounts: dict[str, Any], orders: list[inv.JournalOrder]) -> dict[str, Any]:
    """The venue accounts restricted to fills of orders the journal has settled (a running bot may be
    mid-settlement on the others)."""
    final = {(o.venue, o.client_order_id) for o in orders if o.status in FINAL}
    return {v: {**a, "fills": [f for f in a.get("fills") or [] if (v, f.get("client_id")) in final]}
            for v, a in accounts.items()}


class CrashRig:
    """The simulator process plus a restartable bot process over one journal directory."""

    def __init__(self, workdir: Path, seed: int) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.seed = seed
        self.sim_config, self.bot_config = _configs(workdir, seed)
        (workdir / "sim.yaml").write_text(yaml.safe_dump(self.sim_config))
        (workdir / "bot.yaml").write_text(yaml.safe_dump(self.bot_config))
        self.journal = Path(self.bot_config["journal"]["path"])
        self.budget = 5000  # risk.unhedged_budget_usdt_seconds (the default the bot runs with here)
        self.api = f"http://127.0.0.1:{self.bot_config['http']['port']}/api"
        self.sim: subprocess.Popen | None = None
        self.bot: subprocess.Popen | None = None
        self.admin = Admin(self.sim_config["sim"]["admin_port"])
        self.http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "CrashRig":
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30), trust_env=False)
        await self.admin.__aenter__()
        self.sim = subprocess.Popen(
            [sys.executable, "-m", "perpbot.cli", "sim", "--config", str(self.workdir / "sim.yaml")],
            cwd=self.workdir, env=_env(), stdout=subprocess.DEVNULL, stderr=open(self.workdir / "sim.err", "ab"),
        )
        await self._wait(self._sim_up, 30, "simulator did not start")
        return self

    async def __aexit__(self, *exc: Any) -> None:
        for proc in (self.bot, self.sim):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.to_thread(proc.wait, 15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    await asyncio.to_thread(proc.wait)
        await self.admin.__aexit__()
        if self.http is not None:
            await self.http.close()

    async def _wait(self, check, timeout: float, message: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
                value = await check()
                if value:
                    return value
            await asyncio.sleep(0.1)
        raise RuntimeError(message)

    async def _sim_up(self) -> bool:
        await self.admin.fired()
        return True

    async def state(self) -> dict[str, Any] | None:
        assert self.http is not None
        async with self.http.get(f"{self.api}/trading/state") as resp:
            return await resp.json() if resp.status == 200 else None

    async def post(self, path: str) -> dict[str, Any]:
        assert self.http is not None
        async with self.http.post(f"{self.api}/{path}", headers={"Authorization": f"Bearer {API_TOKEN}"}) as resp:
            return await resp.json()

    async def get(self, path: str) -> Any:
        assert self.http is not None
        async with self.http.get(f"{self.api}/{path}") as resp:
            return await resp.json()

    async def start_bot(self) -> float:
        """Start the bot; returns seconds until it reported a reconciled, tradeable (or halted) state."""
        started = time.monotonic()
        self.bot = subprocess.Popen(
            [sys.executable, "-m", "perpbot.cli", "run", "--config", str(self.workdir / "bot.yaml")],
            cwd=self.workdir, env=_env(), stdout=subprocess.DEVNULL, stderr=open(self.workdir / "bot.err", "ab"),
        )

        async def ready() -> bool:
            if self.bot is not None and self.bot.poll() is not None:
                raise RuntimeError(f"bot exited with {self.bot.returncode}; see {self.workdir / 'bot.err'}")
            state = await self.state()
            return bool(state) and state["state"] in ("ACTIVE", "HALTED")

        await self._wait(ready, 60, "bot did not reconcile and trade after a restart")
        return time.monotonic() - started

    def kill_bot(self) -> None:
        assert self.bot is not None
        self.bot.send_signal(signal.SIGKILL)
        self.bot.wait()

    async def settle(self) -> None:
        """Pause (no new trades) and wait until no order is working and nothing is unresolved."""
        await self.post("trading/pause")

        async def quiet() -> bool:
            orders, _, _ = read_journal(self.journal)
            return not await self.get("orders/active") and not [o for o in orders if o.status in ("pending",
                                                                                                  "unknown")]

        with contextlib.suppress(RuntimeError):
            await self._wait(quiet, 15, "orders still working")
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
            await self.post("sync/positions")  # settles any order still marked unresolved

    async def check(self, full: bool) -> tuple[list[str], dict[str, Any]]:
        """Invariants against the venue; `full` (after settle) adds positions and every fill."""
        accounts = await self.admin.accounts()
        orders, fills, _ = read_journal(self.journal)
        violations = inv.check_orders_approved(accounts, orders)
        if full:
            violations += inv.check_fills(accounts, fills)
            # /api/positions gives the signed size (negative = short) next to the side.
            local = {(p["venue"], p["symbol"]): Decimal(p["size"]) for p in await self.get("positions")}
            violations += inv.check_positions(local, accounts)
        else:
            violations += inv.check_fills(final_fills_only(accounts, orders),
                                          [f for f in fills if (f.venue, f.client_order_id) in
                                           {(o.venue, o.client_order_id) for o in orders if o.status in FINAL}])
        return violations, accounts


async def run_crash(workdir: Path, kills: int, seed: int, min_s: float = 0.3, max_s: float = 3.0,
                    check_every: int = 1) -> CrashResult:
    """`kills` SIGKILLs at random moments of trading (uniform in [min_s, max_s] after ACTIVE)."""
    rng = random.Random(seed)
    result = CrashResult(seed)
    async with CrashRig(workdir / f"crash-{seed}", seed) as rig:
        await rig.start_bot()
        naked_since: float | None = None  # when the venues first showed exposure no leg hedged
        for number in range(1, kills + 1):
            await asyncio.sleep(rng.uniform(min_s, max_s))
            rig.kill_bot()
            killed_at = time.monotonic()
            result.kills += 1
            orders, _, _ = read_journal(rig.journal)
            if any(o.status in ("pending", "unknown", "open") for o in orders):
                result.kills_mid_trade += 1
            # Right after the kill: whatever the venue holds must already be in the journal.
            violations, _ = await rig.check(full=False)
            result.recovery_s.append(round(await rig.start_bot(), 3))
            if number % check_every == 0 or number == kills:
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
                state = await rig.state()
                if state and state["state"] == "HALTED":
                    log.warning("crash %d: bot HALTED after restart: %s", number, state["reason"])
                await rig.post("trading/resume")
            result.violations += [f"kill {number}: {v}" for v in violations]
        await rig.settle()
        orders, fills, _ = read_journal(rig.journal)
        result.orders, result.fills = len(orders), len(fills)
    return result
