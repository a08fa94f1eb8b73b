"""Per-trade, per-leg attribution: where a trade's money came from, against what the strategy expected.

Pure and exact. Inputs are the venue's own fills and funding payments of each leg (as journalled) and
the decisions' expectations (perpbot.core.decisions.LegExpectation); every figure is a Decimal computed
in a wide context, so sums and differences carry no rounding (only ratios and bps are divisions).

Signs: slippage is a cost (+ = filled worse than the reference price); fees are paid (+); funding is
received (+) or paid (-); PnL figures are gains (+). For a leg of direction d (+1 long, -1 short):

    basis          = d x (exit notional - entry cost of the closed size)           (realised price PnL)
    expected_basis = the same at the depth prices the fills' decisions expected
    slippage       = expected_basis - basis = entry slippage on the closed size + exit slippage
    total          = basis - fees + funding = expected_basis - slippage - fees + funding

so the parts add up to the realised PnL exactly. Each fill is judged by the expectation of the decision
whose order it filled (an entry, an exit, a leg repair of either); a fill no decision expected (a close-all
flatten, a trade adopted at start-up) takes its own price as reference: its slippage is 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from decimal import Context, Decimal, localcontext
from typing import Any

from perpbot.core.decisions import LegExpectation
from perpbot.core.numbers import plain

ZERO = Decimal(0)
BPS = Decimal(10000)
COST_GRID = Decimal("1e-12")  # the portfolio's grid for the cost share of a partial close
WIDE = Context(prec=120)  # products and sums of the inputs' digits stay exact
NARROW = Context(prec=28)  # divisions (averages, bps, ratios, prorated funding): Decimal's default precision
DAY_S = 86400.0


@dataclass(frozen=True, slots=True)
class LegFill:
    """One venue fill on a leg (base units, quote price, fee paid in USDT) and the expectation of the
    decision whose order it filled (None: judged by the leg's entry or exit expectation, if any)."""

    side: str
    base_qty: Decimal
    price: Decimal
    fee: Decimal
    ts: float
    reference: LegExpectation | None = None


@dataclass(frozen=True, slots=True)
class LegInputs:
    """One leg of a trade: its entry side, the venue's fills and funding payments while it was held,
    the entry's expectation (funding, and the reference of entry fills without their own), the exit's
    (the reference of exit fills without their own), and the time it was held."""

    venue: str
    symbol: str
    side: str  # the entry's side: buy = long leg
    fills: tuple[LegFill, ...]
    funding: tuple[Decimal, ...]
    entry: LegExpectation | None
    exit: LegExpectation | None
    held_s: Decimal


@dataclass(frozen=True, slots=True)
class LegAttribution:
    venue: str
    symbol: str
    side: str
    entry_qty: Decimal
    entry_price: Decimal | None  # average realised entry price
    entry_top_price: Decimal | None
    entry_depth_price: Decimal | None
    exit_qty: Decimal
    exit_price: Decimal | None
    exit_top_price: Decimal | None
    exit_depth_price: Decimal | None
    entry_slippage_usdt: Decimal  # against the depth price, whole entry size
    entry_slippage_bps: Decimal
    entry_slippage_top_usdt: Decimal  # against the top of book at decision
    entry_slippage_top_bps: Decimal
    exit_slippage_usdt: Decimal
    exit_slippage_bps: Decimal
    exit_slippage_top_usdt: Decimal
    exit_slippage_top_bps: Decimal
    fees_usdt: Decimal
    expected_fees_usdt: Decimal
    fee_drift_usdt: Decimal
    funding_usdt: Decimal
    expected_funding_usdt: Decimal  # for the time actually held
    funding_drift_usdt: Decimal
    held_s: Decimal
    expected_basis_usdt: Decimal
    slippage_usdt: Decimal  # the part of basis lost to slippage (closed size)
    basis_usdt: Decimal
    total_usdt: Decimal
    traded_notional_usdt: Decimal

    def parts(self) -> dict[str, Decimal]:
        """The parts of the leg's realised PnL (they sum to total_usdt exactly)."""
        return {"expected_basis_usdt": self.expected_basis_usdt, "slippage_usdt": -self.slippage_usdt,
                "fees_usdt": -self.fees_usdt, "funding_usdt": self.funding_usdt}

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = plain_or_none(value) if isinstance(value, Decimal) or value is None else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LegAttribution:
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = data.get(f.name)
            values[f.name] = raw if f.name in ("venue", "symbol", "side") else (
                None if raw is None else Decimal(str(raw)))
        return cls(**values)


@dataclass(frozen=True, slots=True)
class TradeAttribution:
    trade_id: str
    strategy: str
    base: str
    opened_ts: float
    closed_ts: float | None
    expected_edge_bps: Decimal | None
    expected_edge_usdt: Decimal | None
    legs: tuple[LegAttribution, ...]

    @property
    def closed(self) -> bool:
        return self.closed_ts is not None

    def total(self, name: str) -> Decimal:
        return sum((getattr(leg, name) for leg in self.legs), ZERO)

    @property
    def realized_pnl_usdt(self) -> Decimal:
        return self.total("total_usdt")

    def as_dict(self) -> dict[str, Any]:
        totals = {name: plain_or_none(self.total(name)) for name in SUMMED}
        return {
            "trade_id": self.trade_id, "strategy": self.strategy, "base": self.base, "opened_ts": self.opened_ts,
            "closed_ts": self.closed_ts, "status": "closed" if self.closed else "open",
            "expected_edge_bps": plain_or_none(self.expected_edge_bps),
            "expected_edge_usdt": plain_or_none(self.expected_edge_usdt),
            "realized_pnl_usdt": plain_or_none(self.realized_pnl_usdt),
            "totals": totals,
            "legs": [{**leg.as_dict(), "parts": {k: plain_or_none(v) for k, v in leg.parts().items()}}
                     for leg in self.legs],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TradeAttribution:
        def opt(value: Any) -> Decimal | None:
            return None if value is None else Decimal(str(value))
        return cls(data["trade_id"], data["strategy"], data["base"], float(data["opened_ts"]),
                   None if data.get("closed_ts") is None else float(data["closed_ts"]),
                   opt(data.get("expected_edge_bps")), opt(data.get("expected_edge_usdt")),
                   tuple(LegAttribution.from_dict(leg) for leg in data.get("legs", ())))


# Figures that add up over legs, trades, days.
SUMMED = ("entry_slippage_usdt", "exit_slippage_usdt", "entry_slippage_top_usdt", "exit_slippage_top_usdt",
          "fees_usdt", "expected_fees_usdt", "fee_drift_usdt", "funding_usdt", "expected_funding_usdt",
          "funding_drift_usdt", "expected_basis_usdt", "slippage_usdt", "basis_usdt", "total_usdt",
          "traded_notional_usdt")


def plain_or_none(value: Decimal | None) -> str | None:
    """Exact text of an amount (no rounding to the default 28 digits), None stays None."""
    if value is None:
        return None
    with localcontext(WIDE):
        return plain(value)


def _divide(a: Decimal, b: Decimal) -> Decimal:
    return NARROW.divide(a, b)


def _bps(amount: Decimal, notional: Decimal) -> Decimal:
    return _divide(amount * BPS, notional) if notional else ZERO


def _clean(value: Decimal) -> Decimal:
    """Trailing zeros off (the value is unchanged)."""
    return value.normalize() if value else ZERO


def attribute_leg(leg: LegInputs) -> LegAttribution:
    """The attribution of one leg from its fills, funding and expectations (see the module docstring)."""
    with localcontext(WIDE):
        return _attribute(leg)


def _attribute(leg: LegInputs) -> LegAttribution:
    direction = 1 if leg.side == "buy" else -1
    entries = [f for f in leg.fills if f.side == leg.side]
    exits = [f for f in leg.fills if f.side != leg.side]
    entry_qty = sum((f.base_qty for f in entries), ZERO)
    exit_qty = sum((f.base_qty for f in exits), ZERO)
    entry_notional = sum((f.base_qty * f.price for f in entries), ZERO)
    exit_notional = sum((f.base_qty * f.price for f in exits), ZERO)
    entry_price = _divide(entry_notional, entry_qty) if entry_qty else None
    exit_price = _divide(exit_notional, exit_qty) if exit_qty else None

    def reference(fill: LegFill) -> LegExpectation | None:
        """The expectation a fill is judged by: its own decision's, else the leg's for its side."""
        return fill.reference or (leg.entry if fill.side == leg.side else leg.exit)

    def expected(fills: list[LegFill], price_of: str) -> Decimal:
        """The fills' notional at their references' prices (a fill with none: at its own price)."""
        total = ZERO
        for fill in fills:
            ref = reference(fill)
            total += fill.base_qty * (getattr(ref, price_of) if ref is not None else fill.price)
        return total

    entry_depth_notional, entry_top_notional = expected(entries, "depth_price"), expected(entries, "top_price")
    exit_depth_notional, exit_top_notional = expected(exits, "depth_price"), expected(exits, "top_price")

    def cost(notional: Decimal, reference_notional: Decimal, sign: int) -> tuple[Decimal, Decimal]:
        """(slippage USDT, bps) of fills worth `notional` against `reference_notional` (+ = worse)."""
        usdt = sign * (notional - reference_notional)
        return usdt, _bps(usdt, reference_notional)

    entry_slip, entry_slip_bps = cost(entry_notional, entry_depth_notional, direction)
    entry_top_slip, entry_top_bps = cost(entry_notional, entry_top_notional, direction)
    exit_slip, exit_slip_bps = cost(exit_notional, exit_depth_notional, -direction)
    exit_top_slip, exit_top_bps = cost(exit_notional, exit_top_notional, -direction)

    fees = sum((f.fee for f in leg.fills), ZERO)
    entry_rate = leg.entry.fee_rate if leg.entry else None
    expected_fees = ZERO
    for fill in leg.fills:
        ref = reference(fill)
        # A fill judged by nothing (a close-all flatten) is expected at the entry's rate, or as charged.
        rate = ref.fee_rate if ref is not None else entry_rate
        expected_fees += fill.base_qty * fill.price * rate if rate is not None else fill.fee

    funding = sum(leg.funding, ZERO)
    expected_funding = ZERO
    if leg.entry is not None and leg.entry.funding_interval_s > 0 and entry_qty:
        expected_funding = _divide(-direction * entry_depth_notional * leg.entry.funding_rate * leg.held_s,
                                   leg.entry.funding_interval_s)

    closed = min(exit_qty, entry_qty)
    if closed == entry_qty:
        entry_cost_closed, entry_expected_closed = entry_notional, entry_depth_notional
    elif entry_qty:
        entry_cost_closed = _divide(entry_notional * closed, entry_qty).quantize(COST_GRID)
        entry_expected_closed = _divide(entry_depth_notional * closed, entry_qty).quantize(COST_GRID)
    else:
        entry_cost_closed = entry_expected_closed = ZERO
    exit_cost, exit_expected = exit_notional, exit_depth_notional
    if exit_qty > closed:  # the exits went past the entries (a flip): only the closing share counts
        exit_cost = _divide(exit_notional * closed, exit_qty).quantize(COST_GRID)
        exit_expected = _divide(exit_depth_notional * closed, exit_qty).quantize(COST_GRID)
    basis = direction * (exit_cost - entry_cost_closed) if closed else ZERO
    expected_basis = direction * (exit_expected - entry_expected_closed) if closed else ZERO
    slippage = expected_basis - basis  # = entry slippage on the closed size + exit slippage
    total = basis - fees + funding

    def average(notional: Decimal, qty: Decimal) -> Decimal | None:
        return _divide(notional, qty) if qty else None

    return LegAttribution(
        venue=leg.venue, symbol=leg.symbol, side=leg.side,
        entry_qty=_clean(entry_qty), entry_price=entry_price, entry_top_price=average(entry_top_notional, entry_qty),
        entry_depth_price=average(entry_depth_notional, entry_qty), exit_qty=_clean(exit_qty), exit_price=exit_price,
        exit_top_price=average(exit_top_notional, exit_qty), exit_depth_price=average(exit_depth_notional, exit_qty),
        entry_slippage_usdt=_clean(entry_slip), entry_slippage_bps=entry_slip_bps,
        entry_slippage_top_usdt=_clean(entry_top_slip), entry_slippage_top_bps=entry_top_bps,
        exit_slippage_usdt=_clean(exit_slip), exit_slippage_bps=exit_slip_bps,
        exit_slippage_top_usdt=_clean(exit_top_slip), exit_slippage_top_bps=exit_top_bps,
        fees_usdt=_clean(fees), expected_fees_usdt=_clean(expected_fees), fee_drift_usdt=_clean(fees - expected_fees),
        funding_usdt=_clean(funding), expected_funding_usdt=_clean(expected_funding),
        funding_drift_usdt=_clean(funding - expected_funding), held_s=leg.held_s,
        expected_basis_usdt=_clean(expected_basis), slippage_usdt=_clean(slippage), basis_usdt=_clean(basis),
        total_usdt=_clean(total), traded_notional_usdt=_clean(entry_notional + exit_notional),
    )


@dataclass(frozen=True, slots=True)
class SummaryRow:
    """One UTC day, strategy and venue: the legs closed that day, summed."""

    day: str  # YYYY-MM-DD
    strategy: str
    venue: str
    legs: int
    figures: dict[str, Decimal]

    def as_dict(self) -> dict[str, Any]:
        return {"day": self.day, "strategy": self.strategy, "venue": self.venue, "legs": self.legs,
                **{k: plain_or_none(v) for k, v in self.figures.items()},
                "funding_realized_expected_ratio": plain_or_none(ratio(self.figures["funding_usdt"],
                                                                       self.figures["expected_funding_usdt"]))}


def ratio(realized: Decimal, expected: Decimal) -> Decimal | None:
    """realized / expected (None when nothing was expected)."""
    return _divide(realized, expected) if expected else None


def utc_day(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d")


def daily_summary(trades: Iterable[TradeAttribution]) -> list[SummaryRow]:
    """Per UTC day of closing, strategy and venue: every summed figure of the closed trades' legs."""
    groups: dict[tuple[str, str, str], list[LegAttribution]] = {}
    for trade in trades:
        if trade.closed_ts is None:
            continue
        for leg in trade.legs:
            groups.setdefault((utc_day(trade.closed_ts), trade.strategy, leg.venue), []).append(leg)
    rows = []
    with localcontext(WIDE):
        for (day, strategy, venue), legs in sorted(groups.items()):
            figures = {name: _clean(sum((getattr(leg, name) for leg in legs), ZERO)) for name in SUMMED}
            rows.append(SummaryRow(day, strategy, venue, len(legs), figures))
    return rows


SUMMARY_COLUMNS = ("day", "strategy", "venue", "legs", *SUMMED, "funding_realized_expected_ratio")
