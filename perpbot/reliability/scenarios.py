"""Hostile-venue scenarios: every simulator fault kind on every venue, alone and combined, injected
while the bot trades, each followed by recovery measurement and the invariant checks. The private-stream
faults (perpbot.sim.faults.PRIVATE_FAULTS: dropped / stalled / lagging streams, duplicated or reordered
fill pushes, an expired Binance listen key, REST behind the stream) run the same way on every venue
where they apply, and so do the margin faults (MARGIN_FAULTS): a leg liquidated or auto-deleveraged by
the venue, after which the bot must close the other leg within the unhedged budget, and a held mark
shock on one venue, which must never end in a liquidation."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

from perpbot.reliability import invariants as inv
from perpbot.reliability.live import VENUES, LiveBot, wait_for
from perpbot.sim.faults import MARGIN_FAULTS, MARKET_FAULTS, ORDER_WS_FAULTS, PRIVATE_FAULTS, TRADING_FAULTS
from perpbot.sim.trading.gate import RETRY_AFTER_IGNORED

log = logging.getLogger("perpbot.reliability")

# Faults after which a book could be wrong: the book must be invalidated and resynced.
INTEGRITY_FAULTS = ("gap", "bad_checksum", "malformed")
TIMED_FAULTS = ("stall", "maintenance")

# Per kind: how many occurrences (or seconds, for timed faults) and the parameters.
FAULT_SHAPES: dict[str, dict[str, Any]] = {
    "drop": {"count": 1},
    "stall": {"duration_s": 1.5},
    "gap": {"count": 2},
    "bad_checksum": {"count": 2},
    "malformed": {"count": 2},
    "delay": {"count": 20, "params": {"ms": 300}},
    "reorder": {"count": 3},
    "price_jump": {"count": 1, "params": {"bps": 60}},
    "rest_5xx": {"count": 2, "params": {"on": "order"}},
    "timeout": {"count": 1, "params": {"hold_s": 3}},
    "rate_limit": {"count": 2, "params": {"on": "order", "retry_after_s": 1}},
    # 418 with Retry-After: the venue's orders are refused at the risk gate until it has passed (an order
    # sent inside it is counted by the simulator as retry_after_ignored: a violation).
    # 2 s: OKX and Hyperliquid answers carry no Retry-After, the bot's defaults for them are 2 s and 10 s.
    "ip_ban": {"count": 1, "params": {"on": "order", "retry_after_s": 2}},
    "reject": {"count": 2},
    "insufficient_margin": {"count": 2},
    "partial_fill": {"count": 2, "params": {"ratio": "0.5"}},
    "lost_response": {"count": 2},
    "maintenance": {"duration_s": 1.5, "params": {"on": "order"}},
    # Private streams (perpbot.sim.private): each counted per order event the venue pushes (rest_lag:
    # per REST order/trade lookup). Lags are longer than execution.stream_confirm_timeout_s (1 s), so
    # the sender falls back to REST and the stream's late fill must not be booked again.
    "private_drop": {"count": 1},
    "private_stall": {"count": 3},
    "fill_duplicate": {"count": 2},
    "fill_out_of_order": {"count": 2},
    "listenkey_expire": {"count": 1},
    "stream_lag": {"count": 4, "params": {"ms": 1500}},
    "rest_lag": {"count": 3, "params": {"ms": 1500}},
    # Order-entry WebSockets (perpbot.sim.private.order_faults): the socket cut as an order arrives (the
    # order placed: its outcome unknown to the bot, resolved by query, never re-sent), and an answer lost
    # on a socket that stays up (unknown after order_timeout_s, resolved the same way).
    "ws_order_drop": {"count": 1},
    "ws_answer_lost": {"count": 1},
    # Margin (perpbot.sim.trading.margin_engine, on every market tick): the venue closes the faulted
    # venue's next position itself, a liquidation (taker fee) or an ADL (a position in profit, whole);
    # a mark shock moves the venue's prices and holds them until the suite takes it back after the phase.
    # The shock is aimed (_aim_shock): the venue's wallet is lowered until the legs there stand
    # SHOCK_FROM_PCT from liquidation, and the shock takes one leg to SHOCK_TO_PCT, past the bot's reduce
    # threshold: the bot must reduce both legs of that trade, and the venue must liquidate nothing.
    "liquidate": {"count": 1},
    "adl": {"count": 1},
    "mark_shock": {"count": 1, "params": {"bps": 150}},
}
# The venue's own closes: a position must be held there when the fault is taken.
FORCED_FAULTS = ("liquidate", "adl")
SHOCK_FROM_PCT = Decimal(15)  # the legs' distance to liquidation the aimed shock starts from (no entry there: < 20)
SHOCK_TO_PCT = Decimal("7.5")  # where it leaves the aimed leg: below risk.liquidation_reduce_pct (10), above critical
SHOCK_REDUCE_WAIT_S = 15.0  # how long the shock is held for the bot's reduction before it is taken back
# Faults that only fire when an order reaches the venue (an order event to push, a REST lookup of an
# order): the suite provokes trading there. listenkey_expire fires on the simulator's own key watch.
PROVOKED_FAULTS = (TRADING_FAULTS + tuple(k for k in PRIVATE_FAULTS if k != "listenkey_expire")
                   + ORDER_WS_FAULTS + FORCED_FAULTS)

COMBINATIONS: dict[str, list[tuple[str, str]]] = {
    "gap+lost_response": [("gap", "binance"), ("lost_response", "okx")],
    "partial_fill+timeout": [("partial_fill", "bybit"), ("timeout", "hyperliquid")],
    "bad_checksum+reject+rate_limit": [("bad_checksum", "okx"), ("reject", "binance"), ("rate_limit", "bybit")],
    "drop+maintenance": [("drop", "hyperliquid"), ("maintenance", "okx")],
    "malformed+insufficient_margin+delay": [("malformed", "bybit"), ("insufficient_margin", "okx"),
                                            ("delay", "binance")],
    # The stream silent and REST behind it on one venue: the sender's fallback sees a stale order.
    "private_stall+rest_lag": [("private_stall", "bybit"), ("rest_lag", "bybit")],
    # A lost REST answer resolved from a stream that pushes the fill twice.
    "lost_response+fill_duplicate": [("lost_response", "okx"), ("fill_duplicate", "okx")],
    "stream_lag+partial_fill": [("stream_lag", "hyperliquid"), ("partial_fill", "hyperliquid")],
    # Every venue answers 429 (then 418) with Retry-After at once: orders stop venue by venue, legs already
    # filled elsewhere are repaired on a venue still taking orders.
    "rate_limit@all venues": [("rate_limit", venue) for venue in VENUES],
    "ip_ban@all venues": [("ip_ban", venue) for venue in VENUES],
}
# Combinations in the short (CI) matrix: the first two market/trading ones. The private-stream ones run in
# the full matrix only (private_stall+rest_lag breaks the books: findings.md).
SHORT_COMBINATIONS = ("gap+lost_response", "partial_fill+timeout")


# Trading faults only fire when an order reaches the venue: the suite provokes one with a price jump
# on that venue (every symbol it lists), repeated until the fault has fired or the deadline passes.
PROVOKE_BPS = 90.0
PROVOKE_EVERY_S = 1.5
FIRE_DEADLINE_S = 30.0
FREE_EVERY_S = 5.0  # at most one operator flatten per this many seconds while provoking
# Timed faults stay on until cleared; once they have fired they are held this long more.
# Unhedged notional at quiescence above this (lot-size residue aside) is flattened before the next scenario.
NAKED_TOLERANCE_USDT = Decimal(5)


def fault(kind: str, venue: str) -> dict[str, Any]:
    spec = {"kind": kind, "venue": venue, **FAULT_SHAPES[kind]}
    if kind in TIMED_FAULTS and kind in TRADING_FAULTS:
        # Held until the suite clears it (after it fired), so the window cannot lapse before an order.
        # (A stall, by contrast, freezes a session for the fault's remaining time: it keeps its shape.)
        spec["duration_s"] = FIRE_DEADLINE_S + 30
    return spec


# Only OKX's book stream carries a checksum (VENUES.md): bad_checksum cannot exist on the others' wire.
CHECKSUM_VENUES = ("okx",)
# Hyperliquid's l2Book frames are whole snapshots without a sequence: a lost one is no gap.
SEQUENCED_VENUES = ("okx", "binance", "bybit")
# Venues that auto-deleverage profitable positions (docs/RUNBOOK.md, margin safety per venue).
ADL_VENUES = ("okx", "binance", "bybit")


def not_applicable(kind: str, venue: str) -> str | None:
    """Why a fault kind cannot occur on a venue's wire, or None when it can."""
    if kind == "bad_checksum" and venue not in CHECKSUM_VENUES:
        return f"n/a: {venue}'s book stream has no checksum to corrupt"
    if kind == "gap" and venue not in SEQUENCED_VENUES:
        return f"n/a: {venue}'s book frames are whole snapshots, no sequence to break"
    if kind == "listenkey_expire" and venue != "binance":
        return f"n/a: {venue}'s private stream has no listen key (Binance's user-data stream only)"
    if kind == "adl" and venue not in ADL_VENUES:
        return (f"n/a: {venue} states no ADL rank and pushes no ADL of a leg the suite can provoke (its "
                "liquidations go to the liquidator vault first)")
    return None


