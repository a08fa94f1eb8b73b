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
    fee: Decimal | None = None  # positive a cost; None when the reader did not load it


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
    no client id is used twice at one venue (no duplicate order for one intent). The venue's own closes
    (`is_forced`: a liquidation, an ADL) are no order of ours; any other order without a client id is."""
    known = {(o.venue, o.client_order_id) for o in journal_orders}
    violations = []
    for venue, account in accounts.items():
        ids = Counter(order.get("client_id") for order in account.get("orders") or [] if not is_forced(order))
        for client_id, count in sorted(ids.items(), key=lambda item: str(item[0])):
            if client_id is None or (venue, client_id) not in known:
                violations.append(f"{venue}: venue order with client id {client_id!r} has no journal row")
            if client_id is not None and count > 1:
                violations.append(f"{venue}: {count} venue orders for one journal order {client_id}")
    return violations


def check_fills(accounts: Mapping[str, Any], journal_fills: Iterable[JournalFill]) -> list[str]:
    """Base quantity filled per order at the venue equals the base quantity the journal recorded."""
    venue_filled: dict[tuple[str, str | None], Decimal] = defaultdict(Decimal)
    forced = forced_order_ids(accounts)
    for venue, account in accounts.items():
        for fill in account.get("fills") or []:
            if (venue, fill.get("order_id")) not in forced:  # the venue's own close: unexplained_corrections
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


FINAL_ORDER_STATUSES = ("filled", "partially_filled", "canceled", "expired", "rejected", "failed", "not_found")


def check_order_fills(accounts: Mapping[str, Any], journal_orders: Iterable[JournalOrder]) -> list[str]:
    """Per order the journal holds as final: its booked filled quantity (the orders table, venue units)
    equals the venue's filled quantity for that client id; an order the venue never filled (or never
    saw) has none booked. The private streams book from the venue's trade records and REST from the
    order's state: whichever told the bot first, a fill pushed twice, late or out of order must neither
    add to the order nor go missing (`check_fills` compares the fills table; this the orders table,
    which every later settle of the order starts from)."""
    venue_filled: dict[tuple[str, str], Decimal] = {}
    for venue, account in accounts.items():
        for order in account.get("orders") or []:
            if order.get("client_id") is not None:
                venue_filled[(venue, order["client_id"])] = Decimal(order.get("filled") or "0")
    violations = []
    for order in sorted(journal_orders, key=lambda o: (o.venue, o.client_order_id)):
        if order.status not in FINAL_ORDER_STATUSES:
            continue
        theirs = venue_filled.get((order.venue, order.client_order_id), ZERO)
        if order.filled_qty != theirs:
            violations.append(f"order fills {order.venue} {order.client_order_id} ({order.status}): journal "
                              f"booked {order.filled_qty} != venue filled {theirs}")
    return violations


def check_fees(accounts: Mapping[str, Any], journal_fills: Iterable[JournalFill]) -> list[str]:
    """Fee per order at the venue (the sum of its executions' fees) equals the fee the journal booked in
    its fills, exactly: a duplicated fill push must not charge the fee twice, a REST answer (order-level
    fee) and the stream's per-execution fees must agree."""
    venue_fee: dict[tuple[str, str | None], Decimal] = defaultdict(Decimal)
    forced = forced_order_ids(accounts)
    for venue, account in accounts.items():
        for fill in account.get("fills") or []:
            if (venue, fill.get("order_id")) not in forced:  # a liquidation's fee is the venue's, not booked
                venue_fee[(venue, fill.get("client_id"))] += Decimal(fill.get("fee") or "0")
    journal_fee: dict[tuple[str, str | None], Decimal] = defaultdict(Decimal)
    for fill in journal_fills:
        if fill.fee is not None:
            journal_fee[(fill.venue, fill.client_order_id)] += fill.fee
    violations = []
    for key in sorted(set(venue_fee) | set(journal_fee), key=str):
        theirs, mine = venue_fee.get(key, ZERO), journal_fee.get(key, ZERO)
        if theirs != mine:
            violations.append(f"fees {key[0]} {key[1]}: venue {theirs} != journal {mine}")
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


# --- the venue's own closes (liquidation, ADL) ----------------------------------------------------------
FORCED_ORIGINS = ("liquidation", "adl")


@dataclass(frozen=True, slots=True)
class ForcedClose:
    """One close the venue made itself (no client id; the simulator's `origin`), with its fills summed."""

    venue: str
    symbol: str
    order_id: str
    origin: str  # "liquidation" / "adl"
    base_qty: Decimal  # signed: what it did to the position (a long liquidated: negative)
    price: Decimal  # the last fill's price (the mark)
    ts_ms: int  # the venue's time of its first fill


def is_forced(order: Mapping[str, Any]) -> bool:
    """An order the venue placed itself to close a position: no client id and a forced `origin`."""
    return order.get("client_id") is None and order.get("origin") in FORCED_ORIGINS


def forced_order_ids(accounts: Mapping[str, Any]) -> set[tuple[str, str]]:
    return {(venue, order["order_id"]) for venue, account in accounts.items()
            for order in account.get("orders") or [] if is_forced(order)}


def forced_closes(accounts: Mapping[str, Any]) -> list[ForcedClose]:
    """Every filled close the venues made themselves, oldest first."""
    out = []
    for venue, account in accounts.items():
        fills = account.get("fills") or []
        for order in account.get("orders") or []:
            if not is_forced(order):
                continue
            own = [f for f in fills if f.get("order_id") == order["order_id"]]
            if not own:
                continue
            base = sum((Decimal(f["base_qty"]) for f in own), ZERO)
            signed = base if order.get("side") == "buy" else -base
            out.append(ForcedClose(venue, order["symbol"], order["order_id"], str(order["origin"]), signed,
                                   Decimal(own[-1]["price"]), min(int(f["ts_ms"]) for f in own)))
    return sorted(out, key=lambda c: (c.ts_ms, c.venue, c.order_id))


def unexplained_corrections(changes: Iterable[Mapping[str, Any]], forced: Iterable[ForcedClose]
                            ) -> tuple[list[Mapping[str, Any]], list[ForcedClose]]:
    """The bot books no fill for a venue's own close (no order of its own): its reconciliation takes the
    position from the venue instead. A position correction is explained when, on its venue and symbol, the
    forced closes add up to exactly the correction (venue - local = the forced closes' signed size).
    Returns (every other correction: the bot's own accounting had drifted, judged as before; the forced
    closes no correction has explained yet, for a later reconciliation)."""
    forced = list(forced)
    pending: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for close in forced:
        pending[(close.venue, close.symbol)] += close.base_qty
    unexplained: list[Mapping[str, Any]] = []
    for change in changes:
        key = (str(change.get("venue")), str(change.get("symbol")))
        if change.get("kind") == "position" and key in pending and \
                Decimal(str(change["venue_size"])) - Decimal(str(change["local_size"])) == pending[key]:
            del pending[key]
        else:
            unexplained.append(change)
    return unexplained, [c for c in forced if (c.venue, c.symbol) in pending]


def naked_after_forced_close(close: ForcedClose, accounts: Mapping[str, Any], lots: Mapping[str, Decimal],
                             partner: tuple[str, str] | None = None) -> tuple[Decimal | None, int | None]:
    """From the venues' own fill times: the unhedged notional x seconds from a forced close until the bot's
    reduce-only orders of the opposite side (closing the partner leg: a liquidated long's short is bought
    back) on the partner leg's venue and symbol (`partner`, from the journal's trade; None: any other venue
    of the base) have filled its size, to less than one lot of the coarsest venue; and the time that took in
    ms. (None, None) while they have not. Entries (never reduce-only) cannot pass for the close, nor can
    closes of other trades when the partner is known (one open trade per venue and symbol).

    With the partner known, its closing fills since the partner's last entry fill count even when they came
    before the venue's close (the trade's own exit won the race against the liquidation): nothing was naked
    for the part they had closed by then."""
    base = base_of(close.venue, close.symbol)
    lot = lots.get(base, ZERO)
    closing_side = "buy" if close.base_qty < 0 else "sell"  # the partner's close: the forced close's opposite
    floor = close.ts_ms if partner is None else _last_entry_fill_ms(accounts.get(partner[0]) or {}, partner[1],
                                                                     close.ts_ms)
    events: list[tuple[int, Decimal]] = []
    for venue, account in accounts.items():
        if venue == close.venue:
            continue
        reducing = {o["order_id"] for o in account.get("orders") or []
                    if o.get("client_id") is not None and o.get("reduce_only") and o.get("side") == closing_side}
        for fill in account.get("fills") or []:
            if partner is not None and (venue, fill["symbol"]) != partner:
                continue
            if (fill.get("order_id") in reducing and base_of(venue, fill["symbol"]) == base
                    and int(fill["ts_ms"]) >= floor):
                events.append((max(int(fill["ts_ms"]), close.ts_ms), Decimal(fill["base_qty"])))
    naked, usdt_s, since = abs(close.base_qty), ZERO, close.ts_ms
    for ts, qty in sorted(events, key=lambda e: e[0]):
        if naked < lot or naked <= 0:
            break
        usdt_s += naked * close.price * Decimal(ts - since) / 1000
        naked, since = naked - qty, ts
    if naked >= lot and naked > 0:
        return None, None
    return usdt_s, since - close.ts_ms


def _last_entry_fill_ms(account: Mapping[str, Any], symbol: str, before_ms: int) -> int:
    """When the bot's last entry (not reduce-only) on `symbol` filled at or before `before_ms` (else before_ms):
    the partner leg's closes from then on are the trade's own."""
    entries = {o["order_id"] for o in account.get("orders") or []
               if o.get("client_id") is not None and not o.get("reduce_only")}
    times = [int(f["ts_ms"]) for f in account.get("fills") or []
             if f["symbol"] == symbol and f.get("order_id") in entries and int(f["ts_ms"]) <= before_ms]
    return max(times, default=before_ms)


TradeRow = tuple[list[dict[str, Any]], float, float | None]  # legs, opened and closed (ms; None: open)


def partner_of(close: ForcedClose, trades: Iterable[TradeRow]) -> tuple[str, str] | None:
    """The other leg (venue, symbol) of the journal's trade that held the closed leg when the venue closed it
    (one open trade per venue and symbol): the latest opened before the close and not closed before it; failing
    that, the first opened within a second after it (a trade's opened_ts is written once its fills are booked,
    a few ms after the venue's fill). None when no trade, or not a two-leg one."""
    key = (close.venue, close.symbol)
    held = [(opened, legs) for legs, opened, closed in trades
            if opened <= close.ts_ms + 1000 and (closed is None or closed >= close.ts_ms)
            and any((leg["venue"], leg["symbol"]) == key for leg in legs)]
    before = [h for h in held if h[0] <= close.ts_ms]
    chosen = max(before, key=lambda h: h[0]) if before else min(held, key=lambda h: h[0], default=None)
    if chosen is None:
        return None
    others = [(leg["venue"], leg["symbol"]) for leg in chosen[1] if (leg["venue"], leg["symbol"]) != key]
    return others[0] if len(others) == 1 else None


def check_forced_close_hedged(forced: Iterable[ForcedClose], accounts: Mapping[str, Any],
                              lots: Mapping[str, Decimal], budget: Decimal, halted: bool = False,
                              partners: Mapping[str, tuple[str, str]] | None = None) -> tuple[list[str], list[str]]:
    """After a venue closed one leg itself, the bot closed the other (`naked_after_forced_close`) within the
    unhedged-exposure budget, measured from the venues' fill times. Returns
    (violations, one measured line per forced close for the report)."""
    violations, figures = [], []
    for close in forced:
        partner = (partners or {}).get(close.order_id)
        usdt_s, took_ms = naked_after_forced_close(close, accounts, lots, partner)
        what = f"{close.origin} of {close.venue} {close.symbol} {close.base_qty}" + (
            f" (partner {partner[0]} {partner[1]})" if partner else "")
        if usdt_s is None:
            if not halted:
                violations.append(f"{what}: the bot has not closed the other leg (no reduce-only close of its "
                                  "size on another venue) and trading is not HALTED")
            figures.append(f"{what}: other leg not closed")
            continue
        figures.append(f"{what}: other leg closed after {took_ms} ms, naked {usdt_s:.1f} USDT*s")
        if usdt_s > budget:
            violations.append(f"{what}: naked {usdt_s:.1f} USDT*s before the bot closed the other leg, over the "
                              f"budget {budget}")
    return violations, figures


# --- trades, exits and residues (the crash suite's exit and repair kill points) -----------------------
def signed_leg(leg: Mapping[str, Any]) -> Decimal:
    """A trade leg's signed base size (buy +, sell -) as the journal's trades table records it."""
    size = Decimal(str(leg.get("base_qty") or "0"))
    return size if leg.get("side") == "buy" else -size


def trade_positions(open_trades: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], Decimal]:
    """(venue, symbol) -> the signed base size the journal's open trades hold there."""
    out: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for trade in open_trades:
        for leg in trade.get("legs") or []:
            out[(leg["venue"], leg["symbol"])] += signed_leg(leg)
    return dict(out)


