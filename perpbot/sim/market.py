"""Simulated market by seed: one mid-price path per base asset, per-venue books, dislocations, funding.

Everything generated comes from `random.Random(seed)` and the tick counter, so two markets
with the same seed and symbols produce the same books tick for tick. Only timestamps
(next funding time) read the injectable clock. Books are kept as integers: prices in ticks
of the venue's tick size and sizes in lots of its lot step (venue units: contracts on OKX),
so every level sent to a client is exactly on the venue's grids.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from perpbot.sim.instruments import DEFAULT_SYMBOLS, SimInstrument, base_price, make_instrument

# The instruments (default symbols, venue terms and grids) live in perpbot.sim.instruments; re-exported here.
__all__ = ["DEFAULT_SYMBOLS", "Levels", "Market", "SimBook", "SimInstrument", "diff_views", "make_instrument"]

# Levels kept per side in each venue's book (the widest channel a client can ask for).
BOOK_DEPTH = {"okx": 400, "binance": 250, "bybit": 200, "hyperliquid": 40}

# Decimal places of a funding rate per venue (default 10): Binance writes 8 ("0.00038167"), the simulated
# Bybit stream 7.
FUNDING_RATE_DECIMALS = {"binance": 8, "bybit": 7}

PER_TICK_VOLATILITY = 0.00001  # 0.1 bp per tick of the shared mid path
DISLOCATION_SECONDS = 3.0


Levels = list[tuple[Decimal, Decimal]]


class SimBook:
    """One venue book in integers: price in ticks -> size in lots."""

    __slots__ = ("instrument", "bids", "asks", "depth")

    def __init__(self, instrument: SimInstrument, depth: int) -> None:
        self.instrument = instrument
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.depth = depth

    def top(self, n: int | None = None) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Best-first (ticks, lots) for both sides, at most n levels each."""
        bid_keys = sorted(self.bids, reverse=True)[:n]
        ask_keys = sorted(self.asks)[:n]
        return [(p, self.bids[p]) for p in bid_keys], [(p, self.asks[p]) for p in ask_keys]

    def best(self) -> tuple[int | None, int | None]:
        return (max(self.bids) if self.bids else None, min(self.asks) if self.asks else None)


@dataclass(slots=True)
class _Dislocation:
    venue: str
    bps: float
    ticks_left: int


