"""A stop in the middle of a trade, at every await of its execution: SIGTERM (what `docker stop`
sends) lets the execution finish both legs and their repair; a stop past its grace cancels at that
await, yet never cuts a journal transaction or one of the two legs' sends, and a restart repairs
what is left. The real trading service (TradingService.run), engine, risk gate, SQLite journal and
paper venues; the scanner is a stand-in that hands over one decision."""

from __future__ import annotations

import asyncio
import sqlite3
from decimal import Decimal as D

import pytest

from perpbot.journal.sqlite import FINAL_STATUSES, Journal
from perpbot.wiring import TradingService
from test_execution_support import (
    OPEN_JOURNALS, ScriptedVenue, make_engine, make_settings, make_store, make_venues, open_decision,
)

JOURNAL_CALLS = ("record_intent", "record_order", "update_order", "order", "record_fill", "save_position", "settle_order",
                 "finish_intent", "set_intent_status", "orders_of_intent", "record_state_change")
VENUE_CALLS = ("place_order", "fetch_order", "cancel_order")


@pytest.fixture(autouse=True)
async def close_journals():
    yield
    while OPEN_JOURNALS:
        await OPEN_JOURNALS.pop().close()


class OneDecision:
    """Scanner stand-in: hands the engine one decision, then idles like a scanner with no update."""

    def __init__(self, arm, finished) -> None:
        self.arm, self.finished = arm, finished
        self.reports: list | None = None

    async def run(self, on_decisions, open_trades) -> None:
        self.arm()
        self.reports = await on_decisions([open_decision()])
        self.finished()
        await asyncio.Event().wait()


class StopAt:
    """Requests the stop right before the k-th awaited journal or venue call of the execution:
    the signal handler's effect lands while that call is awaited."""

    def __init__(self, k: int, stop) -> None:
        self.k, self.stop = k, stop
        self.calls = 0
        self.armed = False
        self.fired = False

    def arm(self) -> None:
        self.armed = True

    def wrap(self, target, names) -> None:
        for name in names:
            original = getattr(target, name)

            async def counted(*args, _original=original, **kwargs):
                if self.armed:
                    self.calls += 1
                    if self.calls == self.k:
                        self.fired = True
                        self.stop()
                return await _original(*args, **kwargs)

            setattr(target, name, counted)


async def trade_with_a_stop_at(tmp_path, k: int, grace_s: float, script: dict[str, list]):
    store = make_store()
    venues = make_venues(store)
    for venue, steps in script.items():
        venues[venue].script = list(steps)
    settings = make_settings(order_timeout_s=0.5)
    settings.execution.shutdown_grace_s = grace_s
    journal = Journal(tmp_path / f"journal-{k}.sqlite")
    await journal.open()
    engine = await make_engine(tmp_path, venues, store, settings, journal=journal)
    service: TradingService | None = None
    trigger = StopAt(k, lambda: service.stop())
    scanner = OneDecision(trigger.arm, lambda: None if trigger.fired else service.stop())
    service = TradingService(engine, scanner, venues, journal, None)
    service.close = _keep_open  # the test reads the journal afterwards and restarts on it
    trigger.wrap(journal, JOURNAL_CALLS)
    for venue in venues.values():
        trigger.wrap(venue, VENUE_CALLS)
    await asyncio.wait_for(service.run(), 30)  # returns: no error escapes the stop
    return engine, venues, store, scanner, trigger


async def _keep_open() -> None:
    return None


def entry_sends(venues: dict[str, ScriptedVenue]) -> dict[str, int]:
    """Entry orders that reached each venue (client ids of legs a/b, attempt 0)."""
    return {name: sum(1 for r in v.place_calls if r.client_order_id == v.place_calls[0].client_order_id)
            if v.place_calls else 0 for name, v in venues.items()}


def journal_rows(path) -> tuple[list, list, list]:
    db = sqlite3.connect(path)
    intents = db.execute("SELECT status FROM intents").fetchall()
    orders = db.execute("SELECT status FROM orders").fetchall()
    trades = db.execute("SELECT legs, status FROM trades").fetchall()
    return intents, orders, trades


def venue_size(venues, venue, symbol) -> D:
    position = venues[venue].inner.positions.get(symbol)
    return position.size if position is not None else D(0)


SCRIPTS = {"clean": {}, "partial_leg": {"hyperliquid": [("partial", D("0.5"))]}}


@pytest.mark.parametrize("script", SCRIPTS)
async def test_sigterm_at_every_await_lets_the_trade_finish_both_legs_and_the_journal_agree(tmp_path, script):
    k = 1
    while True:
        engine, venues, _, scanner, trigger = await trade_with_a_stop_at(tmp_path, k, 20.0, SCRIPTS[script])
        if not trigger.fired:
            break  # the execution has fewer awaits than k: every one of them was covered
        [report] = scanner.reports
        assert report["outcome"] in ("hedged", "corrected"), (k, report)
        assert entry_sends(venues) == {"okx": 1, "hyperliquid": 1}, k
        intents, orders, trades = journal_rows(engine.journal.path)
        assert intents and all(status not in ("sending",) for (status,) in intents), (k, intents)
        assert all(status in FINAL_STATUSES for (status,) in orders), (k, orders)
        okx, hl = venue_size(venues, "okx", "BTC-USDT-SWAP"), venue_size(venues, "hyperliquid", "BTC")
        assert okx == -hl and okx > 0, k  # hedged, nothing naked
        [trade] = engine.open_trades.values()
        assert [D(leg["base_qty"]) for leg in trade["legs"]] == [okx, -hl]
        assert engine._stopping, "no new decision is taken after the stop"
        k += 1
    assert k > 8, "the execution was expected to await the journal and both venues many times"


@pytest.mark.parametrize("script", SCRIPTS)
async def test_stop_past_its_grace_at_every_await_never_splits_the_legs_and_a_restart_repairs(tmp_path, script):
    k = 1
    while True:
        engine, venues, store, _, trigger = await trade_with_a_stop_at(tmp_path, k, 1e-6, SCRIPTS[script])
        if not trigger.fired:
            break
        sends = entry_sends(venues)
        assert sends in ({"okx": 1, "hyperliquid": 1}, {"okx": 0, "hyperliquid": 0}), (k, sends)
        intents, orders, _ = journal_rows(engine.journal.path)  # readable: no transaction left half-done
        assert all(status in ("sending", "hedged", "corrected") for (status,) in intents), (k, intents)
        # The restart on the same journal and venues finishes what the stop left.
        restarted = make_venues(store)
        for name in venues:
            restarted[name].inner = venues[name].inner
        engine2 = await make_engine(tmp_path, restarted, store, journal=engine.journal)
        await engine2.start()
        intents, orders, trades = journal_rows(engine.journal.path)
        assert all(status != "sending" for (status,) in intents), (k, intents)
        assert all(status in FINAL_STATUSES for (status,) in orders), (k, orders)
        okx, hl = venue_size(venues, "okx", "BTC-USDT-SWAP"), venue_size(venues, "hyperliquid", "BTC")
        assert okx == -hl, (k, okx, hl)
        held = [[D(leg["base_qty"]) for leg in t["legs"]] for t in engine2.open_trades.values()]
        assert held == ([[okx, -hl]] if okx else []), (k, held)
        assert engine2.trading_state()["state"] == "ACTIVE", k
        k += 1
    assert k > 8
