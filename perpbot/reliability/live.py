"""A live bot under test: perpbot's App with its in-process simulator on free loopback ports, plus
the admin-API calls and the quiescent invariant check the hostile-venue scenarios use."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

from perpbot.app import App
from perpbot.book.l2 import set_cache_bounds
from perpbot.reliability import invariants as inv
from perpbot.reliability.ports import free_port
from perpbot.settings import Settings

VENUES = ("okx", "hyperliquid", "binance", "bybit")


async def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll a condition until true or the timeout; returns whether it became true."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval)


def trading_settings(workdir: Path, seed: int, **overrides: Any) -> dict[str, Any]:
    """Config (as a dict) that makes the bot trade often against the simulator, on free loopback ports."""
    config: dict[str, Any] = {
        "mode": "sim", "log_dir": str(workdir / "logs"), "log_level": "WARNING",
        "http": {"host": "127.0.0.1", "port": free_port()},
        "journal": {"path": str(workdir / "journal.sqlite")},
        "sim": {"enabled": True, "ports": {v: free_port() for v in VENUES}, "admin_port": free_port(),
                "seed": seed, "tick_interval_s": 0.05, "dislocation_rate": 0.15, "dislocation_bps": 40.0},
        "feeds": {"backoff_initial_s": 0.05, "backoff_max_s": 0.5, "watchdog_s": 3.0},
        "execution": {"reconcile_interval_s": 2.0, "order_timeout_s": 2.0},
        # The suite provokes entries on the faulted venue: at the default 60 orders/min the risk gate's
        # order-rate rule refused them for the rest of a minute often enough that a fault never fired.
        "risk": {"max_orders_per_minute": 240},
        "strategies": {"price_spread": {"max_hold_s": 3}},
    }
    for section, values in overrides.items():
        if isinstance(values, dict) and isinstance(config.get(section), dict):
            config[section] = {**config[section], **values}
        else:
            config[section] = values
    return config


class Admin:
    """The simulator's admin HTTP API (fault injection, stats, accounts) over loopback."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}/admin"
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "Admin":
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10), trust_env=False)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._http is not None:
            await self._http.close()

    async def inject(self, fault: dict[str, Any]) -> None:
        assert self._http is not None
        async with self._http.post(f"{self.base}/faults", json=fault) as resp:
            if resp.status != 201:
                raise RuntimeError(f"fault {fault} refused: {resp.status} {await resp.text()}")

    async def clear(self) -> None:
        assert self._http is not None
        async with self._http.delete(f"{self.base}/faults") as resp:
            resp.raise_for_status()

    async def fired(self) -> dict[tuple[str, str], int]:
        assert self._http is not None
        async with self._http.get(f"{self.base}/stats") as resp:
            body = await resp.json()
        return {(venue, kind): n for venue, kinds in body["faults_fired"].items() for kind, n in kinds.items()}

    async def jump(self, venue: str, bps: float, symbol: str | None = None) -> None:
        """Move one venue's prices by `bps` (every symbol it lists unless `symbol`): a decaying dislocation."""
        assert self._http is not None
        body: dict[str, Any] = {"venue": venue, "bps": bps, **({"symbol": symbol} if symbol else {})}
        async with self._http.post(f"{self.base}/jump", json=body) as resp:
            if resp.status != 200:
                raise RuntimeError(f"jump {body} refused: {resp.status} {await resp.text()}")

    async def accounts(self) -> dict[str, Any]:
        assert self._http is not None
        async with self._http.get(f"{self.base}/accounts") as resp:
            resp.raise_for_status()
            return await resp.json()


