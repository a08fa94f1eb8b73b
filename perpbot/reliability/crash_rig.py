"""The crash suite's rig (`perpbot.reliability.crash`): the simulator as its own process plus a restartable
`python -m perpbot.cli run` over one journal directory. Their configuration files and environment, starting,
SIGKILLing and restarting the bot, the bot's API and /metrics, and the journal as the killed bot left it on
disk (read with plain sqlite3) next to the venues' accounts: the invariant checks after each kill."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
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
from perpbot.reliability.relay import RELAYED_VENUES, PrivateRelay
from perpbot.settings import SIM_PATHS, SIM_ORDER_PATHS, SIM_PRIVATE_PATHS
from perpbot.wiring import SIM_CREDENTIALS

FINAL = ("filled", "partially_filled", "canceled", "expired", "rejected", "failed", "not_found")
NOT_CORRECTIVE = ("entry", "exit")  # every other order purpose (hedge, unwind, flatten, repair) corrects
API_TOKEN = "reliability-suite-token"
SYMBOLS = {"okx": ["BTC-USDT-SWAP", "ETH-USDT-SWAP"], "hyperliquid": ["BTC", "ETH"],
           "binance": ["BTCUSDT", "ETHUSDT"], "bybit": ["BTCUSDT", "ETHUSDT"]}
REPO = Path(__file__).resolve().parents[2]


def venue_lots() -> dict[tuple[str, str], Decimal]:
    """(venue, symbol) -> lot in base units, as the simulator trades them."""
    from perpbot.sim.instruments import make_instrument

    lots = {}
    for venue, names in SYMBOLS.items():
        for symbol in names:
            instrument = make_instrument(venue, symbol)
            lots[(venue, symbol)] = instrument.lot * instrument.contract_size
    return lots


def _configs(workdir: Path, seed: int) -> tuple[dict[str, Any], dict[str, Any], dict[str, int]]:
    ports = {v: free_port() for v in VENUES}
    relay_ports = {v: free_port() for v in RELAYED_VENUES}
    admin = free_port()
    sim = {"enabled": True, "ports": ports, "admin_port": admin, "seed": seed, "tick_interval_s": 0.05,
           "dislocation_rate": 0.08, "dislocation_bps": 40.0}
    sim_config = {"mode": "sim", "log_dir": str(workdir / "sim-logs"), "log_level": "WARNING",
                  "http": {"host": "127.0.0.1", "port": free_port()}, "sim": sim}
    # The bot is a `live` client of the external simulator: its venue URLs point at the simulator's
    # ports, so the simulator (and the venue state in it) outlives every kill of the bot.
    venues: dict[str, dict[str, Any]] = {v: {"ws_url": f"ws://127.0.0.1:{ports[v]}{SIM_PATHS[v][0]}",
                  "rest_url": f"http://127.0.0.1:{ports[v]}{SIM_PATHS[v][1]}"} for v in VENUES}
    for venue, names in SYMBOLS.items():
        venues[venue]["symbols"] = names
    # Private streams: the relayed venues' through the rig's relay (the fill_pushed kill point), the
    # others straight to the simulator (a live-mode bot would otherwise dial the venues' real hosts).
    for venue in VENUES:
        port = relay_ports.get(venue, ports[venue])
        venues[venue]["private_ws_url"] = f"ws://127.0.0.1:{port}{SIM_PRIVATE_PATHS[venue]}"
        # The order sockets straight to the simulator too (never the venues' real hosts).
        venues[venue]["order_ws_url"] = f"ws://127.0.0.1:{ports[venue]}{SIM_ORDER_PATHS[venue]}"
    venues["hyperliquid"]["wallet_address"] = SIM_CREDENTIALS["wallet_address"]
    bot_config = {
        "mode": "live", "log_dir": str(workdir / "bot-logs"), "log_level": "WARNING",
        "http": {"host": "127.0.0.1", "port": free_port()},
        "journal": {"path": str(workdir / "journal.sqlite")},
        "sim": {"enabled": False, "admin_port": admin}, "venues": venues,
        "feeds": {"backoff_initial_s": 0.05, "backoff_max_s": 0.5},
        "execution": {"reconcile_interval_s": 2.0, "order_timeout_s": 2.0},
        # Short holding times: trades exit within seconds, so the exit kill points have exits to hit.
        "strategies": {"price_spread": {"max_hold_s": 2}, "funding_spread": {"max_hold_s": 3}},
    }
    return sim_config, bot_config, relay_ports


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


def _query(path: Path, sql: str, params: tuple = ()) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
        return db.execute(sql, params).fetchall()


def read_journal(path: Path) -> tuple[list[inv.JournalOrder], list[inv.JournalFill], dict]:
    """The journal as the dead (or live) bot left it on disk, read with plain sqlite3."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
        orders = [inv.JournalOrder(v, c, s, Decimal(f)) for v, c, s, f in
                  db.execute("SELECT venue, client_order_id, status, filled_qty FROM orders")]
        fills = [inv.JournalFill(v, c, Decimal(q), Decimal(f)) for v, c, q, f in
                 db.execute("SELECT venue, client_order_id, base_qty, fee FROM fills")]
        positions = {(v, s): Decimal(z) for v, s, z in db.execute("SELECT venue, symbol, size FROM positions")
                     if Decimal(z)}
    return orders, fills, positions


