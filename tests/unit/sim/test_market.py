"""Pure simulated market: determinism by seed, exact grids, dislocations, funding, jumps, and OKX checksums."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from perpbot.settings import SimSettings
from perpbot.sim.market import Market
from perpbot.sim.ws_common import Grid
from perpbot.sim.ws_okx import okx_checksum

FIXTURES = Path(__file__).resolve().parents[3] / ".." / "shared" / "fixtures"


def test_same_seed_gives_identical_books_after_many_ticks() -> None:
    a, b = Market(3), Market(3)
    for _ in range(200):
        assert a.step() == b.step()
    assert a.levels("okx", "BTC-USDT-SWAP") == b.levels("okx", "BTC-USDT-SWAP")
    assert Market(4).levels("okx", "BTC-USDT-SWAP") != a.levels("okx", "BTC-USDT-SWAP")


def test_levels_are_sorted_uncrossed_and_on_each_venue_grid() -> None:
    market = Market(8)
    for _ in range(50):
        market.step()
    for venue in market.venues():
        for symbol in market.symbols(venue):
            inst = market.instrument(venue, symbol)
            bids, asks = market.levels(venue, symbol)
            assert 20 <= len(bids) <= 400 and 20 <= len(asks) <= 400
            assert bids[0][0] < asks[0][0]
            assert [p for p, _ in bids] == sorted((p for p, _ in bids), reverse=True)
            assert [p for p, _ in asks] == sorted(p for p, _ in asks)
            for price, size in bids + asks:
                assert price % inst.tick == 0 and size % inst.lot == 0 and size > 0


def test_okx_contract_sizes_and_hyperliquid_hourly_funding() -> None:
    market = Market(1)
    assert market.instrument("okx", "BTC-USDT-SWAP").contract_size == Decimal("0.01")
    assert market.instrument("okx", "ETH-USDT-SWAP").contract_size == Decimal("0.1")
    assert market.funding("hyperliquid", "BTC")[1] == 1
    assert market.funding("binance", "BTCUSDT")[1] == 8
    assert 50_000 < float(market.mark("binance", "BTCUSDT")) < 70_000
    assert 2_500 < float(market.mark("bybit", "ETHUSDT")) < 3_500


def test_step_changes_turn_previous_levels_into_current_ones() -> None:
    market = Market(5)
    bids, asks = (dict(side) for side in market.levels("bybit", "BTCUSDT"))
    changes = market.step()["bybit"]["BTCUSDT"]
    for side, delta in ((bids, changes[0]), (asks, changes[1])):
        for price, size in delta:
            if size == 0:
                side.pop(price)
            else:
                side[price] = size
    now_bids, now_asks = market.levels("bybit", "BTCUSDT")
    assert dict(now_bids) == bids and dict(now_asks) == asks


def spread_bps(market: Market) -> float:
    marks = [float(market.mark(v, market.symbols(v)[0])) for v in market.venues()]
    return (max(marks) / min(marks) - 1) * 10_000


def test_dislocations_open_cross_venue_spreads_beyond_fees() -> None:
    calm = Market(2, None, SimSettings(dislocation_rate=0.0))
    wild = Market(2, None, SimSettings(dislocation_rate=0.2, dislocation_bps=40))
    calm_max = wild_max = 0.0
    for _ in range(300):
        calm.step()
        wild.step()
        calm_max, wild_max = max(calm_max, spread_bps(calm)), max(wild_max, spread_bps(wild))
    assert calm_max < 10
    assert wild_max > 25  # well past ~10 bps of round-trip taker fees


def test_funding_rates_diverge_across_venues() -> None:
    market = Market(6, None, SimSettings(funding_divergence=0.0005))
    hourly = [market.funding(v, market.symbols(v)[0])[0] / market.funding(v, market.symbols(v)[0])[1]
              for v in market.venues()]
    assert max(hourly) - min(hourly) > Decimal("0.00001")


def test_jump_moves_one_venue_or_all() -> None:
    market = Market(9, None, SimSettings(dislocation_rate=0.0))
    okx, binance = market.mark("okx", "BTC-USDT-SWAP"), market.mark("binance", "BTCUSDT")
    market.apply_jump("okx", "BTC-USDT-SWAP", 100)
    assert 0.009 < float(market.mark("okx", "BTC-USDT-SWAP") / okx) - 1 < 0.011
    assert abs(float(market.mark("binance", "BTCUSDT") / binance) - 1) < 0.0005
    market.apply_jump(None, None, -100)
    assert float(market.mark("binance", "BTCUSDT") / binance) - 1 < -0.009


def test_okx_checksum_matches_the_recorded_worked_examples() -> None:
    examples = json.loads((FIXTURES / "okx" / "checksum_worked_examples.json").read_text())
    checked = 0
    for example in examples:
        if "crc32_signed_computed" in example and "bids" in example:
            assert okx_checksum(example["bids"], example["asks"]) == example["crc32_signed_computed"]
            checked += 1
    assert checked >= 2


def test_grid_renders_exact_strings_like_each_venue() -> None:
    assert Grid(Decimal("0.10")).fixed(639827) == "63982.70"
    assert Grid(Decimal("0.1")).trimmed(302440) == "30244"
    assert Grid(Decimal("0.01")).trimmed(8) == "0.08"
    assert Grid(Decimal("1")).one_decimal(64094) == "64094.0"
    assert Grid(Decimal("0.00001")).one_decimal(1229409) == "12.29409"
