"""SIGKILL the bot process >= 20 times while it trades against a separate simulator process; restart;
nothing lost, nothing doubled, positions agree, no leg left naked beyond the unhedged budget."""

from __future__ import annotations

from perpbot.reliability.crash import run_crash


async def test_twenty_sigkills_during_trading_lose_no_fill_duplicate_no_order_and_leave_no_naked_leg(tmp_path):
    result = await run_crash(tmp_path, kills=20, seed=3, min_s=0.3, max_s=1.5, check_every=5)
    assert result.kills == 20
    assert result.orders > 0 and result.fills > 0  # it really traded between kills
    assert result.violations == []
