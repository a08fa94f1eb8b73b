"""Every simulator fault kind (market, trading, private-stream, order-socket, margin), each on one venue (rotating through
the four) plus two combinations, injected while the bot trades: each fault really fired, and no
invariant broke."""

from __future__ import annotations

from perpbot.reliability.scenarios import run_hostile, scenarios
from perpbot.sim.faults import FAULT_KINDS, MARGIN_FAULTS, ORDER_WS_FAULTS, PRIVATE_FAULTS, TRADING_FAULTS


def test_short_matrix_covers_every_kind_and_every_venue_with_trading_faults():
    short = scenarios(short=True)
    kinds = {f["kind"] for s in short for f in s.faults}
    assert kinds == set(FAULT_KINDS) | set(PRIVATE_FAULTS) | set(ORDER_WS_FAULTS) | set(MARGIN_FAULTS)
    trading_venues = {f["venue"] for s in short for f in s.faults if f["kind"] in TRADING_FAULTS}
    assert trading_venues == {"okx", "hyperliquid", "binance", "bybit"}
    private_venues = {f["venue"] for s in short for f in s.faults if f["kind"] in PRIVATE_FAULTS}
    assert private_venues == {"okx", "hyperliquid", "binance", "bybit"}
    full = scenarios(short=False)
    singles = [s for s in full if not s.name.startswith("combo ")]
    kinds_total = len(FAULT_KINDS) + len(PRIVATE_FAULTS) + len(ORDER_WS_FAULTS) + len(MARGIN_FAULTS)
    assert len(singles) == kinds_total * 4
    # The order sockets' faults (a socket cut mid-order, a lost answer) run on every venue.
    assert {(f["kind"], f["venue"]) for s in full if not s.skip for f in s.faults if f["kind"] in ORDER_WS_FAULTS} \
        == {(k, v) for k in ORDER_WS_FAULTS for v in ("okx", "hyperliquid", "binance", "bybit")}
    # The margin faults (a leg liquidated, a leg auto-deleveraged, a held mark shock) run on every venue
    # but ADL on Hyperliquid, which has none to provoke.
    assert {(f["kind"], f["venue"]) for s in full if not s.skip for f in s.faults if f["kind"] in MARGIN_FAULTS} \
        == {(k, v) for k in MARGIN_FAULTS for v in ("okx", "hyperliquid", "binance", "bybit")} - {("adl", "hyperliquid")}
    # No sequence on Hyperliquid's snapshot frames, no checksum off OKX, no listen key off Binance, no ADL
    # on Hyperliquid: those eight cannot occur.
    assert [s.name for s in full if s.skip] == ["gap @ hyperliquid", "bad_checksum @ hyperliquid",
                                                "bad_checksum @ binance", "bad_checksum @ bybit",
                                                "listenkey_expire @ okx", "listenkey_expire @ hyperliquid",
                                                "listenkey_expire @ bybit", "adl @ hyperliquid"]
    # Every private-stream kind runs on every venue where it applies, in the full matrix.
    runnable = {(f["kind"], f["venue"]) for s in full if not s.skip for f in s.faults}
    assert {(k, v) for k in PRIVATE_FAULTS for v in ("okx", "hyperliquid", "binance", "bybit")
            if k != "listenkey_expire"} | {("listenkey_expire", "binance")} <= runnable


async def test_every_fault_kind_fires_during_live_trading_and_breaks_no_invariant(tmp_path):
    results = await run_hostile(tmp_path, short=True, seeds=(7,))
    assert [r.name for r in results] == [s.name for s in scenarios(short=True)]
    violations = [v for r in results for v in r.violations]
    assert violations == []
    for r in results:
        assert r.runs == 1, r.name
        # A scenario where nothing fired proves nothing: every injected (venue, kind) fired.
        assert r.fired and all(n > 0 for n in r.fired.values()), (r.name, r.fired)
    # A HALT is allowed (it is the bot protecting itself), but the suite must have flattened and
    # resumed after it, so every later scenario started ACTIVE.
    # The mark shock is aimed: a leg taken past the reduce threshold, answered by a reduction of both legs
    # (or its trade already closed by the strategy's exit), never by a liquidation (a violation above).
    [shock] = [r for r in results if r.name.startswith("mark_shock")]
    assert any("both legs reduced" in line or "closed by the strategy" in line for line in shock.shocks), shock.shocks
    halted = [r for r in results if r.halts]
    assert all(r.operator for r in halted)
