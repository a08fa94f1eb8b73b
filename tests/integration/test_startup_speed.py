"""Start-up after a crash, wiring side, against the in-process simulator: instruments (and the venue
clients' market lists) come from the journal's cache, so no venue call stands before the repair; the
cache is refreshed from the venues in the background; an instrument that changed replaces the cached
one in place; a changed contract size leaves its venue out of trading; the feeds' contract sizes come
from the same cache. Behaviour only: the timing is measured by bench/startup_recovery.py."""

import dataclasses
import logging
from decimal import Decimal as D

import pytest
from perpbot.app import build_feeds, venue_contract_sizes
from perpbot.book.store import BookStore
from perpbot.execution.ccxt_client import CcxtClient
from perpbot.execution.order_routing import rest_of
from perpbot.feeds.supervisor import FundingStore
from perpbot.journal.sqlite import Journal
from perpbot.settings import Settings
from perpbot.sim.server import Simulator
from perpbot.telemetry.metrics import Metrics
from perpbot.wiring import build_engine
from testkit import free_port

VENUES = ("okx", "hyperliquid", "binance", "bybit")


def sim_settings(tmp_path, ports=None) -> Settings:
    ports = ports or {venue: free_port() for venue in VENUES}
    return Settings(mode="sim", log_dir=str(tmp_path / "logs"), journal={"path": str(tmp_path / "journal.sqlite")},
                    sim={"enabled": True, "ports": ports, "admin_port": free_port()},
                    execution={"order_timeout_s": 2.0})


async def build(settings, store=None):
    return await build_engine(settings, metrics=Metrics(), store=store or BookStore(stale_after_s=60),
                              funding=FundingStore())


async def close(service):
    if service.instrument_refresh is not None:
        service.instrument_refresh.cancel()
    await service.close()


async def cached(settings):
    journal = Journal(settings.journal.path)
    await journal.open()
    try:
        return await journal.cached_instruments(), await journal.cached_venue_markets()
    finally:
        await journal.close()


async def tamper(settings, key, **changes):
    journal = Journal(settings.journal.path)
    await journal.open()
    try:
        instrument = (await journal.cached_instruments())[key]
        changed = dataclasses.replace(instrument, **changes)
        await journal.save_instruments([changed])
        return instrument, changed
    finally:
        await journal.close()


@pytest.fixture
def configured(tmp_path):
    return sim_settings(tmp_path)


async def first_run(settings):
    """A first start against the simulator: instruments loaded from the venues and cached."""
    service = await build(settings)
    try:
        assert service.instrument_refresh is None  # nothing was cached: nothing to refresh
        return dict(service.engine.instruments)
    finally:
        await close(service)


async def test_a_restart_takes_instruments_and_market_lists_from_the_cache_without_asking_a_venue(configured):
    async with Simulator(configured, autotick=False):
        loaded = await first_run(configured)
    assert len(loaded) == 8
    instruments, markets = await cached(configured)
    assert instruments == loaded and set(markets) == set(VENUES)

    # Every venue is down now: the restart still has every venue and instrument, from the cache.
    service = await build(configured)
    try:
        assert service.engine.instruments == loaded
        assert sorted(service.clients) == sorted(VENUES)
        for venue, client in service.clients.items():
            client = rest_of(client)
            assert isinstance(client, CcxtClient)
            # The client runs on the cached market list: its first call needs no market load.
            assert client.exchange.markets and not client.exchange.markets_loading
            assert {i.ccxt_symbol for k, i in loaded.items() if k[0] == venue} <= set(client.exchange.markets)
            assert client.instruments == {s: i for (v, s), i in loaded.items() if v == venue}
        assert service.scanner.instruments is service.engine.instruments
        assert not service.instrument_refresh.done()  # waits for start-up recovery
    finally:
        await close(service)


async def test_the_cache_is_refreshed_after_start_up_and_a_changed_instrument_replaces_it_in_place(configured, caplog):
    async with Simulator(configured, autotick=False):
        loaded = await first_run(configured)
        key = ("binance", "BTCUSDT")
        fresh, stale = await tamper(configured, key, tick_size=D("0.5"), min_qty=D("0.01"))
        service = await build(configured)
        try:
            instruments = service.engine.instruments
            assert instruments[key] == stale  # what start-up recovery trades with
            await service.engine.start()
            with caplog.at_level(logging.WARNING, logger="perpbot.wiring"):
                report = await service.instrument_refresh
            assert sorted(report) == sorted(VENUES)
            assert report["binance"] == ["BTCUSDT: tick_size 0.5 -> 0.1", "BTCUSDT: min_qty 0.01 -> 0.001"]
            assert all(report[v] == [] for v in VENUES if v != "binance")
            assert service.engine.instruments is instruments and instruments == loaded  # in place
            assert service.scanner.instruments is instruments
            assert "binance" in service.engine.clients
            assert "Instrument binance BTCUSDT changed at the venue" in caplog.text
            assert (await cached(configured))[0][key] == fresh
        finally:
            await close(service)


async def test_a_changed_contract_size_leaves_that_venue_out_of_trading(configured, caplog):
    async with Simulator(configured, autotick=False):
        await first_run(configured)
        key = ("okx", "BTC-USDT-SWAP")
        fresh, stale = await tamper(configured, key, contract_size=D("0.1"))
        assert fresh.contract_size == D("0.01")
        store = BookStore(stale_after_s=60)
        store.add("okx", "BTC-USDT-SWAP", stale.contract_size)  # the feeds built it with the cached size
        service = await build(configured, store)
        try:
            assert service.engine.instruments[key] == stale
            await service.engine.start()
            with caplog.at_level(logging.ERROR, logger="perpbot.wiring"):
                report = await service.instrument_refresh
            assert report["okx"] == ["BTC-USDT-SWAP: contract_size 0.1 -> 0.01"]
            assert "okx" not in service.engine.clients and "okx" not in service.engine.reconciled
            assert not [k for k in service.engine.instruments if k[0] == "okx"]
            assert sorted(service.engine.clients) == ["binance", "bybit", "hyperliquid"]
            assert "Venue okx left out of trading" in caplog.text
            assert (await cached(configured))[0][key] == fresh  # the next start builds its books right
        finally:
            await close(service)


async def test_the_feeds_take_contract_sizes_from_the_cache_and_load_the_rest_as_before(configured):
    async with Simulator(configured, autotick=False):
        await first_run(configured)
    cache = Journal.read_cached_instruments(configured.journal.path)
    # The venues are down: sizes still come from the cache; a symbol not in it is loaded (and fails) as before.
    assert await venue_contract_sizes(configured, "okx", ["BTC-USDT-SWAP", "ETH-USDT-SWAP"], cache) == {
        "BTC-USDT-SWAP": D("0.01"), "ETH-USDT-SWAP": D("0.1")}
    assert await venue_contract_sizes(configured, "okx", ["BTC-USDT-SWAP", "SOL-USDT-SWAP"], cache) == {}
    store = BookStore(stale_after_s=60)
    supervisor = await build_feeds(configured, store, Metrics(), FundingStore())
    try:  # the books were built with the cached contract sizes (1e-9 grid), no venue up
        assert store.get("okx", "BTC-USDT-SWAP")._contract == 10**7  # noqa: SLF001
        assert store.get("okx", "ETH-USDT-SWAP")._contract == 10**8  # noqa: SLF001
    finally:
        await supervisor.stop()
