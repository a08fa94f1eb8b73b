"""The crash suite's kill points (`KILL_POINTS`, described in `perpbot.reliability.crash`): picking the open
trade to aim at, injecting the partial-fill faults that make its exit or repair happen, waiting for the
aimed-at moment in the journal (or for a fill frame pushed on a relayed private stream), and classifying a
fill_pushed kill by what the journal held of the pushed fill."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

from perpbot.reliability.crash_rig import FINAL, NOT_CORRECTIVE, CrashRig, _query, read_open_trades
from perpbot.reliability.relay import RELAYED_VENUES, PushedFill

KILL_POINTS = ("exit_settled", "repair_in_flight", "random", "repair_settled", "residue", "startup_repair",
               "fill_pushed")
AIM_DEADLINE_S = 12.0  # longest wait for an aimed-at moment before killing anyway
TRADE_WAIT_S = 8.0  # longest wait for an open trade to aim at


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
