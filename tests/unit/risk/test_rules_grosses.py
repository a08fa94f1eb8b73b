"""venue_grosses (one pass over the positions) against the per-venue definition, on random accounts."""

from decimal import Decimal as D

from hypothesis import given, settings
from hypothesis import strategies as st
from market_helpers import BINANCE_BTC, BYBIT_BTC, OKX_BTC

from perpbot.core.orders import OrderRequest
from perpbot.risk import rules
from risk_fixtures import context

KEYS = [OKX_BTC.key, BINANCE_BTC.key, BYBIT_BTC.key, ("okx", "ETH-USDT-SWAP"), ("binance", "ETHUSDT")]
amounts = st.sampled_from([D("0"), D("0.5"), D("-0.25"), D("3"), D("-1.001"), D("0.0999")])


def per_venue(ctx, venue, deltas, orders):
    """The definition: every symbol of `venue` held or traded, |position| and |position + delta| at mark."""
    keys = {k for k in ctx.positions if k[0] == venue} | {k for k in deltas if k[0] == venue}
    before = after = D(0)
    for key in keys:
        position = ctx.positions.get(key, D(0))
        mark = rules._mark(ctx, key, orders)
        before += abs(position) * mark
        after += abs(position + deltas.get(key, D(0))) * mark
    return before, after


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS), amounts), st.dictionaries(st.sampled_from(KEYS), amounts, min_size=1),
       st.dictionaries(st.sampled_from(KEYS), st.sampled_from([D("60000"), D("3000.5"), D("59990.1")])))
def test_venue_grosses_equal_the_per_venue_definition(positions, deltas, marks):
    ctx = context(positions=positions, mark_prices=marks)
    orders = [OrderRequest(k[0], k[1], "buy", D("1"), D("61000.0"), f"c{i}") for i, k in enumerate(deltas)]
    got = rules.venue_grosses(deltas, orders, ctx)
    assert [venue for venue, _, _ in got] == sorted({k[0] for k in deltas})
    for venue, before, after in got:
        assert (before, after) == per_venue(ctx, venue, deltas, orders)
