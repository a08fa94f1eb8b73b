"""The trading-state machine: moves through perpbot.risk.states.transition (every move, refused ones
too, journalled), the risk gate's view of the desk, and the HALT on a risk breach."""

from __future__ import annotations

import logging

from perpbot.execution.desk import STATES, Desk, mark, quote_rate
from perpbot.risk.context import RiskContext
from perpbot.risk.states import TradingState, transition

log = logging.getLogger("perpbot.execution.engine")


class TradingStates:
    def __init__(self, desk: Desk) -> None:
        self.desk = desk

    async def set_state(self, state: str, reason: str, actor: str) -> bool:
        """Move through perpbot.risk.states.transition; refused moves are journalled too."""
        desk = self.desk
        previous = desk.state
        new, audit = transition(TradingState[previous], TradingState[state], reason, desk.clock())
        if not audit.accepted:
            await desk.journal.record_state_change(previous, previous, f"refused {state}: {audit.detail}", actor)
            log.warning("trading state change %s -> %s refused: %s", previous, state, audit.detail)
            return False
        state = new.value
        desk.state, desk.state_reason, desk.state_since = state, reason, desk.clock()
        await desk.journal.record_state_change(previous, state, reason, actor)
        for name in STATES:
            desk.metrics.trading_state.labels(name).set(1 if name == state else 0)
        if desk.redis_state is not None:
            await desk.redis_state.set_state(state, reason)
        level = logging.CRITICAL if state == "HALTED" else logging.WARNING
        log.log(level, "trading state %s -> %s by %s: %s", previous, state, actor, reason)
        return True

    async def halt(self, reason: str, actor: str) -> None:
        """HALT unless already halted."""
        if self.desk.state != "HALTED":
            await self.set_state("HALTED", reason, actor)

    def risk_context(self) -> RiskContext:
        """The risk gate's view, built from the desk (perpbot.risk.context)."""
        desk = self.desk
        portfolio = desk.portfolio
        marks = {key: mark(desk, *key) for key in desk.instruments}
        return RiskContext(
            state=TradingState[desk.state],
            now=desk.clock(),
            equity_usdt={v: b.equity for v, b in portfolio.balances.items()},
            used_margin_usdt={v: b.used_margin for v, b in portfolio.balances.items()},
            positions={k: p.size for k, p in portfolio.positions.items() if p.size},
            mark_prices={k: m for k, m in marks.items() if m is not None},
            open_trades=len(desk.open_trades),
            daily_pnl_usdt=portfolio.pnl_today()["net"],
            recent_order_times=desk.recent_order_times,
            unhedged_usdt_seconds=desk.unhedged_usdt_seconds,
            venue_connected=dict(desk.venue_connected),
            store=desk.store,
            instruments=desk.instruments,
            leverage={v: desk.settings.risk.max_leverage for v in desk.clients},
            private_streams_down=streams_down(desk),
            margins=dict(portfolio.margins),
            venues_blocked=dict(desk.venues_blocked),
            margin_doubted=frozenset(desk.margin_doubted),
            quote_rate=quote_rate(desk),
        )

    async def check_breach(self) -> None:
        """HALT when the gate reports a breach (daily loss, unhedged budget)."""
        reason = self.desk.gate.breach(self.risk_context())
        if reason:
            await self.halt(f"risk breach: {reason}", "risk")


def streams_down(desk: Desk) -> frozenset[str]:
    """Venues with a private stream configured that is not live now (the risk gate refuses entries there)."""
    confirmations = desk.confirmations
    if confirmations is None:
        return frozenset()
    return frozenset(venue for venue, live in confirmations.live.items() if not live)

