"""The simulator's public feeds, consumed by the real venue adapters and parsers, build books equal to the market."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from perpbot.book.l2 import L2Book
from perpbot.book.sync import apply_update
from perpbot.core.events import BookUpdate, FundingUpdate
from perpbot.core.numbers import decimal_to_scaled
from perpbot.settings import FeedSettings, Settings
from perpbot.sim.server import Simulator
from perpbot.venues.registry import feed_adapter

VENUES = ("okx", "binance", "bybit", "hyperliquid")


def sim_settings(**sim: object) -> Settings:
    base = {"ports": {v: 0 for v in VENUES}, "admin_port": 0, "tick_interval_s": 0.02, "seed": 11}
    base.update(sim)
    return Settings(sim=base)


def expected_top(sim: Simulator, venue: str, symbol: str, depth: int) -> tuple[list, list]:
    inst = sim.market.instrument(venue, symbol)
    bids, asks = sim.market.levels(venue, symbol)

    def conv(levels: list) -> list:
        return [(decimal_to_scaled(p), decimal_to_scaled(q * inst.contract_size)) for p, q in levels[:depth]]

    return conv(bids), conv(asks)


async def run_books(venue: str, ticks: int, **sim_opts: object) -> tuple[dict, Simulator, list]:
    """Connect the venue's real adapter to a manual-tick simulator; return its books once they match."""
    settings = sim_settings(**sim_opts)
    adapter = feed_adapter(venue, FeedSettings())
    funding: list[FundingUpdate] = []
    async with Simulator(settings, autotick=False) as sim:
        ws_url = f"ws://127.0.0.1:{sim.ports[venue]}" + {"okx": "/ws/v5/public", "binance": "",
                                                          "bybit": "/v5/public/linear", "hyperliquid": "/ws"}[venue]
        symbols = sim.market.symbols(venue)
        books = {
            s: L2Book(venue, s, sim.market.instrument(venue, s).contract_size, keep_raw=adapter.keep_raw)
            for s in symbols
        }
        failures: list[str] = []
        async with aiohttp.ClientSession() as http:
            sockets = []
            for spec in adapter.connections(ws_url, symbols):
                ws = await http.ws_connect(spec.url)
                for frame in spec.subscribe_frames:
                    await ws.send_str(frame)
                sockets.append(ws)

            def ingest(text: str) -> None:
                for event in adapter.parse(text, time.time()):
                    if isinstance(event, BookUpdate):
                        reason = apply_update(books[event.symbol], event, adapter.rules)
                        if reason:
                            failures.append(reason)
                    elif isinstance(event, FundingUpdate):
                        funding.append(event)

            async def pump(ws: aiohttp.ClientWebSocketResponse) -> None:
                async for msg in ws:
                    ingest(msg.data)

            pumps = [asyncio.create_task(pump(ws)) for ws in sockets]
            await sim.advance(2)
            if adapter.rest_snapshot:
                for s in symbols:
                    async with http.get(adapter.snapshot_url(f"http://127.0.0.1:{sim.ports[venue]}", s)) as r:
                        body = await r.read()
                    books[s].awaiting_first_delta = True
                    apply_update(books[s], adapter.parse_snapshot(body, s, time.time()), adapter.rules)
            for _ in range(ticks):
                await sim.advance(1)
            depth = 20 if venue == "hyperliquid" else 50

            async def converged() -> None:
                while not all(
                    books[s].valid
                    and (books[s].top(True, depth), books[s].top(False, depth)) == expected_top(sim, venue, s, depth)
                    for s in symbols
                ):
                    await asyncio.sleep(0.005)

            try:
                await asyncio.wait_for(converged(), 5)
            finally:
                for task in pumps:
                    task.cancel()
                for ws in sockets:
                    await ws.close()
        return books, sim, failures + [f"funding:{len(funding)}"]


@pytest.mark.parametrize("venue", VENUES)
async def test_real_adapter_builds_book_equal_to_simulated_market(venue: str) -> None:
    books, sim, notes = await run_books(venue, ticks=40)
    failures = [n for n in notes if not n.startswith("funding:")]
    assert failures == []
    for book in books.values():
        assert book.valid and book.updates >= 2
        assert book.best_bid() < book.best_ask()


async def test_okx_real_crc32_checksums_verify_in_the_real_rules() -> None:
    books, _, notes = await run_books("okx", ticks=30, okx_checksum_zero=False)
    assert [n for n in notes if not n.startswith("funding:")] == []
    assert all(b.valid for b in books.values())


async def test_okx_checksum_zero_mode_still_syncs_by_sequence() -> None:
    books, _, notes = await run_books("okx", ticks=20, okx_checksum_zero=True)
    assert [n for n in notes if not n.startswith("funding:")] == []
    assert all(b.valid for b in books.values())