@dataclasses.dataclass(slots=True)
class Scenario:
    name: str
    faults: list[dict[str, Any]]
    skip: str | None = None  # why this kind cannot happen on this venue (listed, not run)

    @property
    def trading_venues(self) -> list[str]:
        """Venues where an order must arrive for a fault to fire (trading and private-stream faults)."""
        return sorted({f["venue"] for f in self.faults if f["kind"] in PROVOKED_FAULTS})


@dataclasses.dataclass(slots=True)
class ScenarioResult:
    name: str
    runs: int = 0
    faults_fired: int = 0
    fired: dict[str, int] = dataclasses.field(default_factory=dict)  # "venue kind" -> count
    violations: list[str] = dataclasses.field(default_factory=list)
    halts: list[str] = dataclasses.field(default_factory=list)
    operator: list[str] = dataclasses.field(default_factory=list)  # close-all / resume done by the suite
    books_recovery_s: list[float] = dataclasses.field(default_factory=list)
    active_recovery_s: list[float] = dataclasses.field(default_factory=list)
    fire_s: list[float] = dataclasses.field(default_factory=list)  # injection -> every fault fired
    unhedged_usdt_seconds: Decimal = Decimal(0)
    skip: str | None = None
    forced: list[str] = dataclasses.field(default_factory=list)  # per venue close: how soon the other leg closed
    shocks: list[str] = dataclasses.field(default_factory=list)  # per aimed mark shock: what the bot did

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "runs": self.runs, "faults_fired": self.faults_fired, "fired": dict(self.fired),
                "violations": list(self.violations), "halts": list(self.halts), "operator": list(self.operator),
                "books_recovery_s": max(self.books_recovery_s, default=None),
                "active_recovery_s": max(self.active_recovery_s, default=None),
                "fire_s": max(self.fire_s, default=None),
                "unhedged_usdt_seconds": str(self.unhedged_usdt_seconds), "skip": self.skip,
                "forced": list(self.forced), "shocks": list(self.shocks)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ScenarioResult":
        def listed(value: Any) -> list[float]:
            return [] if value is None else [value]

        return cls(d["name"], d["runs"], d["faults_fired"], dict(d.get("fired", {})), list(d["violations"]),
                   list(d["halts"]), list(d.get("operator", [])), listed(d["books_recovery_s"]),
                   listed(d["active_recovery_s"]), listed(d.get("fire_s")), Decimal(d["unhedged_usdt_seconds"]),
                   d.get("skip"), list(d.get("forced", [])), list(d.get("shocks", [])))


