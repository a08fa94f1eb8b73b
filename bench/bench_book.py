"""Benchmark of the market-data hot path: OKX frame -> parse -> integrity -> L2 apply -> best bid/ask + vwap.

Run: python bench/bench_book.py
Streams: the recorded 2022 OKX `books` capture (290 checksummed messages, 3 instruments) and a
generated OKX-like stream (400-level books, ~5 changed levels per update). Each stream runs in
two integrity modes: sequence only (checksum sent as 0, i.e. OKX today) and sequence + CRC32.
Next to each, `orjson.loads` of the same bytes is the floor. Runs are interleaved, the median of
7 is reported as messages/second and as the ratio to the floor.
"""

from __future__ import annotations

import gc
import json
import random
import statistics
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from perpbot.book.l2 import L2Book  # noqa: E402
from perpbot.book.sync import apply_update  # noqa: E402
from perpbot.core.numbers import ONE  # noqa: E402
from perpbot.venues.okx.parse import Rules, checksum_string, crc32_signed, parse  # noqa: E402

FIXTURES = ROOT / ".." / "shared" / "fixtures" / "okx"
RUNS = 7
VWAP_QTY = ONE  # 1 unit of base


def recorded_frames(with_checksum: bool) -> list[tuple[str, bytes]]:
    frames = []
    for path in sorted(FIXTURES.glob("books_checksum_replay_*.json")):
        for row in json.loads(path.read_text()):
            msg = row.get("msg") or {}
            if row["dir"] != "recv" or "data" not in msg:
                continue
            if not with_checksum:
                for item in msg["data"]:
                    item["checksum"] = 0
            frames.append((msg["arg"]["instId"], orjson.dumps(msg)))
    return frames


def generated_frames(with_checksum: bool, updates: int = 5000, depth: int = 400, seed: int = 7) -> list[tuple[str, bytes]]:
    """A 400-level snapshot then `updates` deltas of ~5 levels each, seqId/prevSeqId chained."""
    rng = random.Random(seed)
    symbol = "BTC-USDT-SWAP"
    mid = 600_000  # in ticks of 0.1
    bids = {mid - i: rng.randint(1, 5000) for i in range(1, depth + 1)}
    asks = {mid + i: rng.randint(1, 5000) for i in range(0, depth)}
    shadow = L2Book("okx", symbol, keep_raw=True)

    def px(tick: int) -> str:
        return f"{tick // 10}.{tick % 10}"

    def levels(side: dict[int, int], keys) -> list[list[str]]:
        return [[px(k), str(side[k]) if side.get(k) else "0", "0", "1"] for k in keys]

    def frame(action: str, seq: int, prev: int, bid_levels, ask_levels) -> bytes:
        shadow.apply_side(bid_levels, True) if action == "update" else shadow.replace(bid_levels, ask_levels)
        if action == "update":
            shadow.apply_side(ask_levels, False)
        checksum = crc32_signed(checksum_string(shadow)) if with_checksum else 0
        return orjson.dumps(
            {"arg": {"channel": "books", "instId": symbol}, "action": action,
             "data": [{"asks": ask_levels, "bids": bid_levels, "ts": str(1700000000000 + seq),
                       "checksum": checksum, "prevSeqId": prev, "seqId": seq}]}
        )

    out = [(symbol, frame("snapshot", 1, -1, levels(bids, sorted(bids, reverse=True)), levels(asks, sorted(asks))))]
    seq = 1
    for _ in range(updates):
        changed_bids, changed_asks = [], []
        for _ in range(5):
            is_bid = rng.random() < 0.5
            side, changed = (bids, changed_bids) if is_bid else (asks, changed_asks)
            best_bid, best_ask = max(bids), min(asks)
            roll = rng.random()
            if roll < 0.6 and side:  # resize an existing level near the top
                keys = sorted(side, reverse=is_bid)[:50]
                tick = rng.choice(keys)
                side[tick] = rng.randint(1, 5000)
            elif roll < 0.8 and len(side) > depth // 2:  # delete
                tick = rng.choice(sorted(side, reverse=is_bid)[:50])
                del side[tick]
            else:  # insert inside the spread-free region
                tick = (best_bid - rng.randint(1, 60)) if is_bid else (best_ask + rng.randint(1, 60))
                side[tick] = rng.randint(1, 5000)
            if tick not in changed:
                changed.append(tick)
        prev, seq = seq, seq + rng.randint(1, 20)
        out.append((symbol, frame("update", seq, prev, levels(bids, changed_bids), levels(asks, changed_asks))))
    return out


def run_pipeline(frames: list[tuple[str, bytes]], with_checksum: bool) -> float:
    rules = Rules()
    books: dict[str, L2Book] = {}
    sink = 0.0
    start = time.perf_counter()
    for symbol, raw in frames:
        for update in parse(raw, 0.0):
            book = books.get(update.symbol)
            if book is None:
                book = books[update.symbol] = L2Book("okx", update.symbol, keep_raw=with_checksum)
            if apply_update(book, update, rules) is not None:
                raise RuntimeError(f"book invalidated on {update.symbol}: {book.invalid_reason}")
            best_bid = book.best_bid()
            best_ask = book.best_ask()
            vwap = book.vwap(True, VWAP_QTY)
            sink += (best_bid or 0) + (best_ask or 0) + (vwap or 0.0)
    elapsed = time.perf_counter() - start
    if sink == 0:
        raise RuntimeError("pipeline produced nothing")
    return elapsed


def run_floor(frames: list[tuple[str, bytes]]) -> float:
    loads = orjson.loads
    start = time.perf_counter()
    for _, raw in frames:
        loads(raw)
    return time.perf_counter() - start


def main() -> None:
    cases = [
        ("recorded OKX books (290 msgs)", False, recorded_frames(False)),
        ("recorded OKX books (290 msgs)", True, recorded_frames(True)),
        ("generated 400-level, 5 levels/update", False, generated_frames(False)),
        ("generated 400-level, 5 levels/update", True, generated_frames(True)),
    ]
    timings: dict[int, tuple[list[float], list[float]]] = {i: ([], []) for i in range(len(cases))}
    gc.disable()
    try:
        for _ in range(RUNS):  # interleaved: every case once per round
            for index, (_, with_checksum, frames) in enumerate(cases):
                timings[index][1].append(run_floor(frames))
                timings[index][0].append(run_pipeline(frames, with_checksum))
            gc.collect()
    finally:
        gc.enable()
    print(f"{'stream':40s} {'integrity':18s} {'msgs':>6s} {'pipeline msg/s':>15s} {'orjson msg/s':>13s} {'ratio':>6s}")
    for index, (name, with_checksum, frames) in enumerate(cases):
        pipeline = statistics.median(timings[index][0])
        floor = statistics.median(timings[index][1])
        n = len(frames)
        print(
            f"{name:40s} {'sequence+checksum' if with_checksum else 'sequence':18s} {n:6d} "
            f"{n / pipeline:15,.0f} {n / floor:13,.0f} {pipeline / floor:6.1f}x"
        )


if __name__ == "__main__":
    main()
