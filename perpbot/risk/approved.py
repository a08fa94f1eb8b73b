"""Minting of `ApprovedOrder` (the type is `perpbot.core.approved`): only the risk gate calls `_mint`."""

from __future__ import annotations

from perpbot.core._mint_key import GATE_KEY
from perpbot.core.approved import ApprovedOrder
from perpbot.core.orders import OrderRequest

__all__ = ["ApprovedOrder", "_mint"]


def _mint(request: OrderRequest, purpose: str, intent_id: str) -> ApprovedOrder:
    """For perpbot.risk.gate only."""
    return ApprovedOrder(GATE_KEY, request, purpose, intent_id)