def scenarios(short: bool) -> list[Scenario]:
    """Full: each kind on each venue separately (every kind x 4), then every combination. Short (CI): each
    kind once, on a venue rotating through the four, then two combinations
    (SHORT_COMBINATIONS)."""
    out: list[Scenario] = []
    for i, kind in enumerate(MARKET_FAULTS + TRADING_FAULTS + PRIVATE_FAULTS + ORDER_WS_FAULTS + MARGIN_FAULTS):
        if short:
            venue = VENUES[i % len(VENUES)]
            if not_applicable(kind, venue):
                # okx: the one venue where every market fault kind applies; binance: the listen key.
                venue = "binance" if kind == "listenkey_expire" else "okx"
            out.append(Scenario(f"{kind} @ {venue}", [fault(kind, venue)]))
        else:
            out += [Scenario(f"{kind} @ {v}", [fault(kind, v)], not_applicable(kind, v)) for v in VENUES]
    combos = [(n, p) for n, p in COMBINATIONS.items() if n in SHORT_COMBINATIONS] if short else COMBINATIONS.items()
    out += [Scenario(f"combo {name}", [fault(k, v) for k, v in pairs]) for name, pairs in combos]
    return out


async def _sample_exposure(bot: LiveBot, meter: inv.ExposureMeter, stop: asyncio.Event) -> None:
    """The venue's own view of unhedged notional, sampled while the phase runs."""
    while not stop.is_set():
        try:
            accounts = await bot.admin.accounts()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            log.warning("exposure sample failed: %s", exc)  # the next sample holds the last value longer
            await asyncio.sleep(0.25)
            continue
        meter.sample(time.monotonic(), sum(inv.net_exposure_usdt(accounts, inv.marks_from(accounts)).values(),
                                           Decimal(0)))
        try:
            await asyncio.wait_for(stop.wait(), 0.25)
        except asyncio.TimeoutError:
            pass


def _net_exposure(accounts: dict[str, Any]) -> Decimal:
    return sum(inv.net_exposure_usdt(accounts, inv.marks_from(accounts)).values(), Decimal(0))


async def operator_recover(bot: LiveBot, why: str, timeout_s: float = 65.0, attempts: int = 3) -> str:
    """What an operator does after a HALT or a naked leg: close-all (reduce-only flatten of every
    venue position), repeated while a flatten order failed (a fault may still be active), then
    resume. Returns a one-line account of it for the report. `timeout_s` covers a whole rate-budget
    window (Hyperliquid's 1200 weight per minute): the sync's reads may have to wait one out."""
    engine = bot.engine
    statuses: list[str] = []
    naked = Decimal(0)
    for _ in range(attempts):
        closed = await engine.close_all()
        statuses += sorted(str(r.get("status")) for r in closed["results"])
        accounts = await bot.admin.accounts()
        naked = _net_exposure(accounts)
        if not inv.venue_positions(accounts):
            break
    resumed = await engine.resume()
    deadline = time.monotonic() + timeout_s
    while not resumed.get("resumed") and engine.state != "ACTIVE" and time.monotonic() < deadline:
        # Refused while a venue is not reconciled (its reads waited out a Retry-After, say): as the
        # refusal says, sync positions first, then resume; again a moment later if still refused.
        await asyncio.sleep(1.0)
        await engine.sync_positions()
        resumed = await engine.resume()
    active = await wait_for(lambda: engine.state == "ACTIVE", max(0.0, deadline - time.monotonic()))
    line = (f"{why}: close-all flatten orders {statuses}, resume -> {engine.state}"
            f" ({'ok' if resumed.get('resumed') else resumed.get('reason', 'refused')}), naked after {naked:.1f} USDT")
    log.warning("operator: %s", line)
    if not active:
        raise RuntimeError(f"bot not ACTIVE {timeout_s}s after close-all + resume: {line}")
    return line


