"""Collateral across venues: targets in proportion to what each venue's legs (and an intended trade) need, and
the one transfer that restores the balance, named by source and target."""

from decimal import Decimal as D

from perpbot.portfolio.collateral import TopUp, Transfer, collateral_plan, top_ups


def test_idle_collateral_on_one_venue_names_the_transfer_to_the_venue_whose_legs_need_it():
    # OKX carries 9000 USDT of legs, Binance none: at 3x OKX needs 3000 + 100 room, Binance 100.
    plan = collateral_plan({"okx": D("2000"), "binance": D("8000")}, {"okx": D("9000")}, D("3"), D("300"), D("100"))
    assert plan.target == {"binance": D("312.50"), "okx": D("9687.50")}
    assert plan.imbalance == {"binance": D("7687.50"), "okx": D("-7687.50")}
    assert plan.transfer == Transfer("binance", "okx", D("7687.50"))


def test_a_hedged_pair_with_collateral_in_proportion_needs_no_transfer():
    plan = collateral_plan({"okx": D("5000"), "binance": D("5050")}, {"okx": D("6000"), "binance": D("6000")},
                           D("3"), D("300"), D("100"))
    assert plan.transfer is None  # 25 USDT off: below the smallest transfer worth suggesting
    assert abs(plan.imbalance["okx"]) < D("100")


def test_without_positions_the_equity_is_split_evenly():
    plan = collateral_plan({"okx": D("100"), "bybit": D("700")}, {}, D("3"), D("300"), D("100"))
    assert plan.target == {"bybit": D("400.00"), "okx": D("400.00")}
    assert plan.transfer == Transfer("bybit", "okx", D("300.00"))


def test_a_venue_short_of_its_target_tops_up_by_the_shortfall_capped_and_only_where_allowed():
    plan = collateral_plan({"okx": D("2000"), "binance": D("8000"), "bybit": D("5000")}, {"okx": D("9000")},
                           D("3"), D("300"), D("100"))
    short = {v: -i for v, i in plan.imbalance.items() if i < 0}
    assert set(short) == {"okx"}  # OKX carries the legs: the one venue below its target
    assert top_ups(plan, ["okx", "binance", "bybit"], D("100"), D("1000")) == [TopUp("okx", D("1000.00"))]
    assert top_ups(plan, ["okx"], D("100"), D("100000")) == [TopUp("okx", short["okx"])]
    assert top_ups(plan, ["binance", "bybit"], D("100"), D("1000")) == []  # OKX not allowed now: nothing
    assert top_ups(plan, ["okx"], short["okx"] + D("0.01"), D("100000")) == []  # under the smallest worth moving
