"""The rate budget on its own: windows filled by charges, orders refused (never delayed) at the limit,
reads kept below it to leave room for orders, the venues' usage headers taken over, and a 429 / 418
with Retry-After stopping the venue for exactly that long. Times are passed in: no clock, no sleep."""

from __future__ import annotations

import pytest

from perpbot.execution.rate_budget import CANCEL, ORDER, RATE_BUDGET, RATE_LIMITED, BodyRoute, Endpoint, \
    RateBudget, RemainingHeaders, VenueLimits, WindowSpec
from perpbot.execution.rate_limits import venue_limits

T0 = 1_700_000_040.0  # on a calendar minute: aligned windows start here


def small_venue(aligned: bool = False) -> VenueLimits:
    """10 weight per 10 s shared by orders (1) and reads (2), plus 3 orders per second."""
    return VenueLimits(
        venue="v",
        windows=(WindowSpec("weight", 10, 10.0, aligned=aligned, used_header="X-Used"),
                 WindowSpec("orders", 3, 1.0)),
        endpoints=(Endpoint(ORDER, (("weight", 1), ("orders", 1)), kind="order"),
                   Endpoint(CANCEL, (("weight", 1),), kind="cancel"),
                   Endpoint("read", (("weight", 2),))),
        routes={("POST", "/order"): ORDER, ("GET", "/order"): "read"},
        stop_statuses={429: None, 418: 120.0},
        default_endpoint="read",
    )


def budget(**kwargs) -> RateBudget:
    return RateBudget({"v": small_venue(**kwargs)}, read_headroom_percent=20, clock=lambda: T0)


def used(b: RateBudget, window: str, now: float) -> int:
    venue = b.snapshot(now).venue("v")
    assert venue is not None
    return next(w.used for w in venue.windows if w.name == window)


def test_orders_pass_until_the_order_window_is_full_then_are_refused_not_delayed():
    b = budget()
    for i in range(3):
        assert b.try_order("v", now=T0 + i * 0.1) is None
        b.charge("v", ORDER, now=T0 + i * 0.1)
    refusal = b.try_order("v", now=T0 + 0.3)
    assert refusal is not None and refusal.rule == RATE_BUDGET
    assert "orders: 3 used + 1 > 3 per 1s" in refusal.detail
    # A rolling window: one second after the first order, its slot is free again.
    assert b.try_order("v", now=T0 + 1.0) is None


def test_an_entry_keeps_room_for_its_repairs():
    b = budget()
    b.charge("v", ORDER, now=T0)
    assert b.try_order("v", count=1, reserve=1, now=T0) is None  # 1 + 1 + 1 reserved = 3
    refusal = b.try_order("v", count=1, reserve=2, now=T0)
    assert refusal is not None and "keeping 2 for repairs" in refusal.detail
    assert b.try_order("v", count=2, reserve=0, now=T0) is None  # a repair may use the reserve


def test_reads_wait_short_of_the_limit_so_that_orders_still_fit():
    b = budget()
    for _ in range(4):  # 8 of 10: the read cap is 10 - 20 % = 8
        assert b.read_wait("v", "read", now=T0) == 0
        b.charge("v", "read", now=T0)
    wait = b.read_wait("v", "read", now=T0 + 2.0)
    assert wait == pytest.approx(8.0)  # until the first reads leave the 10 s window
    assert b.try_order("v", now=T0 + 2.0) is None  # the order still fits: 8 + 1 <= 10
    assert b.snapshot(T0).venue("v").reads_deferred == 1  # type: ignore[union-attr]


def test_a_cancel_may_use_the_headroom_reads_leave():
    b = budget()
    for _ in range(4):
        b.charge("v", "read", now=T0)
    assert b.read_wait("v", "read", now=T0) > 0
    assert b.read_wait("v", CANCEL, now=T0) == 0