def _venues_held(bot: LiveBot, venues) -> bool:
    """True when every symbol of one of `venues` is a leg of an open trade (no entry can go there)."""
    engine = bot.engine
    held = {(leg["venue"], leg["symbol"]) for trade in engine.open_trades.values() for leg in trade["legs"]}
    for venue in venues:
        symbols = [symbol for (v, symbol) in engine.instruments if v == venue]
        if symbols and all((venue, symbol) in held for symbol in symbols):
            return True
    return False


async def _aim_forced(bot: LiveBot, spec: dict[str, Any], timeout_s: float = FIRE_DEADLINE_S / 2
                      ) -> dict[str, Any]:
    """A liquidation or ADL is aimed at a leg of a hedged trade the bot holds on the venue, with nothing of
    ours in flight (as the venue would take a settled position): the suite provokes an entry there until
    one is open, then names its symbol in the fault. Without one in time, the fault goes in unaimed (it then
    takes whatever position the venue holds next, an entry's first leg perhaps)."""
    venue, engine = spec["venue"], bot.engine
    deadline, next_provoke, sign = time.monotonic() + timeout_s, 0.0, 1.0
    while time.monotonic() < deadline:
        if not engine.in_flight:
            for trade in list(engine.open_trades.values()):
                legs = trade.get("legs") or []
                if len(legs) == 2 and any(leg["venue"] == venue for leg in legs):
                    symbol = next(leg["symbol"] for leg in legs if leg["venue"] == venue)
                    return {**spec, "symbol": symbol}
        if time.monotonic() >= next_provoke:
            await bot.admin.jump(venue, sign * PROVOKE_BPS)
            sign, next_provoke = -sign, time.monotonic() + PROVOKE_EVERY_S
        await asyncio.sleep(0.05)
    log.warning("no settled trade on %s within %.0fs: %s injected unaimed", venue, timeout_s, spec["kind"])
    return spec


@dataclasses.dataclass
class AimedShock:
    """A mark shock aimed at a leg: the collateral taken from the venue's wallet to bring its legs near
    liquidation (given back after the phase) and the margin watch's reductions before it."""

    venue: str
    symbol: str
    removed: Decimal
    reductions_before: int
    trade_id: str


def _lower_wallet(sim: Any, distance_pct: Decimal) -> Decimal:
    """The venue account's wallet lowered until its nearest leg is `distance_pct` from liquidation (bisection
    over the simulator's own margin figures, no await in between: no market tick can act on a half-set wallet).
    Returns what was taken."""
    account = sim.account
    original = account.wallet
    low, high = Decimal(0), original

    def nearest(wallet: Decimal) -> Decimal | None:
        account.balances[account.currency] = wallet
        distances = [leg.distance_pct for leg in sim.risk().legs.values()]
        return min((d for d in distances if d is not None), default=None)

    for _ in range(60):
        middle = (low + high) / 2
        distance = nearest(middle)
        if distance is None or distance > distance_pct:
            high = middle
        else:
            low = middle
    nearest(high)  # the smallest wallet found with every leg at least distance_pct away
    return original - high


def _trade_holding(bot: LiveBot, venue: str, symbol: str) -> str | None:
    """The id of the open two-leg trade with a leg on venue/symbol, if any."""
    for trade_id, trade in bot.engine.open_trades.items():
        legs = trade.get("legs") or []
        if len(legs) == 2 and any((leg["venue"], leg["symbol"]) == (venue, symbol) for leg in legs):
            return trade_id
    return None


def _nearest_traded_leg(bot: LiveBot, sim: Any) -> Any | None:
    """The venue's leg nearest its liquidation (cross margin: the others have more room) when it is a leg of a
    hedged trade (an orphan residue nearest would be the one to go), else None."""
    legs = [leg for leg in sim.risk().legs.values() if leg.distance_pct is not None]
    leg = min(legs, key=lambda leg: leg.distance_pct or Decimal(0), default=None)
    if leg is None or leg.liquidation_price is None or _trade_holding(bot, sim.venue, leg.symbol) is None:
        return None
    return leg


async def _aim_shock(bot: LiveBot, spec: dict[str, Any]) -> tuple[dict[str, Any], AimedShock | None]:
    """A mark shock aimed at a leg of a settled hedged trade on the venue (found or provoked as for a forced
    close): the venue's wallet is lowered until its legs stand SHOCK_FROM_PCT from liquidation, the bot reads
    the venue (as its reconciliation would), and the shock is sized to leave the nearest traded leg
    SHOCK_TO_PCT from its liquidation price. Tried again while time is left when the venue's nearest leg is not
    a settled trade's (a position still being opened or closed, which the shock would take first) or the trade
    ended meanwhile. Unaimed in the end: the plain shock, the collateral given back, no reduction expected."""
    venue = spec["venue"]
    sim = bot.app.simulator.exchanges[venue]
    deadline = time.monotonic() + FIRE_DEADLINE_S / 2
    while True:
        aimed = await _aim_forced(bot, spec, timeout_s=max(deadline - time.monotonic(), 0.1))
        if aimed.get("symbol") is None:
            return spec, None
        removed = _lower_wallet(sim, SHOCK_FROM_PCT)
        nearest = _nearest_traded_leg(bot, sim)
        read = nearest is not None and await _bot_read_liquidation(bot, sim, nearest.symbol)
        leg = sim.leg_risk(nearest.symbol) if read and nearest is not None else None
        trade_id = _trade_holding(bot, venue, leg.symbol) if leg is not None else None
        if leg is not None and leg.liquidation_price is not None and trade_id is not None:
            break
        sim.account.credit(removed)
        why = ("the nearest leg is no settled trade's: " + _legs_by_distance(sim) if nearest is None
               else "the bot did not read the new liquidation price, or the trade ended")
        if time.monotonic() >= deadline:
            log.warning("mark shock on %s goes in unaimed: %s", venue, why)
            return spec, None
        log.warning("mark shock on %s not aimed yet (%s): trying again", venue, why)
        await asyncio.sleep(0.5)
    factor = 1 - SHOCK_TO_PCT / 100 if leg.size > 0 else 1 + SHOCK_TO_PCT / 100
    bps = float((leg.liquidation_price / factor / leg.mark - 1) * 10_000)
    log.warning("mark shock aimed at %s %s (%s): wallet lowered by %s, liquidation %s, mark %s -> %+.0f bps",
                venue, leg.symbol, leg.size, removed.quantize(Decimal("0.01")), leg.liquidation_price, leg.mark, bps)
    shock = AimedShock(venue, leg.symbol, removed, bot.service.margin_guard.reductions, trade_id)
    return {**aimed, "symbol": leg.symbol, "params": {"bps": bps}}, shock


