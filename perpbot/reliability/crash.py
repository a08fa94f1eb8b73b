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
import json
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
from perpbot.reliability.relay import RELAYED_VENUES, PrivateRelay, PushedFill
from perpbot.settings import SIM_PATHS, SIM_PRIVATE_PATHS
from perpbot.wiring import SIM_CREDENTIALS

log = logging.getLogger("perpbot.reliability")

FINAL = ("filled", "partially_filled", "canceled", "expired", "rejected", "failed", "not_found")
NOT_CORRECTIVE = ("entry", "exit")  # every other order purpose (hedge, unwind, flatten, repair) corrects
KILL_POINTS = ("exit_settled", "repair_in_flight", "random", "repair_settled", "residue", "startup_repair",
               "fill_pushed")
API_TOKEN = "reliability-suite-token"
SYMBOLS = {"okx": ["BTC-USDT-SWAP", "ETH-USDT-SWAP"], "hyperliquid": ["BTC", "ETH"],
           "binance": ["BTCUSDT", "ETHUSDT"], "bybit": ["BTCUSDT", "ETHUSDT"]}
REPO = Path(__file__).resolve().parents[2]
AIM_DEADLINE_S = 12.0  # longest wait for an aimed-at moment before killing anyway
TRADE_WAIT_S = 8.0  # longest wait for an open trade to aim at


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


def venue_lots() -> dict[tuple[str, str], Decimal]:
    """(venue, symbol) -> lot in base units, as the simulator trades them."""
    from perpbot.sim.market import make_instrument

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


@dataclasses.dataclass(slots=True)
class Restart:
    """What one restart faced and how fast it recovered (filled in after the next kill)."""

    number: int
    started_wall: float  # time.time() when the process was started (the journal's clock)
    exposed: set[str]  # bases a kill left exposed mid-trade: they need a corrective order
    sending: set[str]  # intents still 'sending' at the kill
    active_wall: float = 0.0
    exposure_at_active: dict[str, Decimal] = dataclasses.field(default_factory=dict)  # in no open trade


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
        assert self.http is not None
        async with self.http.post(f"{self.api}/{path}", headers={"Authorization": f"Bearer {API_TOKEN}"}) as resp:
            return await resp.json()

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


# ---------------------------------------------------------------------------------------- kill points
@dataclasses.dataclass(slots=True)
class Aim:
    point: str
    hit: bool = False
    note: str = ""
    partial_exit: bool = False
    pushed: PushedFill | None = None  # fill_pushed: the fill frame the kill followed


def _coarse(rig: CrashRig, trade: dict[str, Any]) -> tuple[Decimal, Decimal]:
    """(finest, coarsest) lot of a trade's two legs, in base units."""
    lots = [rig.lots.get((leg["venue"], leg["symbol"]), Decimal(0)) for leg in trade["legs"]]
    return min(lots), max(lots)


async def _pick_trade(rig: CrashRig, deadline: float, residue: bool = False) -> dict[str, Any] | None:
    """The newest open trade not aimed at before and not exiting yet (for `residue`, one whose legs'
    lots differ tenfold or more, when there is one)."""
    while time.monotonic() < deadline:
        trades = [t for t in read_open_trades(rig.journal)
                  if t["trade_id"] not in rig.targeted and len(t["legs"]) == 2]
        if trades:
            exiting = {r[0] for r in _query(rig.journal, "SELECT DISTINCT trade_id FROM intents WHERE "
                                            "trade_id IS NOT NULL AND status='sending'")}
            trades = [t for t in trades if t["trade_id"] not in exiting]
            sized = [t for t in trades if all(Decimal(str(leg["base_qty"])) > 0 for leg in t["legs"])]
            fresh = [t for t in sized if time.time() - t["opened_ts"] < 1.5]
            pool = fresh or (sized if time.monotonic() > deadline - TRADE_WAIT_S / 2 else [])
            if residue:
                pool = [t for t in pool if _coarse(rig, t)[1] >= 10 * _coarse(rig, t)[0]] or (
                    pool if time.monotonic() > deadline - 1.0 else [])
            if pool:
                trade = max(pool, key=lambda t: t["opened_ts"])
                rig.targeted.add(trade["trade_id"])
                return trade
        await asyncio.sleep(0.05)
    return None


def _equal_ratio(rig: CrashRig, trade: dict[str, Any]) -> str:
    """A fill ratio that fills both legs' exits to the same base quantity: k coarse lots of q (k about
    half of q), plus a hair so the venue's floor to its lot cannot drop a lot."""
    _, coarse = _coarse(rig, trade)
    q = min(Decimal(str(leg["base_qty"])) for leg in trade["legs"])
    lots = int(q / coarse) // 2 if coarse else 0
    if lots < 1:
        return "0.5"
    return str(((lots * coarse) + coarse / 1000) / q)


async def _inject_partial(rig: CrashRig, venue: str, symbol: str, ratio: str, count: int = 1) -> None:
    await rig.admin.inject({"kind": "partial_fill", "venue": venue, "symbol": symbol, "count": count,
                            "params": {"ratio": ratio}})


def _trade_orders(rig: CrashRig, trade_id: str | None, since: float) -> list[tuple]:
    """(purpose, status, qty, filled_qty, intent status, action) of orders journalled since `since`, of the
    trade's intents (every intent when `trade_id` is None)."""
    sql = ("SELECT o.purpose, o.status, o.qty, o.filled_qty, i.status, i.action FROM orders o "
           "JOIN intents i ON o.intent_id = i.intent_id WHERE o.created_ts >= ?")
    params: tuple = (since,)
    if trade_id is not None:
        sql += " AND (i.trade_id = ? OR i.intent_id = ?)"
        params += (trade_id, trade_id)
    return _query(rig.journal, sql, params)