def coarse_lots(lots: Mapping[tuple[str, str], Decimal]) -> dict[str, Decimal]:
    """Per base asset: the coarsest lot (in base units) of the venues that list it."""
    out: dict[str, Decimal] = {}
    for (venue, symbol), lot in lots.items():
        base = base_of(venue, symbol)
        out[base] = max(out.get(base, ZERO), lot)
    return out


def check_trades_match_venue(open_trades: Iterable[Mapping[str, Any]], accounts: Mapping[str, Any],
                             lots: Mapping[tuple[str, str], Decimal]) -> list[str]:
    """Every open trade's legs are what the venues hold: per venue/symbol, the sum of the open trades'
    signed leg sizes equals the venue position within less than one lot of the base's coarsest venue
    (a smaller difference is a sub-lot residue, judged by `check_residue`). A partial exit the journal
    missed leaves the trade at its old size here, and every later exit of it is refused."""
    trades = list(open_trades)
    held = trade_positions(trades)
    remote = venue_positions(accounts)
    coarse = coarse_lots(lots)
    violations = []
    for key in sorted(set(held) | set(remote)):
        mine, theirs = held.get(key, ZERO), remote.get(key, ZERO)
        tolerance = coarse.get(base_of(*key), ZERO)
        if abs(mine - theirs) >= tolerance and mine != theirs:
            owners = [t.get("trade_id") for t in trades
                      if any((leg["venue"], leg["symbol"]) == key for leg in t.get("legs") or [])]
            violations.append(f"trades vs venue {key[0]} {key[1]}: open trades {owners or '[]'} hold {mine}, "
                              f"the venue {theirs} (one lot of the coarsest venue: {tolerance})")
    return violations


