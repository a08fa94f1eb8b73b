"""Binance, Bybit and Hyperliquid book fast paths (<venue>.parse.apply_books_frame, what the feed supervisor runs
first) against parse + apply_update: identical books and invalidation reasons frame by frame on the
recorded streams (REST snapshot bridging for Binance), on generated deltas, and on faulted streams."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from perpbot.book.l2 import L2Book
from perpbot.book.sync import apply_update
from perpbot.core.events import BookUpdate, ParseError
from perpbot.settings import FeedSettings
from perpbot.venues.binance import parse as binance
from perpbot.venues.bybit import parse as bybit
from perpbot.venues.hyperliquid import parse as hyperliquid
from perpbot.venues.registry import feed_adapter

MODULES = {"binance": binance, "bybit": bybit, "hyperliquid": hyperliquid}


def _state(book: L2Book) -> tuple:
    return (
        tuple(book.bids.items()), tuple(book.asks.items()), tuple(book.bid_keys), tuple(book.ask_keys),
        book.valid, book.invalid_reason, book.seq, book.exchange_ts_ms, book.recv_ts, book.updates,
        book.invalidations, book.awaiting_first_delta,
    )


class _Pipeline:
    def __init__(self, venue: str, fast: bool, contract: Decimal) -> None:
        self.venue = venue
        self.module = MODULES[venue]
        self.fast = fast
        self.contract = contract
        self.books: dict[tuple[str, str], L2Book] = {}
        self.rules = self.module.Rules()
        self.fast_frames = 0

    def _book(self, symbol: str) -> L2Book:
        key = (self.venue, symbol)
        if key not in self.books:
            self.books[key] = L2Book(self.venue, symbol, self.contract)
        return self.books[key]

    def feed(self, kind: str, frame: bytes, recv_ts: float, symbol: str) -> list[str]:
        if kind == "rest":  # the supervisor's REST snapshot step (Binance)
            update = self.module.parse_snapshot(frame, symbol, recv_ts)
            book = self._book(symbol)
            book.awaiting_first_delta = True
            reason = apply_update(book, update, self.rules)
            return [] if reason is None else [reason]
        if self.fast:
            done = self.module.apply_books_frame(frame, recv_ts, self.books)
            if done is not None:
                self.fast_frames += 1
                return [] if done[2] is None else [done[2]]
        try:
            events = self.module.parse(frame, recv_ts)
        except ParseError as exc:
            return [f"parse error: {exc.reason}"]
        reasons = []
        for event in events:
            if type(event) is BookUpdate:
                reason = apply_update(self._book(event.symbol), event, self.rules)
                if reason is not None:
                    reasons.append(reason)
        return reasons


def _compare(venue: str, stream: list[tuple[str, bytes]], symbol: str, contract: Decimal = Decimal(1)) -> tuple[int, list[str]]:
    generic = _Pipeline(venue, False, contract)
    fast = _Pipeline(venue, True, contract)
    seen = []
    for n, (kind, frame) in enumerate(stream):
        expected = generic.feed(kind, frame, 100.0 + n, symbol)
        assert fast.feed(kind, frame, 100.0 + n, symbol) == expected, f"frame {n}"
        assert generic.books.keys() == fast.books.keys()
        for key, book in generic.books.items():
            assert _state(fast.books[key]) == _state(book), f"frame {n} {key}"
        seen += expected
    return fast.fast_frames, seen


def _binance_stream(fixtures: Path, symbol: str) -> list[tuple[str, bytes]]:
    rows = json.loads((fixtures / "binance" / f"depth_sync_scenario_{symbol}_2021-07-22.json").read_text())
    return [("rest" if row["dir"] == "rest" else "ws", orjson.dumps(row["msg"])) for row in rows if isinstance(row["msg"], dict)]


def _bybit_stream(fixtures: Path, deltas: int = 80) -> list[tuple[str, bytes]]:
    """The recorded snapshot + delta, then deltas reworking the recorded levels (u + 1 each)."""
    snap, delta = json.loads((fixtures / "bybit" / "recorded_ccxt_linear_orderbook50_BTCUSDT_2026-08-12.json").read_text())
    out = [("ws", orjson.dumps(snap)), ("ws", orjson.dumps(delta))]
    bids, asks = snap["data"]["b"], snap["data"]["a"]
    u = delta["data"]["u"]
    for i in range(deltas):
        u += 1
        b = [[bids[(i * 7) % len(bids)][0], f"{(i % 5) * 0.001 + 0.002:.3f}"]]
        a = [[asks[(i * 3) % len(asks)][0], "0" if i % 4 == 0 else asks[(i * 5) % len(asks)][1]]]
        out.append(("ws", orjson.dumps({"topic": snap["topic"], "type": "delta", "ts": snap["ts"] + i,
                                        "data": {"s": "BTCUSDT", "b": b, "a": a, "u": u, "seq": 7 + i}})))
    return out


@pytest.mark.parametrize("symbol", ["AKROUSDT", "CTKUSDT", "KEEPUSDT", "SUSHIUSDT"])
def test_binance_recorded_sync_scenarios_identical_on_both_paths(shared_fixtures, symbol):
    stream = _binance_stream(shared_fixtures, symbol)
    for contract in (Decimal(1), Decimal(10)):
        taken, _ = _compare("binance", stream, symbol, contract)
        assert taken > 50  # the deltas after the snapshot bridge


@pytest.mark.parametrize("contract", [Decimal(1), Decimal("0.001")])
def test_bybit_recorded_and_generated_deltas_identical_on_both_paths(shared_fixtures, contract):
    stream = _bybit_stream(shared_fixtures)
    taken, reasons = _compare("bybit", stream, "BTCUSDT", contract)
    assert taken == len(stream) - 1 and reasons == []  # every delta after the snapshot


def _mutate(frame: bytes, venue: str, fault: str, previous: bytes) -> bytes:
    msg = orjson.loads(frame)
    data = msg["data"]
    side = data["b"] if data["b"] else data["a"]
    if fault == "malformed price":
        side.append(["1e5", "1"])
    elif fault == "off-grid size":
        side.append([side[0][0], "0.000000001"])
    elif fault == "crossed":
        data["b"].append(["99999999", "5"])
    elif fault == "odd level element":
        side.append([side[0][0], side[0][1], 3])
    elif fault == "huge ts":
        msg = json.loads(frame)
        if venue == "binance":
            msg["data"]["E"] = 1 << 70
        else:
            msg["ts"] = 1 << 70
        return json.dumps(msg).encode()
    elif fault == "repeat":
        return previous
    elif fault == "bybit restart (u == 1)":
        data["u"] = 1
    elif fault == "bool seq":
        data["u"] = True
    return orjson.dumps(msg)


FAULTS = ["gap", "malformed price", "off-grid size", "crossed", "odd level element", "huge ts", "repeat", "bool seq"]


@pytest.mark.parametrize("fault", FAULTS)
def test_binance_faults_identical_on_both_paths(shared_fixtures, fault):
    stream = _binance_stream(shared_fixtures, "SUSHIUSDT")[:120]
    index = 100
    assert stream[index][0] == "ws"
    faulted = copy.copy(stream)
    if fault == "gap":
        del faulted[index]
    else:
        faulted[index] = ("ws", _mutate(stream[index][1], "binance", fault, stream[index - 1][1]))
    _compare("binance", faulted, "SUSHIUSDT", Decimal("0.01"))


@pytest.mark.parametrize("fault", FAULTS + ["bybit restart (u == 1)"])
def test_bybit_faults_identical_on_both_paths(shared_fixtures, fault):
    stream = _bybit_stream(shared_fixtures)
    index = 40
    faulted = copy.copy(stream)
    if fault == "gap":
        del faulted[index]
    else:
        faulted[index] = ("ws", _mutate(stream[index][1], "bybit", fault, stream[index - 1][1]))
    _, reasons = _compare("bybit", faulted, "BTCUSDT", Decimal("0.01"))
    if fault not in ("repeat", "huge ts", "bybit restart (u == 1)", "odd level element"):
        assert reasons, fault  # an invalidation or a parse error, the same on both paths


def test_the_feed_adapters_offer_their_fast_paths():
    for venue, module in MODULES.items():
        assert feed_adapter(venue, FeedSettings()).apply_books_frame is module.apply_books_frame


def _hyperliquid_stream(fixtures: Path, pushes: int = 40) -> list[tuple[str, bytes]]:
    """The two recorded l2Book snapshots alternating, block time rising, one size reworked per push."""
    rows = json.loads((fixtures / "hyperliquid" / "recorded_ccxt_l2Book_BTC_2026-08-12.json").read_text())
    books = [r for r in rows if r.get("channel") == "l2Book"]
    out = []
    for i in range(pushes):
        msg = copy.deepcopy(books[i % 2])
        msg["data"]["time"] += i * 1000
        msg["data"]["levels"][i % 2][i % 5]["sz"] = f"{1 + i / 1000:.3f}"
        out.append(("ws", orjson.dumps(msg)))
    return out


def test_hyperliquid_recorded_snapshots_identical_on_both_paths(shared_fixtures):
    stream = _hyperliquid_stream(shared_fixtures)
    for contract in (Decimal(1), Decimal("0.1")):
        taken, reasons = _compare("hyperliquid", stream, "BTC", contract)
        assert taken == len(stream) - 1 and reasons == []  # every push after the first snapshot


@pytest.mark.parametrize("fault", ["malformed price", "crossed", "huge time", "missing sz", "three sides",
                                   "older time", "extra level keys"])
def test_hyperliquid_faults_identical_on_both_paths(shared_fixtures, fault):
    stream = _hyperliquid_stream(shared_fixtures, 12)
    index = 6
    msg = json.loads(stream[index][1])
    bids, asks = msg["data"]["levels"]
    if fault == "malformed price":
        bids.append({"px": "1e5", "sz": "1", "n": 1})
    elif fault == "crossed":
        bids.append({"px": "99999999", "sz": "1", "n": 1})
    elif fault == "huge time":
        msg["data"]["time"] = 1 << 70
    elif fault == "missing sz":
        del bids[0]["sz"]
    elif fault == "three sides":
        msg["data"]["levels"].append([])
    elif fault == "older time":
        msg["data"]["time"] -= 100_000
    elif fault == "extra level keys":
        bids[0]["n"] = "many"
        bids[0]["extra"] = [1, 2]
    stream[index] = ("ws", json.dumps(msg).encode())
    _, reasons = _compare("hyperliquid", stream, "BTC")
    if fault in ("malformed price", "crossed", "huge time", "missing sz", "three sides"):
        assert reasons, fault
