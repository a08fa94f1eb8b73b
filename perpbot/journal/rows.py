"""Typed rows the journal reads back, and the trade changes it writes.

Every read returns dataclasses (attribute access: `row.venue`). For the callers written against
the journal's former dict rows, each row is also a read-only Mapping by field name: `row["venue"]`,
`row.get("strategy")`, `dict(row)`, `key in row`, and a row equals the dict of the same fields.
New code should use the attributes; the mapping access is kept for compatibility.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any, ClassVar

from perpbot.core.states import OrderStatus
from perpbot.journal.schema import JournalError


class Row(Mapping[str, Any]):
    """Read-only mapping access by field name (compatibility with the former dict rows);
    `_KEYS` renames a field where the dict key was not a valid name (state changes' "from")."""

    __slots__ = ()
    _KEYS: ClassVar[dict[str, str]] = {}  # field name -> mapping key, where they differ

    def _names(self) -> dict[str, str]:
        return {self._KEYS.get(f.name, f.name): f.name for f in fields(self)}  # type: ignore[arg-type]

    def __getitem__(self, key: str) -> Any:
        name = self._names().get(key)
        if name is None:
            raise KeyError(key)
        return getattr(self, name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(fields(self))  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, Any]:
        return dict(self)


@dataclass(slots=True)
class OrderRow:
    venue: str
    client_order_id: str
    intent_id: str | None
    purpose: str
    symbol: str
    side: str
    qty: Decimal
    price: Decimal
    reduce_only: bool
    status: OrderStatus
    venue_order_id: str | None
    filled_qty: Decimal
    avg_price: Decimal | None
    fee: Decimal
    reason: str | None
    created_ts: float
    updated_ts: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "venue": self.venue, "client_order_id": self.client_order_id, "intent_id": self.intent_id,
            "purpose": self.purpose, "symbol": self.symbol, "side": self.side, "qty": str(self.qty),
            "price": str(self.price), "reduce_only": self.reduce_only, "status": self.status.value,
            "venue_order_id": self.venue_order_id, "filled_qty": str(self.filled_qty),
            "avg_price": None if self.avg_price is None else str(self.avg_price), "fee": str(self.fee),
            "reason": self.reason, "created_ts": self.created_ts, "updated_ts": self.updated_ts,
        }


@dataclass(frozen=True, slots=True, eq=False)
class IntentRow(Row):
    """An intent with its decision payload decoded (Journal.intents_with_status)."""

    intent_id: str
    strategy: str
    action: str
    base: str
    trade_id: str | None
    decision: dict[str, Any]
    status: str
    created_ts: float


@dataclass(frozen=True, slots=True, eq=False)
class FillRow(Row):
    """A fill as journalled once (Journal.fills_since)."""

    venue: str
    fill_id: str
    client_order_id: str | None
    symbol: str
    side: str
    base_qty: Decimal
    price: Decimal
    fee: Decimal
    realized_pnl: Decimal
    strategy: str | None
    ts: float


@dataclass(frozen=True, slots=True, eq=False)
class PositionRow(Row):
    """A position as last saved (Journal.positions)."""

    venue: str
    symbol: str
    size: Decimal
    entry_price: Decimal
    realized_pnl: Decimal


@dataclass(frozen=True, slots=True, eq=False)
class FundingRow(Row):
    """A funding payment as journalled once (Journal.funding_since)."""

    venue: str
    payment_id: str
    symbol: str
    amount: Decimal
    ts: float


@dataclass(frozen=True, slots=True, eq=False)
class TradeRow(Row):
    """An open trade (Journal.open_trades); `legs` are the trade's leg dicts as journalled."""

    trade_id: str
    intent_id: str
    strategy: str
    base: str
    legs: list[dict[str, Any]]
    opened_ts: float


@dataclass(frozen=True, slots=True, eq=False)
class StateChangeRow(Row):
    """One trading-state audit record (Journal.state_changes); as a mapping its keys are
    ts, from, to, reason, actor."""

    _KEYS: ClassVar[dict[str, str]] = {"from_state": "from", "to_state": "to"}

    ts: float
    from_state: str | None
    to_state: str
    reason: str
    actor: str


@dataclass(frozen=True, slots=True)
class TradeChange:
    """What an intent did to a trade: `open` a new one, `resize` its legs (a partial exit, a
    repair, a start-up adoption of the venues' sizes) or `close` it. Legs are the trade's leg
    dicts with each leg's own base_qty (a sub-lot residue makes them differ)."""

    kind: str  # "open" | "resize" | "close"
    trade_id: str
    legs: tuple[dict[str, Any], ...] = ()
    intent_id: str = ""
    strategy: str = ""
    base: str = ""

    def statement(self, now: float) -> tuple[str, tuple[Any, ...]]:
        legs = json.dumps(list(self.legs), default=str)
        if self.kind == "open":
            return ("INSERT INTO trades VALUES (?,?,?,?,?,'open',?,NULL)",
                    (self.trade_id, self.intent_id, self.strategy, self.base, legs, now))
        if self.kind == "resize":
            return ("UPDATE trades SET legs=? WHERE trade_id=? AND status='open'", (legs, self.trade_id))
        if self.kind == "close":
            return ("UPDATE trades SET status='closed', closed_ts=? WHERE trade_id=?", (now, self.trade_id))
        raise JournalError(f"unknown trade change {self.kind!r}")