def test_usage_header_replaces_the_estimate_for_the_current_interval():
    b = budget(aligned=True)
    b.charge("v", "read", now=T0 + 1)
    b.observe("v", 200, {"x-used": "9"}, "read", now=T0 + 1)  # other clients on the same IP used more
    assert used(b, "weight", T0 + 1) == 9
    refusal = b.try_order("v", count=2, now=T0 + 1)
    assert refusal is not None and "weight: 9 used + 2 > 10" in refusal.detail
    b.charge("v", ORDER, now=T0 + 2)
    assert used(b, "weight", T0 + 2) == 10  # our charges count on top of the venue's figure
    assert used(b, "weight", T0 + 10) == 0  # a new calendar interval: the count starts again


def test_a_429_with_retry_after_stops_orders_and_reads_for_that_long():
    b = budget()
    b.observe("v", 429, {"Retry-After": "3"}, ORDER, now=T0)
    refusal = b.try_order("v", now=T0 + 2.9)
    assert refusal is not None and refusal.rule == RATE_LIMITED
    assert "HTTP 429 (Retry-After 3s)" in refusal.detail
    assert b.read_wait("v", "read", now=T0 + 1) == pytest.approx(2.0)
    assert b.try_order("v", now=T0 + 3.0) is None
    snapshot = b.snapshot(T0 + 1).venue("v")
    assert snapshot is not None and snapshot.blocked_for_s == pytest.approx(2.0)
    assert snapshot.stop_responses == {429: 1}


def test_a_429_marks_the_endpoint_windows_full_the_budget_learns_it_was_short():
    b = budget()
    b.charge("v", ORDER, now=T0)
    b.observe("v", 429, {"Retry-After": "0.5"}, ORDER, now=T0)  # 1 of 3 counted, yet the venue said stop
    assert used(b, "orders", T0 + 0.4) == 3  # the order windows are full while the Retry-After runs
    assert used(b, "weight", T0 + 0.4) == 10
    assert used(b, "orders", T0 + 0.5) == 1  # then our own count again
    assert b.try_order("v", now=T0 + 0.5) is None


def test_a_418_without_retry_after_uses_the_venue_ban_default():
    b = budget()
    b.observe("v", 418, {}, None, now=T0)
    assert b.blocked_for("v", now=T0) == pytest.approx(120.0)
    refusal = b.try_order("v", now=T0 + 60)
    assert refusal is not None and "no Retry-After, default 120s" in refusal.detail


def test_retry_after_as_an_http_date():
    b = budget()
    b.observe("v", 429, {"Retry-After": "Tue, 14 Nov 2023 22:14:05 GMT"}, None, now=1_700_000_040.0)
    assert b.blocked_for("v", now=1_700_000_040.0) == pytest.approx(5.0)


def test_a_later_shorter_retry_after_does_not_shorten_a_ban():
    b = budget()
    b.observe("v", 418, {"Retry-After": "60"}, None, now=T0)
    b.observe("v", 429, {"Retry-After": "1"}, None, now=T0 + 1)
    assert b.blocked_for("v", now=T0 + 2) == pytest.approx(58.0)


def test_unknown_venue_and_unlisted_path():
    b = budget()
    assert b.try_order("elsewhere") is None and b.read_wait("elsewhere", "x") == 0
    assert b.endpoint_of("v", "DELETE", "/nowhere") == "read"  # the venue's default: still counted


def test_per_endpoint_remaining_headers_set_limit_and_usage_until_reset():
    limits = VenueLimits(
        venue="v", windows=(WindowSpec("create", 10, 1.0),),
        endpoints=(Endpoint(ORDER, (("create", 1),), kind="order", header_window="create"),),
        routes={}, stop_statuses={429: None},
        remaining_headers=RemainingHeaders("X-Bapi-Limit-Status", "X-Bapi-Limit", "X-Bapi-Limit-Reset-Timestamp"),
    )
    b = RateBudget({"v": limits})
    b.observe("v", 200, {"X-Bapi-Limit-Status": "0", "X-Bapi-Limit": "5",
                         "X-Bapi-Limit-Reset-Timestamp": str(int((T0 + 0.5) * 1000))}, ORDER, now=T0)
    refusal = b.try_order("v", now=T0 + 0.2)
    assert refusal is not None and "5 used + 1 > 5" in refusal.detail  # the venue's limit, learnt
    assert b.try_order("v", now=T0 + 0.5) is None  # reset as the venue said