async def _until(predicate, deadline: float, interval: float = 0.01) -> bool:
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return False


async def aim(rig: CrashRig, point: str, rng: random.Random, min_s: float, max_s: float) -> Aim:
    """Wait for the moment kill point `point` aims at (faults injected as needed); returns at it."""
    result = Aim(point)
    if point == "random":
        await asyncio.sleep(rng.uniform(min_s, max_s))
        result.hit = True
        return result
    if point == "fill_pushed":
        return await _aim_fill_pushed(rig, rng, result)
    deadline = time.monotonic() + TRADE_WAIT_S
    trade = await _pick_trade(rig, deadline, residue=point == "residue")
    since = time.time() - 0.05
    aim_deadline = time.monotonic() + AIM_DEADLINE_S
    if trade is None:
        if point == "exit_settled" or point == "residue":
            result.note = "no open trade to aim at"
            return result
        # Repairs of an entry instead: the next order on any venue fills in part.
        await rig.admin.inject({"kind": "partial_fill", "venue": "*", "count": 1, "params": {"ratio": "0.4"}})
        trade_id = None
        result.note = "entry"
    else:
        trade_id = trade["trade_id"]
        legs = trade["legs"]
        if point == "exit_settled":
            ratio = _equal_ratio(rig, trade)
            for leg in legs:
                await _inject_partial(rig, leg["venue"], leg["symbol"], ratio)
        elif point == "residue":
            fine = min(legs, key=lambda leg: rig.lots.get((leg["venue"], leg["symbol"]), Decimal(0)))
            await _inject_partial(rig, fine["venue"], fine["symbol"], "0.5", count=3)
        else:
            await _inject_partial(rig, legs[0]["venue"], legs[0]["symbol"], "0.5")
            await _inject_partial(rig, legs[1]["venue"], legs[1]["symbol"], "0.2")
        result.note = f"trade {trade_id} {legs[0]['venue']}/{legs[1]['venue']} {trade['base']}"

    def rows() -> list[tuple]:
        return _trade_orders(rig, trade_id, since)

    def exits_settled() -> bool:
        exits = [r for r in rows() if r[0] == "exit"]
        return len(exits) >= 2 and all(r[1] in FINAL for r in exits)

    def exit_finished() -> bool:
        closes = [r for r in rows() if r[5] == "close"]
        return bool(closes) and all(r[4] != "sending" for r in closes) and all(r[1] in FINAL for r in closes)

    def corrective(settled: bool):
        def seen() -> bool:
            fixes = [r for r in rows() if r[0] not in NOT_CORRECTIVE]
            return bool(fixes) and (not settled or fixes[0][1] in FINAL)
        return seen

    waits = {"exit_settled": exits_settled, "residue": exit_finished, "repair_in_flight": corrective(False),
             "repair_settled": corrective(True), "startup_repair": corrective(False)}
    result.hit = await _until(waits[point], aim_deadline)
    if result.hit and point in ("exit_settled", "residue"):
        await asyncio.sleep(rng.uniform(0.0, 0.15))  # right after: before or after the bot booked it
    result.partial_exit = any(r[0] == "exit" and r[1] in FINAL and Decimal(r[3]) < Decimal(r[2]) for r in rows())
    return result


async def _aim_fill_pushed(rig: CrashRig, rng: random.Random, result: Aim) -> Aim:
    """Returns 0-10 ms after the relay handed a fill frame to the bot (the caller kills at once). Trades
    are provoked with price jumps on the relayed venues while waiting."""
    pushed = rig.relay.arm()
    deadline = time.monotonic() + AIM_DEADLINE_S
    sign = 1.0
    try:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError, RuntimeError):
                await rig.admin.jump(rng.choice(RELAYED_VENUES), sign * 90.0)
            sign = -sign
            done, _ = await asyncio.wait({pushed}, timeout=min(1.5, max(0.0, deadline - time.monotonic())))
            if done:
                break
    finally:
        rig.relay.disarm()
    if pushed.done() and not pushed.cancelled():
        fill = pushed.result()
        await asyncio.sleep(rng.uniform(0.0, 0.01))
        result.hit, result.pushed = True, fill
        result.note = f"{fill.venue} fill {fill.trade_id} of {fill.client_order_id}"
    else:
        result.note = "no fill pushed on a relayed private stream"
    return result


def pushed_fill_state(journal: Path, fill: PushedFill) -> str:
    """What the journal (of a killed bot) holds of a pushed fill: not journalled / noted, not booked / booked."""
    noted = _query(journal, "SELECT 1 FROM venue_trades WHERE venue = ? AND trade_id = ?", (fill.venue, fill.trade_id))
    if not noted:
        return "not journalled"
    streamed = sum((Decimal(q) for (q,) in _query(journal, "SELECT qty FROM venue_trades WHERE venue = ? AND "
                                                  "client_order_id = ?", (fill.venue, fill.client_order_id))),
                   Decimal(0))
    booked = _query(journal, "SELECT filled_qty FROM orders WHERE venue = ? AND client_order_id = ?",
                    (fill.venue, fill.client_order_id))
    if booked and Decimal(booked[0][0]) >= streamed:
        return "booked"
    return "noted, not booked"


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
