"""ApprovedOrder: the only thing execution accepts. Only the risk gate can mint one."""

from __future__ import annotations

from perpbot.core.orders import OrderRequest

_GATE_KEY = object()


class ApprovedOrder:
    """An OrderRequest that passed every risk rule. Constructing one elsewhere raises."""

    __slots__ = ("request", "purpose", "intent_id")

    def __init__(self, key: object, request: OrderRequest, purpose: str, intent_id: str) -> None:
        if key is not _GATE_KEY:
            raise PermissionError("ApprovedOrder can only be created by the risk gate")
        self.request = request
        self.purpose = purpose  # "entry" | "exit" | "hedge" | "unwind" | "flatten"
        self.intent_id = intent_id

    def __repr__(self) -> str:
        r = self.request
        return f"ApprovedOrder({self.purpose} {r.venue} {r.side} {r.qty} {r.symbol} @ {r.price} {r.client_order_id})"


def _mint(request: OrderRequest, purpose: str, intent_id: str) -> ApprovedOrder:
    """For perpbot.risk.gate only."""
    return ApprovedOrder(_GATE_KEY, request, purpose, intent_id)