# -- the declared venues ---------------------------------------------------------------------------
def test_every_declared_venue_builds_and_names_its_order_endpoint():
    b = RateBudget(venue_limits())
    assert set(b.venues()) == {"okx", "binance", "bybit", "hyperliquid"}
    for venue in b.venues():
        assert b.try_order(venue, now=T0) is None


@pytest.mark.parametrize("venue, method, path, body, endpoint", [
    ("binance", "POST", "/fapi/v1/order", None, ORDER),
    ("binance", "DELETE", "/fapi/v1/order", None, CANCEL),
    ("binance", "GET", "/fapi/v1/userTrades", None, "user_trades"),
    ("okx", "POST", "/api/v5/trade/order", None, ORDER),
    ("bybit", "POST", "/v5/order/create", None, ORDER),
    ("hyperliquid", "POST", "/exchange", b'{"action":{"type":"order","orders":[]},"nonce":1}', ORDER),
    ("hyperliquid", "POST", "/exchange", b'{"action":{"type":"cancelByCloid"}}', CANCEL),
    ("hyperliquid", "POST", "/info", b'{"type":"orderStatus","user":"0x1"}', "info_light"),
    ("hyperliquid", "POST", "/info", b'{"type":"userFills"}', "info"),
    ("hyperliquid", "POST", "/info", b'not json', "info"),
])
def test_rest_requests_map_to_the_venue_endpoints(venue, method, path, body, endpoint):
    assert RateBudget(venue_limits()).endpoint_of(venue, method, path, body) == endpoint


def test_binance_orders_count_in_the_order_windows_not_the_ip_weight():
    b = RateBudget(venue_limits())
    b.charge("binance", ORDER, now=T0)
    venue = b.snapshot(T0).venue("binance")
    assert venue is not None
    assert {w.name: w.used for w in venue.windows} == {"weight_1m": 0, "orders_10s": 1, "orders_1m": 1}


def test_binance_ten_second_order_window_refuses_the_301st_order():
    b = RateBudget(venue_limits())
    for _ in range(300):
        b.charge("binance", ORDER, now=T0 + 1)
    refusal = b.try_order("binance", now=T0 + 1)
    assert refusal is not None and "orders_10s: 300 used + 1 > 300" in refusal.detail
    assert b.try_order("binance", now=T0 + 10) is None  # the next 10 s interval


def test_hyperliquid_body_route_field_path():
    route = BodyRoute(("action", "type"), {"order": ORDER}, "action")
    limits = VenueLimits("h", (WindowSpec("w", 5, 60.0),), (Endpoint(ORDER, (("w", 1),), kind="order"),
                                                          Endpoint("action", (("w", 1),))),
                         {("POST", "/exchange"): route}, {429: None})
    b = RateBudget({"h": limits})
    assert b.endpoint_of("h", "post", "/exchange", '{"action": {"type": "order"}}') == ORDER
    assert b.endpoint_of("h", "POST", "/exchange", '{"action": 3}') == "action"


def test_an_action_allowance_stop_leaves_reads_going():
    """Hyperliquid: a 429 answering an order is the address's action allowance: orders stop, reads go on."""
    b = RateBudget(venue_limits())
    b.observe("hyperliquid", 429, {}, ORDER, now=T0)
    refusal = b.try_order("hyperliquid", now=T0 + 9)
    assert refusal is not None and "default 10s" in refusal.detail
    assert b.read_wait("hyperliquid", "info", now=T0 + 1) == 0
    assert b.read_wait("hyperliquid", CANCEL, now=T0 + 1) == pytest.approx(9.0)
    b.observe("hyperliquid", 429, {}, "info", now=T0 + 1)  # a read answered 429: the IP's limit, all stop
    assert b.read_wait("hyperliquid", "info", now=T0 + 2) == pytest.approx(9.0)


def test_an_order_socket_answer_is_an_order_answer():
    b = RateBudget(venue_limits())
    b.observe_order("hyperliquid", 429, {})  # a WebSocket order answered 429, no Retry-After
    assert b.try_order("hyperliquid", now=b.clock() + 5) is not None
    assert b.read_wait("hyperliquid", "info_light") == 0