class Market:
    """Deterministic multi-venue market. `step()` advances one tick."""

    def __init__(
        self,
        seed: int,
        symbols_by_venue: dict[str, list[str]] | None = None,
        sim_settings: Any = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.seed = seed
        self.clock = clock
        self.rng = random.Random(seed)
        self.tick = 0
        self.tick_interval_s = float(getattr(sim_settings, "tick_interval_s", 0.1))
        self.dislocation_rate = float(getattr(sim_settings, "dislocation_rate", 0.05))
        self.dislocation_bps = float(getattr(sim_settings, "dislocation_bps", 40.0))
        self.funding_divergence = float(getattr(sim_settings, "funding_divergence", 0.0003))
        symbols_by_venue = symbols_by_venue or DEFAULT_SYMBOLS
        self._symbols: dict[str, list[str]] = {v: list(s) for v, s in symbols_by_venue.items()}
        self._instruments: dict[tuple[str, str], SimInstrument] = {}
        self._books: dict[tuple[str, str], SimBook] = {}
        self._by_base: dict[str, list[tuple[str, str]]] = {}
        for venue in sorted(self._symbols):
            for symbol in self._symbols[venue]:
                inst = make_instrument(venue, symbol)
                self._instruments[(venue, symbol)] = inst
                self._books[(venue, symbol)] = SimBook(inst, BOOK_DEPTH.get(venue, 100))
                self._by_base.setdefault(inst.base, []).append((venue, symbol))
        self._bases = sorted(self._by_base)
        self._mid = {b: base_price(b) * (1 + self.rng.uniform(-0.01, 0.01)) for b in self._bases}
        # Per (venue, base) slowly mean-reverting basis in bps and funding offsets (per 8 h).
        self._basis: dict[tuple[str, str], float] = {}
        self._funding_offset: dict[tuple[str, str], float] = {}
        self._base_funding = {b: 0.0001 + self.rng.gauss(0, 0.00005) for b in self._bases}
        for base in self._bases:
            for venue, _ in self._by_base[base]:
                self._basis[(venue, base)] = self.rng.gauss(0, 1.0)
                self._funding_offset[(venue, base)] = self.rng.gauss(0, self.funding_divergence)
        self._jump_bps: dict[tuple[str, str], float] = {}
        self._shock_bps: dict[tuple[str, str], float] = {}  # held venue offsets (apply_shock), no decay
        self._dislocations: dict[str, list[_Dislocation]] = {b: [] for b in self._bases}
        self._disloc_ticks = max(1, round(DISLOCATION_SECONDS / self.tick_interval_s))
        for key in sorted(self._books):
            self._rebuild(key)

    # -- queries (the interface the trading side uses) -------------------------------
    def symbols(self, venue: str) -> list[str]:
        return list(self._symbols.get(venue, []))

    def venues(self) -> list[str]:
        return [v for v in self._symbols if self._symbols[v]]

    def has(self, venue: str, symbol: str) -> bool:
        return (venue, symbol) in self._instruments

    def instrument(self, venue: str, symbol: str) -> SimInstrument:
        try:
            return self._instruments[(venue, symbol)]
        except KeyError:
            raise KeyError(f"{venue} has no simulated symbol {symbol!r}") from None

    def book(self, venue: str, symbol: str) -> SimBook:
        """The integer book (ticks, lots) the WebSocket modules render."""
        return self._books[(venue, symbol)]

    def levels(self, venue: str, symbol: str) -> tuple[Levels, Levels]:
        """(bids best first, asks best first) as exact Decimals in venue units."""
        book = self._books[(venue, symbol)]
        inst = book.instrument
        bids, asks = book.top()
        return (
            [(inst.tick * p, inst.lot * q) for p, q in bids],
            [(inst.tick * p, inst.lot * q) for p, q in asks],
        )

    def mid(self, venue: str, symbol: str) -> float:
        inst = self._instruments[(venue, symbol)]
        return self._mid[inst.base] * (1 + self._offset_bps(venue, inst.base) / 10_000)

    def mark(self, venue: str, symbol: str) -> Decimal:
        """The venue's mark price: its own mid on its tick grid."""
        inst = self._instruments[(venue, symbol)]
        return inst.tick * round(self.mid(venue, symbol) / float(inst.tick))

    def index(self, symbol_base: str) -> float:
        return self._mid[symbol_base]

    def funding(self, venue: str, symbol: str) -> tuple[Decimal, int, int]:
        """(rate per interval, interval hours, next funding time ms from the clock)."""
        inst = self._instruments[(venue, symbol)]
        rate_8h = self._base_funding[inst.base] + self._funding_offset[(venue, inst.base)]
        # In the venue's own precision, so every wire (REST, WS, funding history) and the settlement agree.
        places = Decimal(1).scaleb(-FUNDING_RATE_DECIMALS.get(venue, 10))
        rate = Decimal(repr(round(rate_8h * inst.funding_interval_h / 8, 10))).quantize(places)
        interval_ms = inst.funding_interval_h * 3_600_000
        now_ms = int(self.clock() * 1000)
        return rate.normalize() if rate else Decimal(0), inst.funding_interval_h, (now_ms // interval_ms + 1) * interval_ms

    # -- evolution -------------------------------------------------------------------
    def _offset_bps(self, venue: str, base: str) -> float:
        offset = (self._basis[(venue, base)] + self._jump_bps.get((venue, base), 0.0)
                  + self._shock_bps.get((venue, base), 0.0))
        for disloc in self._dislocations[base]:
            if disloc.venue == venue:
                offset += disloc.bps
        return offset

    def apply_jump(self, venue: str | None, symbol: str | None, bps: float) -> None:
        """Move prices by `bps`: every venue's (venue None) shared mid, or one venue's basis.
        A venue jump decays like a dislocation, so it is a lasting but transient mispricing."""
        bases = self._bases_for(venue, symbol)
        for base in bases:
            if venue is None:
                self._mid[base] *= 1 + bps / 10_000
            else:
                self._jump_bps[(venue, base)] = self._jump_bps.get((venue, base), 0.0) + bps

    def apply_shock(self, venue: str, symbol: str | None, bps: float) -> None:
        """Move one venue's prices (its mark with them) by `bps` and hold them there: a mark-price shock
        on one venue that stays until an opposite shock takes it back."""
        for base in self._bases_for(venue, symbol):
            held = self._shock_bps.get((venue, base), 0.0) + bps
            if abs(held) < 1e-9:
                self._shock_bps.pop((venue, base), None)
            else:
                self._shock_bps[(venue, base)] = held

    def _bases_for(self, venue: str | None, symbol: str | None) -> list[str]:
        if symbol is None:
            if venue is None:
                return list(self._bases)
            return sorted({self._instruments[(venue, s)].base for s in self._symbols.get(venue, [])})
        if venue is not None:
            return [self.instrument(venue, symbol).base]
        for (_, sym), inst in self._instruments.items():
            if sym == symbol:
                return [inst.base]
        if symbol in self._by_base:
            return [symbol]
        raise KeyError(f"no simulated symbol {symbol!r}")

    def step(self) -> dict[str, dict[str, tuple[Levels, Levels]]]:
        """Advance one tick. Returns venue -> symbol -> (bid changes, ask changes), size 0 = removed."""
        self.tick += 1
        rng = self.rng
        for base in self._bases:
            self._mid[base] *= math.exp(rng.gauss(0, PER_TICK_VOLATILITY))
            for venue, _ in self._by_base[base]:
                key = (venue, base)
                self._basis[key] = self._basis[key] * 0.995 + rng.gauss(0, 0.05)
                if key in self._jump_bps:
                    self._jump_bps[key] *= 0.97
                    if abs(self._jump_bps[key]) < 0.05:
                        del self._jump_bps[key]
                if rng.random() < 0.01:
                    # Funding offsets drift in rare small steps, around the divergence scale.
                    self._funding_offset[key] = self._funding_offset[key] * 0.9 + rng.gauss(
                        0, self.funding_divergence * 0.45
                    )
            alive = []
            for disloc in self._dislocations[base]:
                disloc.ticks_left -= 1
                if disloc.ticks_left > 0:
                    alive.append(disloc)
            self._dislocations[base] = alive
            venues = sorted({v for v, _ in self._by_base[base]})
            # One dislocation per asset at a time, so its size is the configured one.
            if len(venues) > 1 and rng.random() < self.dislocation_rate and not alive:
                venue = venues[rng.randrange(len(venues))]
                sign = 1 if rng.random() < 0.5 else -1
                size = self.dislocation_bps * rng.uniform(0.6, 1.2)
                self._dislocations[base].append(_Dislocation(venue, sign * size, self._disloc_ticks))
        changes: dict[str, dict[str, tuple[Levels, Levels]]] = {}
        for key in sorted(self._books):
            bid_changes, ask_changes = self._evolve(key)
            if bid_changes or ask_changes:
                inst = self._instruments[key]
                changes.setdefault(key[0], {})[key[1]] = (
                    [(inst.tick * p, inst.lot * q) for p, q in bid_changes],
                    [(inst.tick * p, inst.lot * q) for p, q in ask_changes],
                )
        return changes

    # -- book shaping ----------------------------------------------------------------
    def _targets(self, key: tuple[str, str]) -> tuple[int, int]:
        inst = self._instruments[key]
        mid_ticks = self.mid(*key) / float(inst.tick)
        spread = 1 + (self.rng.random() < 0.3)
        best_bid = math.floor(mid_ticks - spread / 2)
        return best_bid, best_bid + spread

    def _size(self, inst: SimInstrument, near_top: bool) -> int:
        price = self._mid[inst.base]
        notional = self.rng.expovariate(1 / (60_000.0 if near_top else 15_000.0))
        base_qty = notional / price
        lots = int(base_qty / float(inst.contract_size) / float(inst.lot))
        return max(1, lots)

    def _gap(self) -> int:
        return 1 + (self.rng.random() < 0.35) + (self.rng.random() < 0.1)

    def _rebuild(self, key: tuple[str, str]) -> None:
        book = self._books[key]
        inst = book.instrument
        best_bid, best_ask = self._targets(key)
        price = best_bid
        for i in range(book.depth):
            book.bids[price] = self._size(inst, i < 3)
            price -= self._gap()
        price = best_ask
        for i in range(book.depth):
            book.asks[price] = self._size(inst, i < 3)
            price += self._gap()

    def _evolve(self, key: tuple[str, str]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        book = self._books[key]
        inst = book.instrument
        rng = self.rng
        old_bids, old_asks = dict(book.bids), dict(book.asks)
        best_bid, best_ask = self._targets(key)
        for side, is_bid, best in ((book.bids, True, best_bid), (book.asks, False, best_ask)):
            # Levels through the new touch are consumed.
            for price in [p for p in side if (p > best if is_bid else p < best)]:
                del side[price]
            direction = -1 if is_bid else 1
            if best not in side:
                side[best] = self._size(inst, True)
            # Fill the space between the new touch and the old inner levels.
            inner = sorted(side, reverse=is_bid)
            if len(inner) > 1:
                price = best + direction * self._gap()
                while (price > inner[1]) if is_bid else (price < inner[1]):
                    if rng.random() < 0.6:
                        side[price] = self._size(inst, True)
                    price += direction * self._gap()
            # A few size changes and cancellations among the top 30 levels.
            ordered = sorted(side, reverse=is_bid)
            for _ in range(rng.randint(1, 3)):
                price = ordered[min(len(ordered) - 1, int(rng.expovariate(1 / 6)))]
                if price != best and rng.random() < 0.2:
                    side.pop(price, None)
                else:
                    side[price] = self._size(inst, price == best)
            # Keep exactly `depth` levels: extend the far end, trim beyond the depth.
            ordered = sorted(side, reverse=is_bid)
            while len(ordered) < book.depth:
                price = ordered[-1] + direction * self._gap()
                side[price] = self._size(inst, False)
                ordered.append(price)
            for price in ordered[book.depth :]:
                del side[price]
        return _diff(old_bids, book.bids, True), _diff(old_asks, book.asks, False)


def _diff(old: dict[int, int], new: dict[int, int], is_bid: bool) -> list[tuple[int, int]]:
    """Level changes old -> new, best first; size 0 marks a removed level."""
    out = [(p, q) for p, q in new.items() if old.get(p) != q]
    out.extend((p, 0) for p in old if p not in new)
    out.sort(reverse=is_bid)
    return out


def diff_views(old: list[tuple[int, int]], new: list[tuple[int, int]], is_bid: bool) -> list[tuple[int, int]]:
    """Changes between two best-first level lists (a depth-limited view of a book)."""
    return _diff(dict(old), dict(new), is_bid)
