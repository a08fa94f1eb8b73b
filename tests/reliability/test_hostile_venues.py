"""Every simulator fault kind on all four venues while the bot trades: zero invariant violations."""

from __future__ import annotations

from perpbot.reliability.scenarios import INTEGRITY_FAULTS, run_hostile
from perpbot.sim.faults import FAULT_KINDS


async def test_every_fault_kind_on_every_venue_during_live_trading_breaks_no_invariant(tmp_path):
    results = await run_hostile(tmp_path, short=True, seeds=(7,))
    names = {r.name for r in results}
    assert {f"{kind} @ all venues" for kind in FAULT_KINDS} <= names
    assert any(name.startswith("combo ") for name in names)
    violations = [v for r in results for v in r.violations]
    assert violations == []
    fired = {r.name: r.faults_fired for r in results}
    # Market faults fire on every connection; integrity faults must have hit at least one venue.
    for kind in ("drop", "delay", "price_jump", *INTEGRITY_FAULTS):
        assert fired[f"{kind} @ all venues"] > 0, kind
    assert sum(fired.values()) > len(FAULT_KINDS)
    assert all(r.runs == 1 for r in results)
