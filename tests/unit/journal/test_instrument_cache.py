"""The journal's instrument cache: Instruments stored exactly (Decimals as their strings), read back
equal digit for digit, rows another build wrote are a cache miss, the plain sqlite3 read the feeds use,
and the venue market lists."""

import dataclasses
import json
import sqlite3
from decimal import Decimal as D

from perpbot.core.instruments import Instrument
from perpbot.journal.sqlite import MIGRATIONS, Journal

OKX = Instrument("okx", "BTC-USDT-SWAP", "BTC", "USDT", "BTC/USDT:USDT", D("0.10"), D("1E-2"), D("0.01"), D("0"),
                 contract_size=D("0.01"), taker_fee=D("0.00050"), maker_fee=D("-0.00005"), funding_interval_hours=8)
HL = Instrument("hyperliquid", "BTC", "BTC", "USDC", "BTC/USDC:USDC", D("1"), D("0.00001"), D("0.00001"), D("10"),
                funding_interval_hours=1)


async def opened(path):
    journal = Journal(path)
    await journal.open()
    return journal


def decimal_texts(instrument):
    return {f.name: str(getattr(instrument, f.name)) for f in dataclasses.fields(instrument)}


async def test_instruments_round_trip_exactly_and_a_save_replaces_the_cached_one(tmp_path):
    journal = await opened(tmp_path / "j.sqlite")
    try:
        assert await journal.cached_instruments() == {}
        await journal.save_instruments([OKX, HL])
        cached = await journal.cached_instruments()
        assert cached == {OKX.key: OKX, HL.key: HL}
        # Exactly: every Decimal keeps its digits and exponent (0.10 stays 0.10, not 0.1).
        assert decimal_texts(cached[OKX.key]) == decimal_texts(OKX)
        assert decimal_texts(cached[HL.key]) == decimal_texts(HL)
        assert cached[HL.key].funding_interval_hours == 1
        row = sqlite3.connect(tmp_path / "j.sqlite").execute(
            "SELECT instrument FROM instruments WHERE venue='okx'").fetchone()[0]
        assert json.loads(row)["tick_size"] == "0.10" and json.loads(row)["maker_fee"] == "-0.00005"

        finer = dataclasses.replace(OKX, tick_size=D("0.01"))
        await journal.save_instruments([finer])
        assert (await journal.cached_instruments())[OKX.key] == finer
    finally:
        await journal.close()


async def test_a_row_this_build_cannot_read_exactly_is_a_cache_miss(tmp_path):
    journal = await opened(tmp_path / "j.sqlite")
    try:
        await journal.save_instruments([OKX, HL])
        good = json.loads(Journal.instrument_text(OKX))
        bad_rows = {
            "missing field": {k: v for k, v in good.items() if k != "min_notional"},
            "unknown field": {**good, "margin_mode": "cross"},
            "float, not a string": {**good, "tick_size": 0.1},
            "not a number": {**good, "lot_size": "abc"},
            "not finite": {**good, "lot_size": "NaN"},
        }
        for reason, data in bad_rows.items():
            await journal.db.execute("UPDATE instruments SET instrument=? WHERE venue='okx'", (json.dumps(data),))
            assert await journal.cached_instruments() == {HL.key: HL}, reason
        await journal.db.execute("UPDATE instruments SET instrument='{not json' WHERE venue='okx'")
        assert await journal.cached_instruments() == {HL.key: HL}
    finally:
        await journal.close()


async def test_the_plain_read_sees_the_same_cache_and_nothing_without_a_journal_or_table(tmp_path):
    path = tmp_path / "j.sqlite"
    assert Journal.read_cached_instruments(path) == {}  # no file
    assert Journal.read_cached_instruments(":memory:") == {}
    old = sqlite3.connect(tmp_path / "old.sqlite")  # a journal of the first schema: no cache table
    old.executescript(MIGRATIONS[0])
    old.close()
    assert Journal.read_cached_instruments(tmp_path / "old.sqlite") == {}
    journal = await opened(path)
    try:
        await journal.save_instruments([OKX, HL])
        # Read while the journal is open and in WAL mode (the feeds read it before the engine opens it).
        assert Journal.read_cached_instruments(path) == {OKX.key: OKX, HL.key: HL}
    finally:
        await journal.close()


async def test_a_first_schema_journal_gains_the_cache_tables_and_keeps_its_rows(tmp_path):
    path = tmp_path / "j.sqlite"
    db = sqlite3.connect(path)
    db.executescript("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_ts REAL);" + MIGRATIONS[0])
    db.execute("INSERT INTO schema_version VALUES (1, 0)")
    db.execute("INSERT INTO state_changes (ts, from_state, to_state, reason, actor) VALUES (1, NULL, 'ACTIVE', 'x', 'y')")
    db.commit()
    db.close()
    journal = await opened(path)
    try:
        assert await journal.schema_version() == len(MIGRATIONS) >= 2
        assert await journal.last_state() == "ACTIVE"
        await journal.save_instruments([HL])
        assert await journal.cached_instruments() == {HL.key: HL}
    finally:
        await journal.close()


async def test_venue_market_lists_round_trip_and_what_is_not_json_is_not_cached(tmp_path):
    journal = await opened(tmp_path / "j.sqlite")
    try:
        markets = [{"id": "BTCUSDT", "symbol": "BTC/USDT:USDT", "precision": {"amount": 0.001, "price": 0.1},
                    "limits": {"cost": {"min": 5.0, "max": None}}, "info": {"filters": [{"tickSize": "0.1"}]}}]
        assert await journal.save_venue_markets("binance", markets, None)
        assert await journal.save_venue_markets("okx", markets, {"USDT": {"id": "USDT", "precision": 1e-08}})
        cached = await journal.cached_venue_markets()
        assert cached == {"binance": (markets, None), "okx": (markets, {"USDT": {"id": "USDT", "precision": 1e-08}})}
        assert not await journal.save_venue_markets("bybit", [{"price": D("1")}], None)
        assert not await journal.save_venue_markets("bybit", [{"price": float("nan")}], None)
        assert set(await journal.cached_venue_markets()) == {"binance", "okx"}
    finally:
        await journal.close()