def base_residue(accounts: Mapping[str, Any], open_trades: Iterable[Mapping[str, Any]]
                 ) -> dict[str, tuple[Decimal, Decimal]]:
    """Per base with exposure at the venues: (net signed base the venues hold across all venues,
    the part of it the journal's open trades do not account for)."""
    venue_net: dict[str, Decimal] = defaultdict(Decimal)
    for (venue, symbol), size in venue_positions(accounts).items():
        venue_net[base_of(venue, symbol)] += size
    trade_net: dict[str, Decimal] = defaultdict(Decimal)
    for (venue, symbol), size in trade_positions(open_trades).items():
        trade_net[base_of(venue, symbol)] += size
    return {base: (net, net - trade_net.get(base, ZERO)) for base, net in venue_net.items() if net}


def check_residue(accounts: Mapping[str, Any], open_trades: Iterable[Mapping[str, Any]],
                  lots: Mapping[tuple[str, str], Decimal], marks: Mapping[str, Decimal],
                  reported_usdt: Decimal = ZERO, halted: bool = False) -> list[str]:
    """Unhedged residue, from the venues' positions: per base, |long - short| across venues must be
    below one lot of the coarsest venue (more is a naked leg the bot must hedge or unwind, unless it
    HALTED saying so); a smaller residue must be accounted for by the bot, either in its journal (open
    trades whose legs differ by it) or as a reported residue / unhedged notional (`reported_usdt` > 0)."""
    coarse = coarse_lots(lots)
    violations = []
    for base, (net, unexplained) in sorted(base_residue(accounts, open_trades).items()):
        lot = coarse.get(base, ZERO)
        usdt = abs(net) * marks.get(base, ZERO)
        if abs(net) >= lot and not halted:
            violations.append(f"naked {base}: the venues hold net {net} ({usdt:.2f} USDT), at least one lot "
                              f"({lot}) of the coarsest venue, and trading is not HALTED")
        elif abs(net) < lot and unexplained and reported_usdt <= 0:
            violations.append(f"unhedged residue {base}: the venues hold net {net} ({usdt:.2f} USDT), below one "
                              f"lot ({lot}); {unexplained} of it is in no open trade and the bot reports no residue")
    return violations


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition -> {'name{labels}': value} (comments skipped, unparsable lines too)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            continue
    return out