def _legs_by_distance(sim: Any) -> str:
    """The venue's legs, nearest liquidation first (for the log)."""
    legs = sorted((leg for leg in sim.risk().legs.values() if leg.distance_pct is not None),
                  key=lambda leg: leg.distance_pct)
    return ", ".join(f"{leg.symbol} {leg.size} at {leg.distance_pct:.1f}%" for leg in legs) or "none"


async def _bot_read_liquidation(bot: LiveBot, sim: Any, symbol: str, timeout_s: float = 10.0) -> bool:
    """The bot holds the venue's liquidation price of the leg as it stands now (within 1 %): a wallet lowered
    from outside is known to the bot only once it has read the venue (a reconciliation that found the leg busy
    with an order left the old figure), so the suite reconciles that venue (no funding history: Hyperliquid's
    read budget is the scarce one) about once a second until it has."""
    key = (sim.venue, symbol)
    engine = bot.engine
    deadline = time.monotonic() + timeout_s

    def held() -> bool:
        stated, leg = engine.portfolio.margins.get(key), sim.leg_risk(symbol)
        return bool(stated is not None and stated.liquidation_price and leg is not None and leg.liquidation_price
                    and abs(stated.liquidation_price / leg.liquidation_price - 1) < Decimal("0.01"))

    while time.monotonic() < deadline:
        async with engine.desk.trade_lock:  # as POST /api/sync/positions takes it
            # Through the engine's observed pass (LiveBot._observe_reconciliations): a correction it makes is
            # judged by the position check as any other.
            await engine._reconcile_now(venues_only=[sim.venue])  # noqa: SLF001
        if held():
            return True
        await asyncio.sleep(1.0)
    return held()


async def _reduced_before_take_back(bot: LiveBot, shocks: list[AimedShock], result: ScenarioResult
                                    ) -> list[str]:
    """Each aimed shock answered by a reduction of the margin watch (both legs of the trade) while it is held;
    then the collateral is given back and the bot reads it."""
    guard = bot.service.margin_guard
    violations = []
    for shock in shocks:
        # Reduced by the margin watch, or the trade ended meanwhile by the strategy's own exit (nothing left
        # to reduce: the exit took both legs).
        what = f"{shock.venue} {shock.symbol} shocked to {SHOCK_TO_PCT}% from liquidation"
        if not await wait_for(lambda: guard.reductions > shock.reductions_before
                              or shock.trade_id not in bot.engine.open_trades, SHOCK_REDUCE_WAIT_S):
            violations.append(f"no reduction of both legs within {SHOCK_REDUCE_WAIT_S:g}s: {what}")
        elif guard.reductions > shock.reductions_before:
            result.shocks.append(f"{what}: both legs reduced by the margin watch")
        else:
            result.shocks.append(f"{what}: its trade closed by the strategy's exit first")
    for shock in shocks:
        bot.app.simulator.exchanges[shock.venue].account.credit(shock.removed)
    if shocks:
        await bot.engine.sync_positions()
    return violations


async def _take_back_shocks(bot: LiveBot, scenario: Scenario, fired: dict[tuple[str, str], int]) -> None:
    """A mark shock holds the venue's prices until an opposite one: the suite takes each fired one back
    (the venue's prices follow the others again) before the recovery is measured."""
    for spec in scenario.faults:
        if spec["kind"] != "mark_shock" or not fired.get((spec["venue"], "mark_shock")):
            continue
        before = (await bot.admin.fired()).get((spec["venue"], "mark_shock"), 0)
        await bot.admin.inject({**spec, "params": {"bps": -float(spec["params"]["bps"])}})
        if not await _fired_past(bot, (spec["venue"], "mark_shock"), before, 10.0):
            log.warning("the opposite mark shock on %s did not fire within 10 s", spec["venue"])


