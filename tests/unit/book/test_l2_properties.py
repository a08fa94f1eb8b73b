"""Property tests: L2Book delta application, validity invariant after apply_update, exact number round-trips."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from perpbot.book.l2 import L2Book
from perpbot.book.sync import APPLY, apply_update
from perpbot.core.events import BookUpdate
from perpbot.core.numbers import SCALE, decimal_to_scaled, scaled_to_decimal, scaled_to_str, to_scaled

PRICES = st.integers(min_value=1, max_value=400).map(lambda ticks: f"{ticks / 10:.1f}")
SIZES = st.one_of(st.just("0"), st.integers(min_value=1, max_value=10_000).map(lambda lots: f"{lots / 1000:.3f}"))
LEVELS = st.lists(st.tuples(PRICES, SIZES).map(list), max_size=12)
DELTAS = st.lists(st.tuples(LEVELS, LEVELS), max_size=25)


class AlwaysApply:
    def check_sequence(self, book, update):
        return APPLY

    def verify_checksum(self, book, checksum):
        return True


def _update(seq: int, bids, asks, snapshot: bool) -> BookUpdate:
    return BookUpdate("test", "X", snapshot, bids, asks, seq, seq - 1, None, None, seq, float(seq))


@settings(max_examples=200, deadline=None)
@given(DELTAS)
def test_applying_any_deltas_equals_rebuilding_from_the_final_state(deltas):
    book = L2Book("test", "X", keep_raw=True)
    # canonical price -> the (price, size) strings last sent for it
    model_bids: dict[str, tuple[str, str]] = {}
    model_asks: dict[str, tuple[str, str]] = {}
    for bids, asks in deltas:
        book.apply_side(bids, True)
        book.apply_side(asks, False)
        for model, levels in ((model_bids, bids), (model_asks, asks)):
            for price, size in levels:
                key = scaled_to_str(to_scaled(price))
                if to_scaled(size) == 0:
                    model.pop(key, None)
                else:
                    model[key] = (price, size)
    rebuilt = L2Book("test", "X", keep_raw=True)
    rebuilt.replace([list(level) for level in model_bids.values()], [list(level) for level in model_asks.values()])
    assert book.bids == rebuilt.bids and book.asks == rebuilt.asks
    assert book.bid_keys == rebuilt.bid_keys == sorted(book.bids)
    assert book.ask_keys == rebuilt.ask_keys == sorted(book.asks)
    assert book.top_raw(True, 25) == rebuilt.top_raw(True, 25)


@settings(max_examples=200, deadline=None)
@given(LEVELS, LEVELS, DELTAS)
def test_every_valid_book_after_apply_update_has_best_bid_below_best_ask(bids, asks, deltas):
    book = L2Book("test", "X")
    rules = AlwaysApply()
    apply_update(book, _update(1, bids, asks, True), rules)
    seq = 1
    for delta_bids, delta_asks in deltas:
        if book.seq is None:  # invalidated: a fresh snapshot is the only way back
            seq += 1
            apply_update(book, _update(seq, bids, asks, True), rules)
        seq += 1
        apply_update(book, _update(seq, delta_bids, delta_asks, False), rules)
        if book.valid and book.bid_keys and book.ask_keys:
            assert book.best_bid() < book.best_ask()
        if book.is_crossed():
            assert not book.valid


@settings(max_examples=300, deadline=None)
@given(st.decimals(min_value=0, max_value=10**12, places=SCALE, allow_nan=False, allow_infinity=False))
def test_to_scaled_and_scaled_to_str_round_trip_exactly(value: Decimal):
    text = scaled_to_str(decimal_to_scaled(value))
    assert Decimal(text) == value
    assert to_scaled(text) == decimal_to_scaled(value)
    assert scaled_to_decimal(to_scaled(text)) == value
    assert scaled_to_str(to_scaled(text)) == text  # canonical form is a fixed point


@given(st.integers(min_value=0, max_value=10**6), st.integers(min_value=0, max_value=10**9 - 1))
def test_trailing_zeros_beyond_the_scale_are_accepted_but_real_digits_are_not(whole, frac):
    text = f"{whole}.{frac:09d}"
    assert to_scaled(text + "000") == to_scaled(text)
    try:
        to_scaled(text + "1")
    except ValueError:
        pass
    else:
        raise AssertionError("a 10th decimal digit must be refused, not rounded")


@settings(max_examples=200, deadline=None)
@given(LEVELS, LEVELS, st.booleans(), st.sampled_from([Decimal(1), Decimal("0.01"), Decimal(10)]))
def test_bulk_replace_equals_applying_the_levels_one_by_one_to_an_empty_book(bids, asks, keep_raw, contract):
    # Duplicated prices (a later level wins) and zero sizes (drop) included by the strategies.
    bulk = L2Book("test", "X", contract, keep_raw=keep_raw)
    bulk.apply_side([["999.9", "1"]], True)  # whatever was there before goes
    one_by_one = L2Book("test", "X", contract, keep_raw=keep_raw)
    try:
        one_by_one.apply_side(bids, True)
        one_by_one.apply_side(asks, False)
    except ValueError:
        one_by_one.clear()
        try:
            bulk.replace(bids, asks)
        except ValueError:
            pass
        else:
            raise AssertionError("replace accepted levels that apply_side refused")
        assert not bulk.bids and not bulk.asks and not bulk.bid_keys and not bulk.bid_frags
        return
    bulk.replace(bids, asks)
    assert bulk.bids == one_by_one.bids and bulk.asks == one_by_one.asks
    assert bulk.bid_keys == one_by_one.bid_keys and bulk.ask_keys == one_by_one.ask_keys
    assert bulk.bid_frags == one_by_one.bid_frags and bulk.ask_frags == one_by_one.ask_frags
