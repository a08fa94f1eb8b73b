"""ApprovedOrder: the only order the venue port (`core.ports.ExchangeClient.place_order`) accepts.

The type lives in `core` so the port can name it; minting stays with the risk gate
(`perpbot.risk.approved._mint`): constructing one with any other key raises, and the import
contract `only-risk-mints` keeps the key module out of every other package.
"""

from __future__ import annotations

from perpbot.core._mint_key import GATE_KEY
from perpbot.core.orders import OrderRequest


class ApprovedOrder:
    """An OrderRequest that passed every risk rule. Constructing one outside the gate raises."""

    __slots__ = ("request", "purpose", "intent_id")

    def __init__(self, key: object, request: OrderRequest, purpose: str, intent_id: str) -> None:
        if key is not GATE_KEY:
            raise PermissionError("ApprovedOrder can only be created by the risk gate")
        self.request = request
        self.purpose = purpose  # "entry" | "exit" | "hedge" | "unwind" | "flatten"
        self.intent_id = intent_id

    def __repr__(self) -> str:
        r = self.request
        return f"ApprovedOrder({self.purpose} {r.venue} {r.side} {r.qty} {r.symbol} @ {r.price} {r.client_order_id})"