async def _fired_past(bot: LiveBot, key: tuple[str, str], before: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (await bot.admin.fired()).get(key, 0) > before:
            return True
        await asyncio.sleep(0.1)
    return False


async def _await_forced_hedged(bot: LiveBot, timeout_s: float) -> bool:
    """Wait (bounded) until the other leg of every new forced close is closed at the venues, or the bot
    HALTED: the margin watch acts on the pushed liquidation / ADL, the check after it judges how fast."""
    deadline = time.monotonic() + timeout_s
    lots = bot.lots()
    while True:
        accounts = await bot.admin.accounts()
        forced = bot.new_forced_closes(accounts)
        partners = await bot.partners(forced)
        held = inv.venue_positions(accounts)
        local = bot.local_positions()
        halted = bot.engine.state == "HALTED"
        # The other leg closed (or the bot HALTED), and the forced one booked (its position is the venue's).
        if all((halted or inv.naked_after_forced_close(c, accounts, lots, partners.get(c.order_id))[0] is not None)
               and local.get((c.venue, c.symbol), Decimal(0)) == held.get((c.venue, c.symbol), Decimal(0))
               for c in forced):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.2)


def _forced_violations(bot: LiveBot, scenario: Scenario, extra: dict[str, Any], result: ScenarioResult,
                       halted: bool) -> list[str]:
    """The venues' own closes seen since the last check: none unless the scenario asked for one (a mark
    shock must never end in a liquidation), and after each the other leg closed within the budget."""
    forced: list[inv.ForcedClose] = extra.get("forced", [])
    asked = {(f["venue"], "liquidation" if f["kind"] == "liquidate" else "adl")
             for f in scenario.faults if f["kind"] in FORCED_FAULTS}
    violations = [f"the venue closed a leg itself without a fault asking for it: {c.origin} of {c.venue} "
                  f"{c.symbol} {c.base_qty}" for c in forced if (c.venue, c.origin) not in asked]
    hedged, figures = inv.check_forced_close_hedged(forced, extra["accounts"], bot.lots(),
                                                    Decimal(bot.settings.risk.unhedged_budget_usdt_seconds), halted,
                                                    extra.get("partners"))
    result.forced += figures
    return violations + hedged


async def _aimed(bot: LiveBot, scenario: Scenario) -> tuple[list[dict[str, Any]], list[AimedShock]]:
    """The scenario's faults as injected: forced closes aimed at a settled leg, mark shocks at one near its
    liquidation (with what each aimed shock took from the venue's wallet)."""
    specs, shocks = [], []
    for spec in scenario.faults:
        if spec["kind"] in FORCED_FAULTS:
            spec = await _aim_forced(bot, spec)
        elif spec["kind"] == "mark_shock":
            spec, shock = await _aim_shock(bot, spec)
            shocks += [shock] if shock is not None else []
        specs.append(spec)
    return specs, shocks


Key = tuple[str, str]  # (venue, fault kind)


@dataclasses.dataclass
class _Window:
    """One phase's fault window: what was injected, what has fired since, and the suite's provoking."""

    bot: LiveBot
    scenario: Scenario
    result: ScenarioResult
    fired_before: dict[Key, int]
    wanted: dict[Key, int]  # how many occurrences of each (venue, kind) the phase waits for
    holds: dict[Key, float]  # timed faults: how long after they first fired they end
    injected_at: float = 0.0
    first_fired: dict[Key, float] = dataclasses.field(default_factory=dict)
    next_provoke: float = 0.0
    sign: float = 1.0
    freed_at: float = float("-inf")

    async def run(self, fault_window_s: float, fire_deadline_s: float) -> None:
        """Until every fault fired its count (timed ones: held long enough), each fired and the window passed,
        or the deadline; meanwhile the bot is brought back from a HALT and provoked to trade where needed."""
        self.injected_at = self.next_provoke = time.monotonic()
        while True:
            now = time.monotonic()
            delta = await self._delta(now)
            if self._finished(now, delta, fault_window_s, fire_deadline_s):
                break
            await self._unblock(now, delta, fire_deadline_s)
            await self._provoke(now, delta)
            await asyncio.sleep(0.1)
        if len(self.first_fired) == len(self.wanted):
            self.result.fire_s.append(round(max(self.first_fired.values()) - self.injected_at, 3))

    async def _delta(self, now: float) -> dict[Key, int]:
        fired = await self.bot.admin.fired()
        delta = {k: fired.get(k, 0) - self.fired_before.get(k, 0) for k in self.wanted}
        for key, n in delta.items():
            if n > 0:
                self.first_fired.setdefault(key, now)
        return delta

    def _finished(self, now: float, delta: dict[Key, int], fault_window_s: float, fire_deadline_s: float) -> bool:
        first = self.first_fired
        counted_done = all(delta[k] >= n for k, n in self.wanted.items() if k not in self.holds)
        timed_done = all(k in first and now - first[k] >= hold for k, hold in self.holds.items())
        if counted_done and timed_done:
            return True
        if len(first) == len(self.wanted) and now - max(first.values()) >= fault_window_s:
            return True  # each fired; a count not fully used within the window is not waited for longer
        return now - self.injected_at >= fire_deadline_s

    def _pending(self, delta: dict[Key, int]) -> list[str]:
        """The trading venues with a provoked fault still short of its count."""
        return [v for v in self.scenario.trading_venues
                if any(k[0] == v and k[1] in PROVOKED_FAULTS and delta[k] < n for k, n in self.wanted.items())]

    async def _unblock(self, now: float, delta: dict[Key, int], fire_deadline_s: float) -> None:
        """What an operator does when the bot cannot reach the faulted venue: resume it after a HALT; free
        trades in the way of the provoked entry."""
        bot, result = self.bot, self.result
        if bot.engine.state == "HALTED" and any(k[1] in PROVOKED_FAULTS and k not in self.first_fired
                                                for k in self.wanted):
            # The bot stopped before the fault could fire: the operator's way back, then provoke again.
            result.halts.append(f"(during the fault window) {bot.engine.state_reason}")
            result.operator.append(await operator_recover(bot, "HALTED inside the fault window"))
        pending = self._pending(delta)
        if (pending and now - self.injected_at >= fire_deadline_s / 2 and now - self.freed_at >= FREE_EVERY_S
                and (_venues_held(bot, pending) or bot.engine.open_trades)):
            # Trades opened meanwhile hold the venue, or hold the other venue of the pair the
            # provoked spread picks (the engine skips a decision whose venue/symbol an open
            # trade holds, it does not fall back to the next pair): free them, as an operator
            # would, so the provoked entry can reach the faulted venue.
            result.operator.append(await operator_recover(bot, "open trades in the way of the provoked entry"))
            self.freed_at = time.monotonic()

    async def _provoke(self, now: float, delta: dict[Key, int]) -> None:
        pending = self._pending(delta)
        if pending and now >= self.next_provoke:
            # A jump on the venue makes it the cheap (or dear) side of a spread: the scanner
            # opens a trade with one leg there, so an order reaches the faulted venue.
            for venue in pending:
                await self.bot.admin.jump(venue, self.sign * PROVOKE_BPS)
            self.sign, self.next_provoke = -self.sign, now + PROVOKE_EVERY_S


