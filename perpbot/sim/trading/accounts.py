"""Simulated venue account: balances, net positions, orders and fills with exact Decimal accounting.

The simulator is the default venue of `perpbot run` and runs for weeks: its order and fill
histories are bounded (MAX_ORDER_HISTORY closed orders, MAX_FILL_HISTORY fills, the oldest go
first; an open order is never dropped). Like a real venue's, queries about older orders answer
"unknown order". Balances and positions are running totals and do not depend on the history.

Besides the trading wallet (`balances`) an account has the venue's non-trading wallet, `funding_wallet` (OKX
funding account "6", Binance spot "MAIN", Bybit "FUND", Hyperliquid spot USDC): internal transfers move money
between the two exactly (perpbot.sim.trading.transfers serves them on each venue's wire), and `transfers`
lists the ones done.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from perpbot.sim.trading.matching import SimReject

ZERO = Decimal(0)
# History bounds per account (per venue). ~1 KB per order or fill with its Decimals: <= ~10 MB a
# venue. Far above what one test or scenario places (the invariant checks compare every venue
# fill with the journal), and ~4 h of the hostile suite's fast market.
MAX_ORDER_HISTORY = 5_000
MAX_FILL_HISTORY = 5_000
MAX_TRANSFER_HISTORY = 5_000
TO_TRADING = "to_trading"  # funding wallet -> trading wallet
TO_FUNDING = "to_funding"  # trading wallet -> funding wallet
# Average entry prices are quotients; 40 significant digits keeps them exact to far below any tick.
_CONTEXT = decimal.Context(prec=40)


@dataclass(slots=True)
class SimPosition:
    """Net position in base units (signed: long > 0) with its average entry price."""

    symbol: str
    size: Decimal = ZERO
    entry: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    opened_ms: int = 0
    updated_ms: int = 0

    def apply(self, signed_qty: Decimal, price: Decimal, now_ms: int) -> Decimal:
        """Apply a fill of `signed_qty` base units at `price`; return the PnL it realises."""
        realized = ZERO
        old = self.size
        if old == 0 or (old > 0) == (signed_qty > 0):
            total = abs(old) + abs(signed_qty)
            self.entry = _CONTEXT.divide(abs(old) * self.entry + abs(signed_qty) * price, total)
            if old == 0:
                self.opened_ms = now_ms
        else:
            closed = min(abs(signed_qty), abs(old))
            direction = 1 if old > 0 else -1
            realized = closed * (price - self.entry) * direction
            if abs(signed_qty) > abs(old):
                self.entry = price  # flipped: the remainder opens at the fill price
                self.opened_ms = now_ms
        self.size = old + signed_qty
        if self.size == 0:
            self.entry = ZERO
        self.realized_pnl += realized
        self.updated_ms = now_ms
        return realized

    def unrealized(self, mark: Decimal) -> Decimal:
        return self.size * (mark - self.entry) if self.size else ZERO


@dataclass(slots=True)
class SimOrder:
    """One order as the venue knows it; `qty`, `filled` in venue units (contracts on OKX)."""

    order_id: str
    client_id: str | None
    symbol: str
    side: str  # buy / sell
    type: str  # limit / market
    time_in_force: str  # GTC / IOC / FOK / POST_ONLY
    price: Decimal | None
    qty: Decimal
    reduce_only: bool
    created_ms: int
    updated_ms: int
    filled: Decimal = ZERO
    notional_filled: Decimal = ZERO  # sum(price * venue qty), for the average price
    fee: Decimal = ZERO
    status: str = "new"  # new / partially_filled / filled / canceled / rejected
    leverage: Decimal = Decimal(1)
    origin: str | None = None  # None: a client's order; "liquidation" / "adl": the venue's own close

    @property
    def remaining(self) -> Decimal:
        return self.qty - self.filled

    @property
    def average_price(self) -> Decimal:
        return _CONTEXT.divide(self.notional_filled, self.filled) if self.filled else ZERO

    @property
    def is_open(self) -> bool:
        return self.status in ("new", "partially_filled")


@dataclass(slots=True)
class SimFill:
    trade_id: str
    order_id: str
    client_id: str | None
    symbol: str
    side: str
    price: Decimal
    qty: Decimal  # venue units
    base_qty: Decimal
    fee: Decimal  # positive = paid
    fee_currency: str
    liquidity: str  # taker / maker
    realized_pnl: Decimal
    ts_ms: int


@dataclass(slots=True)
class FundingPayment:
    symbol: str
    rate: Decimal
    amount: Decimal  # signed: positive = received
    mark: Decimal
    size: Decimal
    ts_ms: int


@dataclass(slots=True)
class SimTransfer:
    """One internal transfer between the account's funding and trading wallets."""

    transfer_id: str  # the venue's id (OKX transId, Binance tranId, ...)
    currency: str
    amount: Decimal
    direction: str  # TO_TRADING / TO_FUNDING
    ts_ms: int
    client_id: str | None = None  # the caller's id when the venue takes one (Bybit transferId)


