"""SIGKILL the bot process while it trades against a separate simulator process, at moments aimed at exits
and repairs (partial-fill faults on both legs' venues: killed right after a partial exit settled, while a
hedge/unwind is in flight or just settled, after an exit left a sub-lot residue, and again while the
restarted bot repairs what the first kill left, and right after a private stream pushed a fill, before
the bot journalled it); restart on the same journal: nothing lost, nothing
doubled, positions agree, the journal's open trades hold what the venues hold, no exit refused as "does
not reduce position", no naked leg, no unaccounted residue.

The short form (2-3 minutes): ten kills, a full check after every fifth. The long form is
`python -m perpbot.reliability crash --kills 100 --seeds 5 --check-every 5` (docs/RELIABILITY.md)."""

from __future__ import annotations

from perpbot.reliability.crash import run_crash


async def test_sigkills_aimed_at_exits_and_repairs_lose_nothing_and_leave_no_wrong_trade_or_naked_leg(tmp_path):
    points = ("exit_settled", "repair_in_flight", "residue", "repair_settled", "startup_repair", "fill_pushed")
    result = await run_crash(tmp_path, kills=10, seed=3, min_s=0.3, max_s=1.5, check_every=5, points=points)
    assert result.kills == 10
    assert result.orders > 0 and result.fills > 0  # it really traded between kills
    assert sorted(result.kill_points) == sorted(points)
    assert result.partial_exits > 0, f"no exit was filled in part before a kill: {result.kill_log}"
    assert result.kill_points["fill_pushed"][1] > 0, f"no kill followed a pushed fill: {result.kill_log}"
    assert result.violations == [], "\n".join(result.violations + ["kills:"] + result.kill_log)
