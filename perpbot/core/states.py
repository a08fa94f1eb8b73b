"""The enums both sides of the bot share: the trading state (risk gate, engine, control API) and
an order's status as the journal records it (pure: no I/O, nothing but the standard library).

`TradingState` and `OrderStatus` are str enums: a member equals (and hashes as) its value, so
rows and payloads that carry the plain string keep comparing equal to the member.
"""

from __future__ import annotations

import enum


class TradingState(str, enum.Enum):
    ACTIVE = "ACTIVE"  # entries and exits
    REDUCING = "REDUCING"  # only risk-reducing orders (exits, hedges, unwinds, flatten)
    PAUSED = "PAUSED"  # operator pause / start-up: same order rights as REDUCING
    HALTED = "HALTED"  # automatic stop on a breach; only risk-reducing orders


class OrderStatus(enum.StrEnum):
    """An order's status in the journal; `final` once the venue will not change it any more."""

    PENDING = "pending"  # journalled, not (yet known to be) at the venue
    OPEN = "open"
    FILLED = "filled"
    PARTIALLY_FILLED = "partially_filled"  # final: what filled stays, the rest is gone
    CANCELED = "canceled"
    EXPIRED = "expired"
    REJECTED = "rejected"
    FAILED = "failed"
    UNKNOWN = "unknown"  # the venue's answer was lost: reconciliation decides
    NOT_FOUND = "not_found"  # the venue never had it

    @property
    def final(self) -> bool:
        return self in FINAL_ORDER_STATUSES


FINAL_ORDER_STATUSES: frozenset[OrderStatus] = frozenset({
    OrderStatus.FILLED, OrderStatus.PARTIALLY_FILLED, OrderStatus.CANCELED, OrderStatus.EXPIRED,
    OrderStatus.REJECTED, OrderStatus.FAILED, OrderStatus.NOT_FOUND,
})
