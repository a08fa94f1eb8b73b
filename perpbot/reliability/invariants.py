"""Pure invariant checks of the reliability suite: the venue's truth against the bot's journal and portfolio.

Every function takes plain data (the simulator's /admin/accounts body, journal rows, local
positions) and returns a list of violations, each one readable sentence. An empty list means
the invariant holds. Nothing here does I/O, so each check is unit-testable on its own.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class JournalOrder:
    venue: str
    client_order_id: str
    status: str
    filled_qty: Decimal  # venue units


@dataclass(frozen=True, slots=True)
class JournalFill:
    venue: str
    client_order_id: str | None
    base_qty: Decimal


def base_of(venue: str, symbol: str) -> str:
    """Base asset of a venue symbol: BTC-USDT-SWAP, BTCUSDT and BTC all name BTC."""
    for suffix in ("-USDT-SWAP", "-USDC-SWAP", "USDT", "USDC"):
        if symbol.endswith(suffix) and len(symbol) > len(suffix):
            return symbol[: -len(suffix)]
    return symbol


def venue_positions(accounts: Mapping[str, Any]) -> dict[tuple[str, str], Decimal]:
    """(venue, symbol) -> signed base size, as the simulated venues hold them."""
    out: dict[tuple[str, str], Decimal] = {}
    for venue, account in accounts.items():
        for symbol, position in (account.get("positions") or {}).items():
            size = Decimal(position["size"])
            if size:
                out[(venue, symbol)] = size
    return out


def check_positions(local: Mapping[tuple[str, str], Decimal], accounts: Mapping[str, Any]) -> list[str]:
    """Local positions equal the venue's, exactly, for every venue and symbol either side knows."""
    remote = venue_positions(accounts)
    violations = []
    for key in sorted(set(local) | set(remote)):
        mine, theirs = local.get(key, ZERO), remote.get(key, ZERO)
        if mine != theirs:
            violations.append(f"position {key[0]} {key[1]}: local {mine} != venue {theirs}")
    return violations


def check_orders_approved(accounts: Mapping[str, Any], journal_orders: Iterable[JournalOrder]) -> list[str]:
    """Every order at a venue carries a client id the journal wrote before sending (risk-approved);
    no client id is used twice at one venue (no duplicate order for one intent)."""
    known = {(o.venue, o.client_order_id) for o in journal_orders}
    violations = []
    for venue, account in accounts.items():
        ids = Counter(order.get("client_id") for order in account.get("orders") or [])
        for client_id, count in sorted(ids.items(), key=lambda item: str(item[0])):
            if client_id is None or (venue, client_id) not in known:
                violations.append(f"{venue}: venue order with client id {client_id!r} has no journal row")
            if client_id is not None and count > 1:
                violations.append(f"{venue}: {count} venue orders for one journal order {client_id}")
    return violations


def check_fills(accounts: Mapping[str, Any], journal_fills: Iterable[JournalFill]) -> list[str]:
    """Base quantity filled per order at the venue equals the base quantity the journal recorded."""
    venue_filled: dict[tuple[str, str | None], Decimal] = defaultdict(Decimal)
    for venue, account in accounts.items():
        for fill in account.get("fills") or []:
            venue_filled[(venue, fill.get("client_id"))] += Decimal(fill["base_qty"])
    journal_filled: dict[tuple[str, str | None], Decimal] = defaultdict(Decimal)
    for fill in journal_fills:
        journal_filled[(fill.venue, fill.client_order_id)] += fill.base_qty
    violations = []
    for key in sorted(set(venue_filled) | set(journal_filled), key=str):
        theirs, mine = venue_filled.get(key, ZERO), journal_filled.get(key, ZERO)
        if theirs != mine:
            violations.append(f"fills {key[0]} {key[1]}: venue {theirs} != journal {mine}")
    return violations


def net_exposure_usdt(accounts: Mapping[str, Any], marks: Mapping[str, Decimal]) -> dict[str, Decimal]:
    """Per base asset: |sum of signed venue positions| x mark, i.e. the notional no other leg hedges."""
    net: dict[str, Decimal] = defaultdict(Decimal)
    for (venue, symbol), size in venue_positions(accounts).items():
        net[base_of(venue, symbol)] += size
    return {base: abs(size) * marks.get(base, ZERO) for base, size in net.items() if size}


def marks_from(accounts: Mapping[str, Any]) -> dict[str, Decimal]:
    """A price per base asset from the venues' position entries (good enough to size exposure)."""
    marks: dict[str, Decimal] = {}
    for account in accounts.values():
        for symbol, position in (account.get("positions") or {}).items():
            entry = Decimal(position.get("entry") or "0")
            if entry:
                marks.setdefault(base_of("", symbol), entry)
    return marks


class ExposureMeter:
    """Integrates unhedged notional over time from successive venue samples (trapezoid-free: the
    notional seen at a sample is held until the next one, which over-counts rather than under-counts)."""

    def __init__(self) -> None:
        self.usdt_seconds = ZERO
        self.peak_usdt = ZERO
        self._last: tuple[float, Decimal] | None = None

    def sample(self, ts: float, notional_usdt: Decimal) -> None:
        if self._last is not None:
            last_ts, last_notional = self._last
            self.usdt_seconds += last_notional * Decimal(str(round(max(0.0, ts - last_ts), 3)))
        self.peak_usdt = max(self.peak_usdt, notional_usdt)
        self._last = (ts, notional_usdt)


def check_unhedged(usdt_seconds: Decimal, budget: Decimal, what: str) -> list[str]:
    if usdt_seconds > budget:
        return [f"unhedged {what}: {usdt_seconds:.1f} USDT*s over the budget {budget}"]
    return []


def check_books_invalidated(before: Mapping[str, int], after: Mapping[str, int],
                            resyncs_before: Mapping[str, float], resyncs_after: Mapping[str, float],
                            venues: Iterable[str]) -> list[str]:
    """After an integrity fault on a venue, at least one of its books was invalidated and a resync counted."""
    violations = []
    for venue in venues:
        if after.get(venue, 0) <= before.get(venue, 0):
            violations.append(f"{venue}: no book was marked invalid after an integrity fault")
        if resyncs_after.get(venue, 0.0) <= resyncs_before.get(venue, 0.0):
            violations.append(f"{venue}: the resync counter did not increase after an integrity fault")
    return violations


def check_state(state: str, reason: str, recovered: bool) -> list[str]:
    """The bot is ACTIVE again, or HALTED with a reason an operator can act on; nothing in between."""
    if state == "ACTIVE" and recovered:
        return []
    if state == "HALTED" and reason.strip():
        return []
    return [f"trading state {state} ({reason!r}) after the venue recovered: neither ACTIVE nor HALTED with a reason"]
