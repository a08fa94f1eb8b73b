"""The journal's instrument cache: instruments and venue market lists, so start-up needs no venue
call (the trading side refreshes them from the venues in the background)."""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import json
import logging
import sqlite3
from collections.abc import Callable, Iterable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from perpbot.core.instruments import Instrument
from perpbot.journal.eager import EagerConnection
from perpbot.journal.schema import dec

log = logging.getLogger("perpbot.journal.sqlite")


def instrument_text(instrument: Instrument) -> str:
    """An Instrument as JSON: every field, Decimals as their exact strings (str(Decimal) keeps the
    exponent, so the value read back is the same Decimal, digit for digit)."""
    return json.dumps({f.name: (str(v) if isinstance(v, Decimal) else v)
                       for f in dataclasses.fields(instrument) for v in (getattr(instrument, f.name),)},
                      sort_keys=True)


def _field_value(kind: Any, value: Any) -> tuple[bool, Any]:
    """(readable, value) of one stored Instrument field of type `kind`."""
    if kind in ("Decimal", Decimal):
        return (True, dec(value)) if isinstance(value, str) else (False, None)
    if kind in ("int", int):
        return isinstance(value, int) and not isinstance(value, bool), value
    return isinstance(value, str), value


def instrument_of(text: str) -> Instrument | None:
    """The Instrument of `instrument_text`, or None when the row does not hold exactly the fields
    this build's Instrument has (a row written by another version is a cache miss, not a guess)."""
    try:
        data = json.loads(text)
        fields = dataclasses.fields(Instrument)
        if not isinstance(data, dict) or set(data) != {f.name for f in fields}:
            return None
        values = {}
        for f in fields:
            readable, values[f.name] = _field_value(f.type, data[f.name])
            if not readable:
                return None
        return Instrument(**values)
    except (ValueError, TypeError, InvalidOperation):
        return None


def instruments_of_rows(rows: Iterable[Any]) -> dict[tuple[str, str], Instrument]:
    out = {}
    for venue, symbol, text in rows:
        instrument = instrument_of(text)
        if instrument is None or (instrument.venue, instrument.symbol) != (venue, symbol):
            log.warning("journal: cached instrument %s %s unreadable by this build; ignored", venue, symbol)
            continue
        out[(venue, symbol)] = instrument
    return out


def read_cached_instruments(path: str | Path) -> dict[tuple[str, str], Instrument]:
    """The cache read synchronously with plain sqlite3, read-only (for callers without an open
    Journal, e.g. the feeds' contract sizes). {} when the file, or the table, is not there."""
    if str(path) == ":memory:" or not Path(path).exists():
        return {}
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)) as db:
            rows = db.execute("SELECT venue, symbol, instrument FROM instruments").fetchall()
    except sqlite3.Error as exc:
        log.info("journal %s: no instrument cache read (%s)", path, exc)
        return {}
    return instruments_of_rows(rows)


class InstrumentCache:
    """The cache's reads and writes on the Journal's open connection (a Journal base class)."""

    _clock: Callable[[], float]

    @property
    @abc.abstractmethod
    def db(self) -> EagerConnection:
        """The open connection: Journal.db (this class is only ever a base of Journal)."""

    instrument_text = staticmethod(instrument_text)
    instrument_of = staticmethod(instrument_of)

    @staticmethod
    def read_cached_instruments(path: str | Path) -> dict[tuple[str, str], Instrument]:
        return read_cached_instruments(path)

    async def save_instruments(self, instruments: Iterable[Instrument]) -> None:
        """Insert or replace cached instruments (one statement, no explicit transaction)."""
        now = self._clock()
        rows = [(i.venue, i.symbol, instrument_text(i), now) for i in instruments]
        if rows:
            await self.db.executemany(
                "INSERT INTO instruments VALUES (?,?,?,?) ON CONFLICT(venue, symbol) DO UPDATE SET"
                " instrument=excluded.instrument, updated_ts=excluded.updated_ts", rows,
            )

    async def cached_instruments(self) -> dict[tuple[str, str], Instrument]:
        """Every readable cached instrument by (venue, symbol); unreadable rows are skipped (logged)."""
        async with self.db.execute("SELECT venue, symbol, instrument FROM instruments") as cur:
            rows = await cur.fetchall()
        return instruments_of_rows(rows)

    async def save_venue_markets(self, venue: str, markets: Any, currencies: Any) -> bool:
        """Cache a venue client's market list (JSON); False (nothing cached) when it is not JSON."""
        try:
            text = json.dumps(markets, allow_nan=False)
            extra = None if currencies is None else json.dumps(currencies, allow_nan=False)
        except (TypeError, ValueError) as exc:
            log.warning("journal: market list of %s not cacheable (%s)", venue, exc)
            return False
        await self.db.execute(
            "INSERT INTO venue_markets VALUES (?,?,?,?) ON CONFLICT(venue) DO UPDATE SET"
            " markets=excluded.markets, currencies=excluded.currencies, updated_ts=excluded.updated_ts",
            (venue, text, extra, self._clock()),
        )
        return True

    async def cached_venue_markets(self) -> dict[str, tuple[Any, Any]]:
        """venue -> (markets, currencies) as cached; unreadable rows are skipped (logged)."""
        async with self.db.execute("SELECT venue, markets, currencies FROM venue_markets") as cur:
            rows = await cur.fetchall()
        out = {}
        for venue, markets, currencies in rows:
            try:
                out[venue] = (json.loads(markets), None if currencies is None else json.loads(currencies))
            except ValueError:
                log.warning("journal: cached market list of %s unreadable; ignored", venue)
        return out
