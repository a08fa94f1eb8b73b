"""Trading-state transitions: the table, the audit record, HALTED left only by the operator."""

import pytest

from perpbot.risk.states import (
    INITIAL_REASON,
    INITIAL_STATE,
    OPERATOR_RESUME_AFTER_RECONCILIATION,
    TradingState,
    allows_entries,
    transition,
)

A, R, P, H = TradingState.ACTIVE, TradingState.REDUCING, TradingState.PAUSED, TradingState.HALTED


def test_engine_starts_paused_awaiting_reconciliation():
    assert INITIAL_STATE is P and INITIAL_REASON == "awaiting reconciliation"
    assert not allows_entries(INITIAL_STATE)


@pytest.mark.parametrize(
    "current, target, reason, expected, accepted",
    [
        (P, A, "reconciled", A, True),
        (A, P, "operator pause", P, True),
        (A, R, "leg failures", R, True),
        (R, A, "operator resume", A, True),
        (A, H, "daily loss limit hit", H, True),
        (P, H, "unhedged budget exhausted", H, True),
        (R, H, "leg failures", H, True),
        (H, A, "operator resume", H, False),
        (H, P, "reconciled", H, False),
        (H, A, OPERATOR_RESUME_AFTER_RECONCILIATION, A, True),
        (H, P, OPERATOR_RESUME_AFTER_RECONCILIATION, P, True),
        (H, R, OPERATOR_RESUME_AFTER_RECONCILIATION, H, False),
        (A, A, "again", A, True),
    ],
)
def test_transition_table(current, target, reason, expected, accepted):
    new, audit = transition(current, target, reason, at=123.0)
    assert new is expected
    assert (audit.previous, audit.requested, audit.new, audit.reason, audit.accepted, audit.at) == (
        current, target, expected, reason, accepted, 123.0)


def test_only_active_allows_entries():
    assert [s for s in TradingState if allows_entries(s)] == [A]
