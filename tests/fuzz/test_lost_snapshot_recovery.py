"""Regression (found by the soak run): a WebSocket snapshot lost after (re)subscribing left the book
invalid forever while deltas kept the connection alive; now the supervisor resubscribes."""

from __future__ import annotations

import orjson

from perpbot.book.store import BookStore
from perpbot.feeds import supervisor as sup
from perpbot.settings import FeedSettings
from perpbot.venues.registry import feed_adapter


def _delta(u: int) -> bytes:
    return orjson.dumps({"topic": "orderbook.50.BTCUSDT", "type": "delta", "ts": 1, "data":
                         {"s": "BTCUSDT", "b": [["100.0", "1"]], "a": [], "u": u}})


def _snapshot(u: int) -> bytes:
    return orjson.dumps({"topic": "orderbook.50.BTCUSDT", "type": "snapshot", "ts": 1, "data":
                         {"s": "BTCUSDT", "b": [["100.0", "1"]], "a": [["101.0", "2"]], "u": u}})


def _supervisor():
    supervisor = sup.FeedSupervisor(BookStore(5.0), None, FeedSettings())
    (conn,) = supervisor.add_venue(feed_adapter("bybit", FeedSettings()), "ws://127.0.0.1:9/none", "http://127.0.0.1:9",
                                   ["BTCUSDT"])
    return supervisor, supervisor.venues["bybit"], conn


def test_deltas_without_a_snapshot_for_longer_than_the_wait_queue_a_resubscribe(monkeypatch):
    supervisor, feed, conn = _supervisor()
    monkeypatch.setattr(sup, "SNAPSHOT_WAIT_S", 0.0)
    conn.on_frame(conn, _delta(10), 1.0)  # starts the clock
    assert "BTCUSDT" not in feed.pending
    conn.on_frame(conn, _delta(11), 1.0)  # still no snapshot: resubscribe
    assert feed.pending.get("BTCUSDT") == "no snapshot"
    assert supervisor.store.get("bybit", "BTCUSDT").invalid_reason == "no snapshot"


def test_deltas_just_before_the_snapshot_do_not_resubscribe_and_the_snapshot_clears_the_wait():
    supervisor, feed, conn = _supervisor()
    conn.on_frame(conn, _delta(10), 1.0)
    conn.on_frame(conn, _delta(11), 1.0)
    assert "BTCUSDT" not in feed.pending  # within SNAPSHOT_WAIT_S: in-flight deltas are normal
    conn.on_frame(conn, _snapshot(12), 1.0)
    assert "BTCUSDT" not in feed.awaiting_since
    assert supervisor.store.get("bybit", "BTCUSDT").valid