def metric_sum(metrics: Mapping[str, float], name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (no labels: every sample)."""
    total = 0.0
    for key, value in metrics.items():
        metric, _, rest = key.partition("{")
        if metric != name:
            continue
        if all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += value
    return total


def reported_residue_usdt(metrics: Mapping[str, float]) -> float:
    """What the bot itself reports as unhedged right now: any *residue* gauge, else the unhedged notional."""
    residue = sum(v for k, v in metrics.items() if "residue" in k.partition("{")[0] and not k.endswith("_created"))
    return residue or metrics.get("perpbot_unhedged_notional_usdt", 0.0)


def check_exits_not_refused(reduce_only_refusals: float, since: str) -> list[str]:
    """An exit, unwind or flatten the risk gate refuses as 'does not reduce position' means the bot's
    trades disagree with the venue: refused once, refused forever. Any such refusal is a violation."""
    if reduce_only_refusals > 0:
        return [f"{reduce_only_refusals:.0f} reduce-only orders refused ('does not reduce position') {since}"]
    return []


def summary(values: Iterable[float]) -> tuple[float | None, float | None]:
    """(median, max) of the values, (None, None) when there are none."""
    ordered = sorted(values)
    if not ordered:
        return None, None
    mid = len(ordered) // 2
    median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return round(median, 3), round(ordered[-1], 3)