@dataclasses.dataclass
class _Recovery:
    """How the bot came back once the faults were cleared."""

    fault_end: float
    fired: dict[Key, int]  # the simulator's counters after the window
    fired_delta: dict[Key, int]
    never: list[str]  # faults that never fired
    shock_violations: list[str]
    books_ok: bool
    books_at: float
    state_ok: bool
    state_at: float
    violations: list[str]  # the quiescent check's
    extra: dict[str, Any]


async def _prepare(bot: LiveBot, scenario: Scenario, result: ScenarioResult) -> None:
    """Start from an ACTIVE bot whose open trades do not hold the faulted venues."""
    if bot.engine.state != "ACTIVE":
        result.operator.append(await operator_recover(bot, f"bot {bot.engine.state} at the start "
                                                           f"({bot.engine.state_reason})"))
    if _venues_held(bot, scenario.trading_venues):
        # Open trades hold the faulted venue's symbols, and the engine never enters a venue/symbol
        # an open trade holds: no order could reach it. Flatten first, as an operator would.
        result.operator.append(await operator_recover(bot, "faulted venue held by open trades at the start"))


async def _recover(window: _Window, specs: list[dict[str, Any]], shocks: list[Any],
                   recovery_timeout_s: float) -> _Recovery:
    """Clear the faults, count what fired, take back the shocks and wait for books, state and the forced
    closes' other legs; then the quiescent check."""
    bot, scenario, result = window.bot, window.scenario, window.result
    await bot.admin.clear()  # the venue recovers now
    fault_end = time.monotonic()
    fired = await bot.admin.fired()
    fired_delta = {k: fired.get(k, 0) - window.fired_before.get(k, 0) for k in window.wanted}
    result.faults_fired += sum(fired_delta.values())
    for (venue, kind), n in fired_delta.items():
        result.fired[f"{venue} {kind}"] = result.fired.get(f"{venue} {kind}", 0) + n
    never = [f"{kind} @ {venue}" for (venue, kind), n in fired_delta.items() if n == 0]
    shock_violations = await _reduced_before_take_back(bot, shocks, result)
    result.shocks += [f"{spec['venue']}: unaimed (no traded leg there in time), {spec['params']['bps']} bps"
                      for spec in specs if spec["kind"] == "mark_shock"
                      and not any(s.venue == spec["venue"] for s in shocks)]
    await _take_back_shocks(bot, scenario, fired_delta)
    books_ok = await wait_for(bot.books_valid, recovery_timeout_s)
    books_at = time.monotonic()
    state_ok = await wait_for(lambda: bot.engine.state in ("ACTIVE", "HALTED"), recovery_timeout_s)
    state_at = time.monotonic()
    # A leg the venue closed itself: the bot closes the other (judged below from the fill times).
    await _await_forced_hedged(bot, recovery_timeout_s)
    # Give trades already under way (a held timeout reply, a resolve by query) time to settle.
    violations, extra = await bot.quiescent_check()
    return _Recovery(fault_end, fired, fired_delta, never, shock_violations, books_ok, books_at, state_ok, state_at,
                     violations, extra)


