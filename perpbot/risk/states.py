"""Trading states and their pure transition table, each transition leaving an audit record.

The engine starts in PAUSED with reason "awaiting reconciliation" (INITIAL_STATE /
INITIAL_REASON): nothing opens until local positions and orders have been reconciled with
the venues and the engine (or an operator) resumes. HALTED is left only by an explicit
operator resume after reconciliation (reason OPERATOR_RESUME_AFTER_RECONCILIATION).
"""

from __future__ import annotations

from dataclasses import dataclass

from perpbot.core.states import TradingState

__all__ = [
    "ALLOWED", "INITIAL_REASON", "INITIAL_STATE", "OPERATOR_RESUME_AFTER_RECONCILIATION", "StateAudit",
    "TradingState", "allows_entries", "transition",
]  # TradingState lives in perpbot.core.states; re-exported here for the risk rules and the engine


INITIAL_STATE = TradingState.PAUSED
INITIAL_REASON = "awaiting reconciliation"
OPERATOR_RESUME_AFTER_RECONCILIATION = "operator resume after reconciliation"

_S = TradingState
# Allowed (from -> to) moves. Anything may HALT; HALTED only leaves through the operator.
ALLOWED: dict[TradingState, frozenset[TradingState]] = {
    _S.ACTIVE: frozenset({_S.REDUCING, _S.PAUSED, _S.HALTED}),
    _S.REDUCING: frozenset({_S.ACTIVE, _S.PAUSED, _S.HALTED}),
    _S.PAUSED: frozenset({_S.ACTIVE, _S.REDUCING, _S.HALTED}),
    _S.HALTED: frozenset({_S.PAUSED, _S.ACTIVE}),
}


@dataclass(frozen=True, slots=True)
class StateAudit:
    """What was asked, what happened and why; the engine journals it with a timestamp."""

    previous: TradingState
    requested: TradingState
    new: TradingState
    reason: str
    accepted: bool
    detail: str
    at: float | None = None


def transition(
    current: TradingState, target: TradingState, reason: str, at: float | None = None
) -> tuple[TradingState, StateAudit]:
    """Pure: the state after asking to move `current` -> `target` for `reason`, and its audit.

    A refused move keeps `current` (accepted=False); moving to the same state is accepted and
    changes nothing.
    """
    if target == current:
        return current, StateAudit(current, target, current, reason, True, "unchanged", at)
    if target not in ALLOWED[current]:
        return current, StateAudit(current, target, current, reason, False, f"{current.value} -> {target.value} not allowed", at)
    if current is TradingState.HALTED and reason != OPERATOR_RESUME_AFTER_RECONCILIATION:
        return current, StateAudit(
            current, target, current, reason, False,
            f"HALTED is left only with reason {OPERATOR_RESUME_AFTER_RECONCILIATION!r}", at,
        )
    return target, StateAudit(current, target, target, reason, True, f"{current.value} -> {target.value}", at)


def allows_entries(state: TradingState) -> bool:
    return state is TradingState.ACTIVE