@dataclass(slots=True)
class SimAccount:
    """One venue account (every API key maps to it)."""

    currency: str
    balances: dict[str, Decimal] = field(default_factory=dict)  # wallet balance per currency
    positions: dict[str, SimPosition] = field(default_factory=dict)
    orders: dict[str, SimOrder] = field(default_factory=dict)  # by order id, insertion-ordered
    client_ids: dict[str, str] = field(default_factory=dict)  # client id -> order id
    fills: list[SimFill] = field(default_factory=list)
    funding: list[FundingPayment] = field(default_factory=list)
    leverage: dict[str, Decimal] = field(default_factory=dict)
    margin_modes: dict[str, str] = field(default_factory=dict)  # symbol -> cross / isolated (default cross)
    position_mode: str = "one_way"  # one_way / hedge
    fees_paid: Decimal = ZERO
    max_orders: int = MAX_ORDER_HISTORY
    max_fills: int = MAX_FILL_HISTORY
    # The venue's funding/spot wallet per currency ("funding" above is the funding-rate payments).
    funding_wallet: dict[str, Decimal] = field(default_factory=dict)
    transfers: list[SimTransfer] = field(default_factory=list)  # newest last, at most MAX_TRANSFER_HISTORY
    transfer_client_ids: dict[str, str] = field(default_factory=dict)  # client id -> transfer id (never dropped)
    transfer_seq: int = 0

    @property
    def wallet(self) -> Decimal:
        return self.balances.get(self.currency, ZERO)

    def credit(self, amount: Decimal) -> None:
        self.balances[self.currency] = self.wallet + amount

    def transfer_to_trading(self, currency: str, amount: Decimal, now_ms: int,
                            client_id: str | None = None) -> SimTransfer:
        """Move `amount` of `currency` from the funding wallet to the trading wallet, exactly.

        Raises SimReject transfer_bad_amount (amount <= 0) or transfer_insufficient_funding."""
        amount = _transfer_amount(amount)
        held = self.funding_wallet.get(currency, ZERO)
        if held < amount:
            raise SimReject("transfer_insufficient_funding",
                          f"funding wallet holds {held} {currency}, transfer asks {amount}")
        self.funding_wallet[currency] = held - amount
        self.balances[currency] = self.balances.get(currency, ZERO) + amount
        return self._record_transfer(currency, amount, TO_TRADING, now_ms, client_id)

    def transfer_to_funding(self, currency: str, amount: Decimal, free: Decimal, now_ms: int,
                            client_id: str | None = None) -> SimTransfer:
        """Move `amount` of `currency` from the trading wallet to the funding wallet, exactly; `free` is what
        the trading wallet may give (its balance less the margin in use, worked out by the engine at the
        marks). Never takes more than `free` nor more than the balance: the trading wallet never goes negative.

        Raises SimReject transfer_bad_amount (amount <= 0) or transfer_insufficient_trading."""
        amount = _transfer_amount(amount)
        balance = self.balances.get(currency, ZERO)
        if amount > min(free, balance):
            raise SimReject("transfer_insufficient_trading",
                          f"trading wallet can give {max(ZERO, min(free, balance))} {currency}, transfer asks "
                          f"{amount}")
        self.balances[currency] = balance - amount
        self.funding_wallet[currency] = self.funding_wallet.get(currency, ZERO) + amount
        return self._record_transfer(currency, amount, TO_FUNDING, now_ms, client_id)

    def _record_transfer(self, currency: str, amount: Decimal, direction: str, now_ms: int,
                         client_id: str | None) -> SimTransfer:
        self.transfer_seq += 1
        transfer = SimTransfer(str(self.transfer_seq), currency, amount, direction, now_ms, client_id)
        self.transfers.append(transfer)
        if client_id is not None:
            self.transfer_client_ids[client_id] = transfer.transfer_id
        excess = len(self.transfers) - MAX_TRANSFER_HISTORY
        if excess > 0:
            del self.transfers[:excess]
        return transfer

    def position(self, symbol: str) -> SimPosition:
        pos = self.positions.get(symbol)
        if pos is None:
            pos = self.positions[symbol] = SimPosition(symbol)
        return pos

    def add_order(self, order: SimOrder) -> None:
        """A new order into the history; the oldest closed orders beyond max_orders are forgotten."""
        self.orders[order.order_id] = order
        if order.client_id is not None:
            self.client_ids[order.client_id] = order.order_id
        excess = len(self.orders) - self.max_orders
        if excess <= 0:
            return
        victims = []
        for order_id, old in self.orders.items():  # oldest first (insertion order)
            if not old.is_open:
                victims.append(order_id)
                if len(victims) == excess:
                    break
        for order_id in victims:
            old = self.orders.pop(order_id)
            if old.client_id is not None and self.client_ids.get(old.client_id) == order_id:
                del self.client_ids[old.client_id]

    def add_fill(self, fill: SimFill) -> None:
        """A new fill into the history; the oldest beyond max_fills are forgotten."""
        self.fills.append(fill)
        excess = len(self.fills) - self.max_fills
        if excess > 0:
            del self.fills[:excess]

    def open_orders(self, symbol: str | None = None) -> list[SimOrder]:
        return [o for o in self.orders.values() if o.is_open and (symbol is None or o.symbol == symbol)]

    def order_by(self, order_id: str | None = None, client_id: str | None = None) -> SimOrder | None:
        if order_id is not None:
            return self.orders.get(str(order_id))
        if client_id is not None:
            found = self.client_ids.get(client_id)
            return self.orders.get(found) if found is not None else None
        return None

    def margin_summary(self, marks: dict[str, Decimal], contract_sizes: dict[str, Decimal]) -> dict[str, Decimal]:
        """Equity, unrealised PnL, position margin, order margin and available balance at the given marks."""
        upl = ZERO
        position_margin = ZERO
        for symbol, pos in self.positions.items():
            if not pos.size:
                continue
            mark = marks[symbol]
            upl += pos.unrealized(mark)
            position_margin += _CONTEXT.divide(abs(pos.size) * mark, self.leverage_of(symbol))
        order_margin = ZERO
        for order in self.open_orders():
            if order.price is not None:
                base = order.remaining * contract_sizes[order.symbol]
                order_margin += _CONTEXT.divide(base * order.price, order.leverage)
        equity = self.wallet + upl
        return {
            "wallet": self.wallet,
            "equity": equity,
            "unrealized_pnl": upl,
            "position_margin": position_margin,
            "order_margin": order_margin,
            "used": position_margin + order_margin,
            "available": equity - position_margin - order_margin,
        }

    def leverage_of(self, symbol: str) -> Decimal:
        return self.leverage.get(symbol, Decimal(1))

    def margin_mode_of(self, symbol: str) -> str:
        return self.margin_modes.get(symbol, "cross")