def _judge(window: _Window, back: _Recovery, meter: inv.ExposureMeter, before: tuple[Any, Any, Decimal],
           recovery_timeout_s: float, fire_deadline_s: float) -> list[str]:
    """Every invariant of the phase: Retry-After kept, each fault fired, books and state back, shocks answered,
    forced closes hedged, integrity faults invalidated books, unhedged exposure within the budget."""
    bot, scenario, result = window.bot, window.scenario, window.result
    invalid_before, resyncs_before, unhedged_before = before
    violations = list(back.violations)
    ignored = {venue: back.fired.get((venue, RETRY_AFTER_IGNORED), 0)
               - window.fired_before.get((venue, RETRY_AFTER_IGNORED), 0) for venue in VENUES}
    violations += [f"{n} order(s) sent to {venue} inside its Retry-After (after a 429 / 418)"
                   for venue, n in ignored.items() if n > 0]
    if back.never:
        violations.append(f"fault never fired within {fire_deadline_s}s (no order / message reached the venue "
                          f"while it was injected; state {bot.engine.state}, "
                          f"open trades {len(bot.engine.open_trades)}): {', '.join(back.never)}")
    if back.books_ok:
        result.books_recovery_s.append(round(back.books_at - back.fault_end, 3))
    else:
        invalid = [f"{b.venue} {b.symbol}: {b.invalid_reason}" for b in bot.books() if not b.valid]
        violations.append(f"books still invalid {recovery_timeout_s}s after the fault ended: {invalid}")
    state, reason = bot.engine.state, bot.engine.state_reason
    if state == "ACTIVE" and back.state_ok:
        result.active_recovery_s.append(round(back.state_at - back.fault_end, 3))
    violations += back.shock_violations
    violations += inv.check_state(state, reason, back.state_ok)
    violations += _forced_violations(bot, scenario, back.extra, result, state == "HALTED")
    integrity = [v for (v, k), n in back.fired_delta.items() if k in INTEGRITY_FAULTS and n > 0]
    violations += inv.check_books_invalidated(invalid_before, bot.invalidations(), resyncs_before, bot.resyncs(),
                                              integrity)
    budget = Decimal(bot.settings.risk.unhedged_budget_usdt_seconds)
    violations += inv.check_unhedged(meter.usdt_seconds, budget, "exposure seen at the venues")
    violations += inv.check_unhedged(bot.engine.unhedged_usdt_seconds - unhedged_before, budget,
                                      "exposure the engine accounted")
    return violations


async def _leave_clean(bot: LiveBot, back: _Recovery, result: ScenarioResult) -> None:
    """The operator's way back after a HALT or a naked leg, so the next scenario starts flat and ACTIVE."""
    state, reason = bot.engine.state, bot.engine.state_reason
    if state == "HALTED":
        result.halts.append(reason)
        result.operator.append(await operator_recover(bot, f"HALTED after the scenario ({reason})"))
    elif _net_exposure(back.extra["accounts"]) > NAKED_TOLERANCE_USDT and not back.extra["unresolved"]:
        # Not halted, nothing unresolved, yet a leg without its hedge at the venues: flatten it so
        # it does not leak into the next scenario (the exposure budget above already judged it).
        naked = _net_exposure(back.extra["accounts"])
        result.operator.append(await operator_recover(bot, f"naked {naked:.1f} USDT at the venues while ACTIVE"))


async def run_phase(bot: LiveBot, scenario: Scenario, result: ScenarioResult, fault_window_s: float = 4.0,
                    recovery_timeout_s: float = 20.0, fire_deadline_s: float = FIRE_DEADLINE_S) -> None:
    """Start from an ACTIVE bot, inject the scenario's faults, provoke trading on the venues with
    trading faults until every fault fired, end them, wait for recovery, check invariants."""
    await _prepare(bot, scenario, result)
    window = _Window(bot, scenario, result, await bot.admin.fired(),
                     {(f["venue"], f["kind"]): f.get("count", 1) for f in scenario.faults},
                     # Timed faults end this long after they first fired (maintenance: held until then).
                     {(f["venue"], f["kind"]): FAULT_SHAPES[f["kind"]]["duration_s"] for f in scenario.faults
                      if f["kind"] in TIMED_FAULTS})
    before = (bot.invalidations(), bot.resyncs(), bot.engine.unhedged_usdt_seconds)
    meter, stop = inv.ExposureMeter(), asyncio.Event()
    sampler = asyncio.get_running_loop().create_task(_sample_exposure(bot, meter, stop))
    try:
        specs, shocks = await _aimed(bot, scenario)
        for spec in specs:
            await bot.admin.inject(spec)
        await window.run(fault_window_s, fire_deadline_s)
        back = await _recover(window, specs, shocks, recovery_timeout_s)
    finally:
        stop.set()
        await sampler
    violations = _judge(window, back, meter, before, recovery_timeout_s, fire_deadline_s)
    result.unhedged_usdt_seconds += meter.usdt_seconds
    result.runs += 1
    result.violations += [f"{scenario.name}: {v}" for v in violations]
    log.warning("scenario %s: fired %s, violations %d, state %s", scenario.name, back.fired_delta, len(violations),
                bot.engine.state)
    await _leave_clean(bot, back, result)


async def run_hostile(workdir: Path, short: bool = True, seeds: tuple[int, ...] = (7,),
                      only: str | None = None) -> list[ScenarioResult]:
    """Every scenario, one bot per seed, phases back to back while it trades."""
    results: dict[str, ScenarioResult] = {}
    for seed in seeds:
        async with LiveBot(workdir / f"hostile-{seed}", seed) as bot:
            for scenario in scenarios(short):
                if only and not any(part and part in scenario.name for part in only.split(",")):
                    continue
                result = results.setdefault(scenario.name, ScenarioResult(scenario.name, skip=scenario.skip))
                if scenario.skip is None:
                    await run_phase(bot, scenario, result)
    return list(results.values())
