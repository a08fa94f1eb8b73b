"""The control API's read views: JSON-ready answers built from the engine's state.

Plain functions over a read-only view of the engine's desk (`DeskView`, which
perpbot.execution.desk.Desk satisfies): no HTTP here, and nothing of the engine but its state.
The engine's facade answers perpbot.core.ports.EngineCommands' reads through them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, Protocol

from perpbot.core.margin import LegMargin
from perpbot.core.orders import OrderResult
from perpbot.portfolio.book import FillRecord, Portfolio, dstr

Key = tuple[str, str]
ZERO = Decimal(0)
DAY_S = 86400.0


class FillsJournal(Protocol):
    async def fills_since(self, since_ts: float) -> Any: ...


class DeskView(Protocol):
    """What the read views read (attributes of perpbot.execution.desk.Desk)."""

    state: str
    state_reason: str
    state_since: float
    leg_failures: int
    reconciled: dict[str, bool]
    open_trades: Any  # a mapping trade id -> trade
    portfolio: Portfolio
    in_flight: dict[str, dict[str, Any]]
    venue_open_orders: dict[str, list[OrderResult]]
    @property
    def clock(self) -> Callable[[], float]: ...

    @property
    def journal(self) -> FillsJournal: ...


def s(value: Any) -> Any:
    """A Decimal as its plain string (JSON-ready); anything else as it is."""
    return dstr(value) if isinstance(value, Decimal) else value


def journal_fill(row: Any) -> FillRecord:
    """A journal fills row (Journal.fills_since) as the portfolio's record of it."""
    return FillRecord(row["venue"], row["symbol"], row["side"], row["base_qty"], row["price"], row["fee"],
                      row["realized_pnl"], row["ts"], row["strategy"], row["client_order_id"])


def trading_state(desk: DeskView) -> dict[str, Any]:
    return {"state": desk.state, "reason": desk.state_reason, "since": desk.state_since,
            "reconciled": dict(desk.reconciled), "leg_failures": desk.leg_failures,
            "open_trades": len(desk.open_trades),
            # Venues the account preflight keeps out of trading, with the reason (issue 16).
            "venues_blocked": dict(getattr(desk, "venues_blocked", {})),
            # "venue symbol" -> since when (epoch s) no order goes there until the venue states the position
            # (a refused reduce-only order, a liquidation/ADL pushed: perpbot.execution.doubts).
            "positions_in_doubt": {f"{v} {sym}": since for (v, sym), since in getattr(desk, "doubted", {}).items()}}


def positions(portfolio: Portfolio, residues: Mapping[Key, Decimal],
              mark: Callable[[str, str], Decimal | None]) -> list[dict[str, Any]]:
    """Open positions with their mark, unrealised P&L, leverage and unhedged residue."""
    out = []
    for position in portfolio.open_positions():
        key = (position.venue, position.symbol)
        price = mark(*key)
        out.append({
            "venue": position.venue, "symbol": position.symbol,
            "side": "long" if position.size > 0 else "short", "size": s(position.size),
            "entry_price": s(position.entry_price), "mark_price": s(price),
            "unrealized_pnl": s((price - position.entry_price) * position.size) if price is not None else "0",
            "leverage": s(portfolio.leverage.get(key)),
            # Base held beyond the trade's other leg: a residue no venue could trade, unhedged.
            "unhedged_base": s(residues.get(key, ZERO)),
            **leg_margin(portfolio.margins.get(key)),
        })
    return out


def leg_margin(margin: LegMargin | None) -> dict[str, Any]:
    """A leg's margin figures as its venue stated them (the distance from the venue's own mark, so the
    pair is the venue's); all None when the venue has said nothing yet."""
    if margin is None:
        return {"liquidation_price": None, "liquidation_distance_pct": None, "maintenance_margin": None,
                "margin_ratio": None, "adl_rank": None, "margin_mode": None, "margin_source": None}
    return {"liquidation_price": s(margin.liquidation_price), "liquidation_distance_pct": s(margin.distance_pct),
            "maintenance_margin": s(margin.maintenance_margin), "margin_ratio": s(margin.margin_ratio),
            "adl_rank": margin.adl_rank, "margin_mode": margin.margin_mode, "margin_source": margin.source}


def balances(portfolio: Portfolio) -> list[dict[str, Any]]:
    """Each venue's balance in its own currency, with its equity in USDT and the USDC/USDT rate used."""
    rate = s(portfolio.usdc_usdt)
    return [{"venue": b.venue, "equity": s(b.equity), "available": s(b.available),
             "used_margin": s(b.used_margin), "currency": "USDC" if b.venue in portfolio.usdc_venues else "USDT",
             "equity_usdt": s(portfolio.to_usdt(b.venue, b.equity)), "usdc_usdt": rate}
            for b in portfolio.balances.values()]


def active_orders(desk: DeskView) -> list[dict[str, Any]]:
    """Orders being sent, then each venue's open orders as last reconciled."""
    working = list(desk.in_flight.values())
    for venue, orders in desk.venue_open_orders.items():
        working += [{"venue": venue, "symbol": o.symbol, "side": o.side, "qty": s(o.qty),
                     "filled_qty": s(o.filled_qty), "client_order_id": o.client_order_id,
                     "status": o.status} for o in orders]
    return working


def pnl_today(portfolio: Portfolio) -> dict[str, Any]:
    return {k: s(v) for k, v in portfolio.pnl_today().items()}


async def trades_since(desk: DeskView, since_ts: float) -> list[dict[str, Any]]:
    """Fills of the last 24 h at most (as before: older ones are in the journal only), oldest
    first. From memory when the portfolio's bounded history still holds all of them, else
    from the journal (a fast market outruns portfolio.MAX_RECENT_FILLS within a day)."""
    since_ts = max(since_ts, desk.clock() - DAY_S)
    if desk.portfolio.complete_since(since_ts):
        return [f.as_dict() for f in desk.portfolio.trades_since(since_ts)]
    return [journal_fill(row).as_dict() for row in await desk.journal.fills_since(since_ts)]
