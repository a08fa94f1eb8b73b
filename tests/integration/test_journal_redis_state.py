"""Live state mirrored into a real redis-server: trading state, positions, heartbeat; journal-only without a URL."""

import logging

from test_execution_support import OPEN_JOURNALS, make_engine, make_store, make_venues, open_decision

from perpbot.journal.redis_state import RedisState
from perpbot.settings import RedisSettings


async def test_engine_mirrors_state_positions_and_heartbeat_into_redis(tmp_path, redis_server):
    redis_state = RedisState(redis_server)
    store = make_store()
    engine = await make_engine(tmp_path, make_venues(store), store, redis_state=redis_state)
    try:
        await engine.start()
        assert (await redis_state.get_state())["state"] == "ACTIVE"
        await engine.on_decisions([open_decision()])
        await engine.periodic()
        positions = await redis_state.get_positions()
        assert {(p["venue"], p["size"]) for p in positions} == {("okx", "0.02"), ("hyperliquid", "-0.02")}
        assert await redis_state.last_heartbeat() is not None
        await engine.pause("maintenance window")
        state = await redis_state.get_state()
        assert state["state"] == "PAUSED" and state["reason"] == "maintenance window"
    finally:
        await redis_state.close()
        while OPEN_JOURNALS:
            await OPEN_JOURNALS.pop().close()


def test_without_a_redis_url_the_bot_runs_on_the_journal_alone_and_says_so(caplog):
    with caplog.at_level(logging.WARNING):
        assert RedisState.from_settings(RedisSettings(url=None)) is None
    assert any("journal alone" in r.getMessage() for r in caplog.records)
