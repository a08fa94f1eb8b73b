"""Pure reconciliation: the difference between local positions and what a venue reports."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from perpbot.core.orders import VenuePosition
from perpbot.portfolio.book import dstr


@dataclass(frozen=True, slots=True)
class PositionChange:
    venue: str
    symbol: str
    local_size: Decimal
    venue_size: Decimal
    venue_entry: Decimal

    def as_dict(self) -> dict[str, str | None]:
        return {
            "kind": "position", "venue": self.venue, "symbol": self.symbol,
            "local_size": dstr(self.local_size), "venue_size": dstr(self.venue_size),
            "venue_entry": dstr(self.venue_entry),
        }


def diff_positions(
    venue: str, local: dict[str, tuple[Decimal, Decimal]], remote: list[VenuePosition]
) -> list[PositionChange]:
    """Local {symbol: (size, entry)} of one venue against the venue's report. Symbols absent
    on the venue are flat there; positions the bot never opened are included too."""
    remote_by_symbol = {p.symbol: p for p in remote if p.venue == venue}
    changes = []
    for symbol in sorted(set(local) | set(remote_by_symbol)):
        local_size = local.get(symbol, (Decimal(0), Decimal(0)))[0]
        venue_position = remote_by_symbol.get(symbol)
        venue_size = venue_position.size if venue_position else Decimal(0)
        if local_size != venue_size:
            entry = venue_position.entry_price if venue_position else Decimal(0)
            changes.append(PositionChange(venue, symbol, local_size, venue_size, entry))
    return changes


Key = tuple[str, str]


def moved_keys(before: Mapping[Key, Hashable], after: Mapping[Key, Hashable], keys: Iterable[Key]) -> set[Key]:
    """The keys whose mark (what the engine knows of the key: its position, the orders sent on it) is not
    the same after as before; a key absent from a side has no mark there (None)."""
    return {key for key in keys if before.get(key) != after.get(key)}