class LiveBot:
    """perpbot's whole App (simulator, feeds, scanner, risk, engine, journal) running in this loop."""

    def __init__(self, workdir: Path, seed: int, **overrides: Any) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.settings = Settings.model_validate(trading_settings(workdir, seed, **overrides))
        self.app = App(self.settings)
        self.admin = Admin(self.settings.sim.admin_port)
        self._task: asyncio.Task | None = None
        self.reconcile_position_changes: list[dict[str, Any]] = []
        self.forced_seen: set[tuple[str, str]] = set()  # (venue, order id) of the venue's closes already judged
        self.forced_unexplained: list[inv.ForcedClose] = []  # judged, the bot's correction still to come

    @property
    def service(self) -> Any:
        return self.app.engine

    @property
    def engine(self) -> Any:
        return self.app.engine.engine

    async def __aenter__(self) -> "LiveBot":
        await self.admin.__aenter__()
        self._task = asyncio.get_running_loop().create_task(self.app.run(), name="bot-under-test")
        started = asyncio.ensure_future(self.app.started.wait())
        try:
            done, _ = await asyncio.wait({started, self._task}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        finally:
            started.cancel()
        if self._task in done:  # run() ended before it started: surface why (e.g. a port taken)
            self._task.result()
            raise RuntimeError("bot's run() returned before it started")
        if started not in done:
            raise RuntimeError("bot did not start within 30 s")
        if not await wait_for(lambda: self.app.engine is not None and self.engine.state == "ACTIVE", 30):
            raise RuntimeError(f"bot did not become ACTIVE: {self.app.engine and self.engine.trading_state()}")
        self._observe_reconciliations()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.app.request_stop()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 20)
        await self.admin.__aexit__()

    async def bound_journal_cache(self, kib: int) -> None:
        """SQLite's page cache of the journal connection, bounded at `kib` KiB for the run. SQLite keeps
        up to 2 MiB (its default) of the journal's pages in malloc'd memory and fills it as the file
        grows: a bounded structure that takes longer than a soak's warm-up to fill at the default."""
        await self.engine.journal.db.execute(f"PRAGMA cache_size=-{int(kib)}")

    def bound_histories(self, entries: int) -> tuple[int, int]:
        """Lowers the count bounds of the simulator's order/fill histories (per venue) and of the
        portfolio's fill/funding history to `entries`. The production bounds (thousands) take hours
        of trading to reach; a soak lowers them so they are reached during its warm-up and the
        steady state it measures is the one a weeks-long run lives in."""
        for exchange in self.app.simulator.exchanges.values():
            exchange.account.max_orders = exchange.account.max_fills = entries
        self.engine.portfolio.set_history_bound(entries, entries)
        # The books' wire-text caches (bounded, cleared wholesale when full) take hours of random
        # simulator sizes to fill at their production bounds; scaled alike so they fill in warm-up.
        # Returns the previous bounds so the caller can restore them (the 1-minute soak test runs
        # inside pytest's process).
        return set_cache_bounds(prices=entries * 20, sizes=entries * 20)

    def _observe_reconciliations(self) -> None:
        """Records every position the periodic reconciliation had to correct: a correction means the
        engine's own fill accounting had drifted from the venue, which the position check must see."""
        engine = self.engine
        original = engine._reconcile  # noqa: SLF001 - observation only, behaviour unchanged

        async def observed(*args: Any, **kwargs: Any) -> dict[str, Any]:
            report = await original(*args, **kwargs)  # e.g. funding=..., whatever the engine passes
            # Orders resolved and funding payments booked are the reconciliation's ordinary work, not drift (a
            # funding settlement at 00/08/16 UTC during a run was taken for a position correction).
            self.reconcile_position_changes += [c for c in report["changed"]
                                                if c.get("kind") not in ("order", "funding")]
            return report

        engine._reconcile = observed  # noqa: SLF001

    # -- observations ----------------------------------------------------------------
    def books(self) -> list[Any]:
        return list(self.app.store.books.values())

    def books_valid(self) -> bool:
        return all(book.valid for book in self.books())

    def invalidations(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for book in self.books():
            out[book.venue] = out.get(book.venue, 0) + book.invalidations
        return out

    def resyncs(self) -> dict[str, float]:
        """book_resyncs_total + parse_errors_total per venue, from the bot's own Prometheus registry."""
        out: dict[str, float] = {}
        metrics = self.app.metrics
        for metric in (metrics.book_resyncs_total, metrics.parse_errors_total):
            for family in metric.collect():
                for sample in family.samples:
                    if sample.name.endswith("_total"):
                        venue = sample.labels.get("exchange", "")
                        out[venue] = out.get(venue, 0.0) + sample.value
        return out

    def lots(self) -> dict[str, Decimal]:
        """Per base asset: one lot (base units) of the coarsest venue that lists it."""
        from perpbot.sim.instruments import make_instrument

        lots = {}
        for venue, symbol in self.engine.instruments:
            instrument = make_instrument(venue, symbol)
            lots[(venue, symbol)] = instrument.lot * instrument.contract_size
        return inv.coarse_lots(lots)

    def new_forced_closes(self, accounts: dict[str, Any]) -> list[inv.ForcedClose]:
        """The venues' own closes (liquidation, ADL) not seen by an earlier check."""
        return [c for c in inv.forced_closes(accounts) if (c.venue, c.order_id) not in self.forced_seen]

    async def partners(self, forced: list[inv.ForcedClose]) -> dict[str, tuple[str, str]]:
        """Forced close's order id -> the other leg (venue, symbol) of the journal's trade that held the
        closed leg then (one open trade per venue and symbol): the latest opened before the close and not
        closed before it; failing that, the first opened within a second after it (a trade's opened_ts is
        written once its fills are booked, a few ms after the venue's fill)."""
        if not forced:
            return {}
        rows = []
        async with self.engine.journal.db.execute("SELECT legs, opened_ts, closed_ts FROM trades") as cur:
            async for legs, opened_ts, closed_ts in cur:
                rows.append((json.loads(legs), float(opened_ts) * 1000,
                             None if closed_ts is None else float(closed_ts) * 1000))
        out: dict[str, tuple[str, str]] = {}
        for close in forced:
            partner = inv.partner_of(close, rows)
            if partner is not None:
                out[close.order_id] = partner
        return out

    def local_positions(self) -> dict[tuple[str, str], Decimal]:
        return {k: p.size for k, p in self.engine.portfolio.positions.items() if p.size}

    async def journal_rows(self) -> tuple[list[inv.JournalOrder], list[inv.JournalFill]]:
        db = self.engine.journal.db
        orders, fills = [], []
        async with db.execute("SELECT venue, client_order_id, status, filled_qty FROM orders") as cur:
            async for venue, cid, status, filled in cur:
                orders.append(inv.JournalOrder(venue, cid, status, Decimal(filled)))
        async with db.execute("SELECT venue, client_order_id, base_qty, fee FROM fills") as cur:
            async for venue, cid, base_qty, fee in cur:
                fills.append(inv.JournalFill(venue, cid, Decimal(base_qty), Decimal(fee)))
        return orders, fills

    async def quiescent_check(self, timeout: float = 20.0) -> tuple[list[str], dict[str, Any]]:
        """Under the engine's trade lock (no trade, no reconciliation running) and with nothing in
        flight, compare the journal and portfolio with the venues. Returns (violations, accounts)."""
        engine = self.engine
        deadline = time.monotonic() + timeout
        while True:
            await asyncio.wait_for(engine._trade_lock.acquire(), max(0.1, deadline - time.monotonic()))  # noqa: SLF001
            if not engine.in_flight or time.monotonic() >= deadline:
                break
            engine._trade_lock.release()  # noqa: SLF001
            await asyncio.sleep(0.05)
        try:
            accounts = await self.admin.accounts()
            orders, fills = await self.journal_rows()
            violations = []
            if engine.in_flight:
                violations.append(f"orders still in flight after {timeout}s: {sorted(engine.in_flight)}")
            unresolved = [o for o in orders if o.status in ("unknown", "pending")]
            settled = not unresolved
            if settled:
                # With an order still unresolved the journal cannot yet know its fills; the reconciler
                # settles it, and the check after the next phase sees the result.
                violations += inv.check_positions(self.local_positions(), accounts)
                violations += inv.check_fills(accounts, fills)
                violations += inv.check_order_fills(accounts, orders)
                violations += inv.check_fees(accounts, fills)
            violations += inv.check_orders_approved(accounts, orders)
            # A venue's own close is booked by the reconciliation (not an order of ours): the correction
            # it makes is expected, exactly its size; any other correction is drift.
            forced = self.new_forced_closes(accounts)
            self.forced_seen |= {(c.venue, c.order_id) for c in forced}
            # A position in doubt booked from the venue's push is judged like a reconciliation's correction.
            pushed = engine.desk.pushed_corrections
            self.reconcile_position_changes += list(pushed)
            pushed.clear()
            changes, self.forced_unexplained = inv.unexplained_corrections(
                self.reconcile_position_changes, self.forced_unexplained + forced)
            for change in changes:
                violations.append(f"reconciliation had to correct a local position: {change}")
            self.reconcile_position_changes.clear()
            return violations, {"accounts": accounts, "unresolved": [o.client_order_id for o in unresolved],
                                "forced": forced, "partners": await self.partners(forced)}
        finally:
            engine._trade_lock.release()  # noqa: SLF001
