"""The pure two-leg policy, table-driven."""

from decimal import Decimal as D

import pytest

from perpbot.execution.legs import Done, Halt, Hedge, LegOutcome, Resolve, Unwind, decide

L = LegOutcome
CASES = [
    # (name, leg0, leg1, attempt, max_retries, expected)
    ("both_filled_equally_is_done", L(D("1"), D("1")), L(D("1"), D("1")), 0, 3, Done(D("1"), D("0"))),
    ("nothing_filled_is_done_with_zero", L(D("1")), L(D("1")), 0, 3, Done(D("0"), D("0"))),
    ("one_leg_partial_other_full_hedges_the_lagging_leg", L(D("1"), D("1")), L(D("1"), D("0.4")), 0, 3,
     Hedge(1, D("0.6"))),
    ("leg0_lags_hedges_leg0", L(D("1"), D("0.25")), L(D("1"), D("1")), 0, 3, Hedge(0, D("0.75"))),
    ("lagging_leg_rejected_unwinds_the_filled_leg", L(D("1"), D("1")), L(D("1"), D("0"), rejected=True), 0, 3,
     Unwind(0, D("1"))),
    ("after_hedge_attempts_switch_to_unwind", L(D("1"), D("1")), L(D("1"), D("0.5")), 2, 3, Unwind(0, D("0.5"))),
    ("retry_cap_reached_halts", L(D("1"), D("1")), L(D("1"), D("0.5")), 3, 3, Halt),
    ("zero_retries_halts_at_once", L(D("1"), D("1")), L(D("1"), D("0")), 0, 0, Halt),
    ("unknown_leg_is_resolved_before_anything", L(D("1"), D("1")), L(D("1"), unknown=True), 0, 3, Resolve((1,))),
    ("unknown_past_cap_halts", L(D("1"), unknown=True), L(D("1"), D("1")), 3, 3, Halt),
    ("single_retry_budget_unwinds_rejected", L(D("1"), D("0.3"), rejected=True), L(D("1"), D("0.8")), 0, 1,
     Unwind(1, D("0.5"))),
    ("single_retry_budget_hedges_once", L(D("1"), D("0.3")), L(D("1"), D("0.8")), 0, 1, Hedge(0, D("0.5"))),
]


@pytest.mark.parametrize("name,leg0,leg1,attempt,cap,expected", CASES, ids=[c[0] for c in CASES])
def test_legs_policy_table(name, leg0, leg1, attempt, cap, expected):
    action = decide(leg0, leg1, attempt, cap)
    if expected is Halt:
        assert isinstance(action, Halt) and action.reason
    else:
        assert action == expected


def test_difference_within_dust_counts_as_done_with_residual():
    action = decide(L(D("1"), D("1")), L(D("1"), D("0.99999")), 0, 3, dust=D("0.0001"))
    assert action == Done(D("0.99999"), D("0.00001"))


def test_unwind_outcome_reduces_the_filled_quantity():
    leg = L(D("1"), D("1")).add(D("-0.4"))
    assert leg.filled == D("0.6") and not leg.rejected