def read_open_trades(path: Path) -> list[dict[str, Any]]:
    """The journal's open trades with their legs (per-leg venue, symbol, side, base_qty)."""
    out = []
    for trade_id, base, legs, opened_ts in _query(
            path, "SELECT trade_id, base, legs, opened_ts FROM trades WHERE status='open'"):
        try:
            out.append({"trade_id": trade_id, "base": base, "legs": json.loads(legs), "opened_ts": opened_ts})
        except ValueError:
            out.append({"trade_id": trade_id, "base": base, "legs": [], "opened_ts": opened_ts})
    return out


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
        self.sim_config, self.bot_config, relay_ports = _configs(workdir, seed)
        self.relay = PrivateRelay({v: self.sim_config["sim"]["ports"][v] for v in relay_ports}, relay_ports)
        (workdir / "sim.yaml").write_text(yaml.safe_dump(self.sim_config))
        (workdir / "bot.yaml").write_text(yaml.safe_dump(self.bot_config))
        self.journal = Path(self.bot_config["journal"]["path"])
        self.budget = 5000  # risk.unhedged_budget_usdt_seconds (the default the bot runs with here)
        self.root = f"http://127.0.0.1:{self.bot_config['http']['port']}"
        self.api = f"{self.root}/api"
        self.sim: subprocess.Popen | None = None
        self.bot: subprocess.Popen | None = None
        self.admin = Admin(self.sim_config["sim"]["admin_port"])
        self.http: aiohttp.ClientSession | None = None
        self.lots = venue_lots()
        self.metrics: dict[str, float] = {}  # the running bot's last /metrics scrape
        self._scraper: asyncio.Task | None = None
        self.targeted: set[str] = set()  # trades a kill point already aimed at
        self.refusals_reported = 0.0  # reduce-only refusals of the running bot already reported
        self.refusals_total = 0.0  # ... of every bot process of the run

    async def __aenter__(self) -> "CrashRig":
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30), trust_env=False)
        await self.admin.__aenter__()
        await self.relay.__aenter__()
        self.sim = subprocess.Popen(
            [sys.executable, "-m", "perpbot.cli", "sim", "--config", str(self.workdir / "sim.yaml")],
            cwd=self.workdir, env=_env(), stdout=subprocess.DEVNULL, stderr=open(self.workdir / "sim.err", "ab"),
        )
        await self._wait(self._sim_up, 30, "simulator did not start")
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._stop_scraper()
        for proc in (self.bot, self.sim):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.to_thread(proc.wait, 15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    await asyncio.to_thread(proc.wait)
        await self.relay.__aexit__()
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
        """POST a control route with the token; a close-all or sync still running after the API's wait
        (202 with an operation) is followed until it ends, so the caller gets its result as before."""
        assert self.http is not None
        auth = {"Authorization": f"Bearer {API_TOKEN}"}
        async with self.http.post(f"{self.api}/{path}", headers=auth) as resp:
            status, body = resp.status, await resp.json()
        while status == 202 and isinstance(body, dict) and body.get("status") == "running":
            async with self.http.get(f"{self.root}{body['poll']}?wait=8", headers=auth) as resp:
                view = await resp.json()
            if view.get("status") == "done":
                return dict(view["result"])
            if view.get("status") != "running":
                return {"error": view.get("error"), "state": "failed"}
        return dict(body) if isinstance(body, dict) else {"answer": body}

    async def get(self, path: str) -> Any:
        assert self.http is not None
        async with self.http.get(f"{self.api}/{path}") as resp:
            return await resp.json()

    async def scrape(self) -> dict[str, float]:
        assert self.http is not None
        async with self.http.get(f"{self.root}/metrics") as resp:
            self.metrics = inv.parse_metrics(await resp.text())
        return self.metrics

    async def _scrape_forever(self) -> None:
        while True:
            with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
                await self.scrape()
            await asyncio.sleep(0.5)

    def _stop_scraper(self) -> None:
        if self._scraper is not None:
            self._scraper.cancel()
            self._scraper = None

    async def exposure(self) -> tuple[dict[str, Decimal], dict[str, Any]]:
        accounts = await self.admin.accounts()
        return inv.net_exposure_usdt(accounts, inv.marks_from(accounts)), accounts

    async def start_bot(self, meter: inv.ExposureMeter | None = None) -> float:
        """Start the bot; returns seconds until it reported a reconciled, tradeable (or halted) state.
        With `meter`, the venues' unhedged notional is sampled while it starts."""
        started = time.monotonic()
        self._spawn()
        last_sample = 0.0

        async def ready() -> bool:
            nonlocal last_sample
            if self.bot is not None and self.bot.poll() is not None:
                raise RuntimeError(f"bot exited with {self.bot.returncode}; see {self.workdir / 'bot.err'}")
            if meter is not None and time.monotonic() - last_sample >= 0.5:
                last_sample = time.monotonic()
                with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
                    exposure, _ = await self.exposure()
                    meter.sample(last_sample, sum(exposure.values(), Decimal(0)))
            state = await self.state()
            return state is not None and bool(state) and state["state"] in ("ACTIVE", "HALTED")

        await self._wait(ready, 60, "bot did not reconcile and trade after a restart")
        elapsed = time.monotonic() - started
        self._scraper = asyncio.get_running_loop().create_task(self._scrape_forever())
        return elapsed

    def _spawn(self) -> None:
        self.metrics = {}
        self.refusals_reported = 0.0
        self.bot = subprocess.Popen(
            [sys.executable, "-m", "perpbot.cli", "run", "--config", str(self.workdir / "bot.yaml")],
            cwd=self.workdir, env=_env(), stdout=subprocess.DEVNULL, stderr=open(self.workdir / "bot.err", "ab"),
        )

    async def kill_in_startup_repair(self, meter: inv.ExposureMeter) -> str:
        """Start the bot and SIGKILL it as soon as its start-up journals a corrective order (a repair of
        what the kill before left), or at ACTIVE when none came; returns what the kill hit."""
        started_wall = time.time()
        self._spawn()
        deadline = time.monotonic() + 60
        polls = 0
        hit = "no repair before ACTIVE"
        while time.monotonic() < deadline:
            if self.bot is not None and self.bot.poll() is not None:
                raise RuntimeError(f"bot exited with {self.bot.returncode}; see {self.workdir / 'bot.err'}")
            with contextlib.suppress(sqlite3.Error):
                fixes = _query(self.journal, "SELECT status FROM orders WHERE created_ts >= ? AND purpose NOT IN "
                               "('entry', 'exit') ORDER BY created_ts LIMIT 1", (started_wall,))
                if fixes:
                    hit = f"repair order {'settled' if fixes[0][0] in FINAL else 'in flight'}"
                    break
            polls += 1
            if polls % 10 == 0:
                with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
                    exposure, _ = await self.exposure()
                    meter.sample(time.monotonic(), sum(exposure.values(), Decimal(0)))
                    state = await self.state()
                    if state and state["state"] in ("ACTIVE", "HALTED"):
                        break
            await asyncio.sleep(0.02)
        self.kill_bot()
        return hit

    def kill_bot(self) -> None:
        assert self.bot is not None
        self.bot.send_signal(signal.SIGKILL)
        self.bot.wait()
        self._stop_scraper()

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
        """Invariants against the venue; `full` (after settle) adds positions, every fill, the journal's
        open trades against the venues, reduce-only refusals and unhedged residue."""
        accounts = await self.admin.accounts()
        orders, fills, _ = read_journal(self.journal)
        violations = inv.check_orders_approved(accounts, orders)
        if full:
            violations += inv.check_fills(accounts, fills)
            violations += inv.check_order_fills(accounts, orders)
            violations += inv.check_fees(accounts, fills)
            # /api/positions gives the signed size (negative = short) next to the side.
            positions = await self.get("positions")
            local = {(p["venue"], p["symbol"]): Decimal(p["size"]) for p in positions}
            violations += inv.check_positions(local, accounts)
            trades = read_open_trades(self.journal)
            violations += inv.check_trades_match_venue(trades, accounts, self.lots)
            metrics = await self.scrape()
            refused = inv.metric_sum(metrics, "perpbot_risk_refusals_total", reason="reduce_only")
            violations += inv.check_exits_not_refused(refused - self.refusals_reported, "since the restart")
            self.refusals_total += max(0.0, refused - self.refusals_reported)
            self.refusals_reported = refused
            reported = Decimal(str(inv.reported_residue_usdt(metrics)))
            reported += sum((abs(Decimal(str(v))) for p in positions for k, v in p.items()
                             if ("residue" in k or "unhedged" in k) and _number(v)), Decimal(0))
            state = await self.state()
            violations += inv.check_residue(accounts, trades, self.lots, inv.marks_from(accounts), reported,
                                            halted=state is not None and bool(state) and state["state"] == "HALTED")
        else:
            violations += inv.check_fills(final_fills_only(accounts, orders),
                                          [f for f in fills if (f.venue, f.client_order_id) in
                                           {(o.venue, o.client_order_id) for o in orders if o.status in FINAL}])
        return violations, accounts


def _number(value: Any) -> bool:
    try:
        return bool(Decimal(str(value)))
    except ArithmeticError:
        return False
