"""Client order ids: deterministic, and in each venue's accepted format."""

import re

from hypothesis import given
from hypothesis import strategies as st

from perpbot.execution.client_ids import canonical_client_id, client_order_id

FORMATS = {
    "okx": re.compile(r"^[A-Za-z0-9]{1,32}$"),
    "binance": re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$"),
    "bybit": re.compile(r"^[A-Za-z0-9_-]{1,36}$"),
    "hyperliquid": re.compile(r"^0x[0-9a-f]{32}$"),
}


@given(intent=st.text(min_size=1, max_size=80), leg=st.text(max_size=10), attempt=st.integers(0, 999))
def test_client_ids_fit_every_venue_format_for_any_intent(intent, leg, attempt):
    for venue, pattern in FORMATS.items():
        assert pattern.match(client_order_id(venue, intent, leg, attempt)), venue


def test_same_intent_leg_attempt_gives_the_same_id_and_attempts_differ():
    for venue in FORMATS:
        first = client_order_id(venue, "a1b2c3d4e5f60718", "a", 0)
        assert first == client_order_id(venue, "a1b2c3d4e5f60718", "a", 0)
        assert first != client_order_id(venue, "a1b2c3d4e5f60718", "a", 1)
        assert first != client_order_id(venue, "a1b2c3d4e5f60718", "b", 0)


def test_long_intent_ids_are_hashed_but_stay_distinct():
    a = canonical_client_id("x" * 60 + "1", "a", 0)
    b = canonical_client_id("x" * 60 + "2", "a", 0)
    assert a != b and len(a) <= 32 and len(b) <= 32