def _transfer_amount(amount: Decimal) -> Decimal:
    amount = Decimal(amount)
    if not amount.is_finite() or amount <= 0:
        raise SimReject("transfer_bad_amount", f"transfer amount {amount} must be above 0")
    return amount


def dec_str(value: Decimal | None) -> str:
    """Plain decimal string without exponent (venues never send '1E+1')."""
    if value is None:
        return ""
    if value == value.to_integral_value():
        return str(value.quantize(Decimal(1)))
    text = format(value.normalize(), "f")
    return text


def snapshot_account(account: SimAccount) -> dict[str, Any]:
    """JSON-ready view (decimal strings) of balances, positions, open orders and fills."""
    return {
        "currency": account.currency,
        "balances": {k: dec_str(v) for k, v in account.balances.items()},
        "positions": {
            s: {"size": dec_str(p.size), "entry": dec_str(p.entry), "realized_pnl": dec_str(p.realized_pnl)}
            for s, p in account.positions.items() if p.size
        },
        "leverage": {k: dec_str(v) for k, v in account.leverage.items()},
        "open_orders": [
            {"order_id": o.order_id, "client_id": o.client_id, "symbol": o.symbol, "side": o.side,
             "price": dec_str(o.price), "qty": dec_str(o.qty), "filled": dec_str(o.filled),
             "reduce_only": o.reduce_only, "status": o.status}
            for o in account.open_orders()
        ],
        "fills": [
            {"trade_id": f.trade_id, "order_id": f.order_id, "client_id": f.client_id, "symbol": f.symbol,
             "side": f.side, "price": dec_str(f.price), "qty": dec_str(f.qty), "base_qty": dec_str(f.base_qty),
             "fee": dec_str(f.fee), "liquidity": f.liquidity, "realized_pnl": dec_str(f.realized_pnl),
             "ts_ms": f.ts_ms}
            for f in account.fills
        ],
        "funding": [
            {"symbol": p.symbol, "rate": dec_str(p.rate), "amount": dec_str(p.amount), "ts_ms": p.ts_ms}
            for p in account.funding
        ],
        "fees_paid": dec_str(account.fees_paid),
        "funding_wallet": {k: dec_str(v) for k, v in account.funding_wallet.items()},
        "transfers": [
            {"transfer_id": t.transfer_id, "currency": t.currency, "amount": dec_str(t.amount),
             "direction": t.direction, "ts_ms": t.ts_ms, "client_id": t.client_id}
            for t in account.transfers
        ],
    }
