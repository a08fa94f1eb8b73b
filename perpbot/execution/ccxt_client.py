"""The live/simulator trading client: perpbot's ExchangeClient port over ccxt's async classes.

Live, testnet and the simulator differ only by `rest_url`: every API URL of the ccxt class is
re-pointed at it. Venue specifics (ccxt class, options, params, client-id format, where the venue's
answers keep fills and fees) come from the venue's trading spec (`VenueTrading`). Filled size,
average price and fees are read from the venue's own decimal strings; ccxt's parsed floats stand in
only where the venue's answer lacks them. ccxt exceptions become perpbot.core.errors; placement is
never retried, reads and cancels are retried a few times.

ccxt's own throttler is off (`enableRateLimit` False: it slept before requests, ~0.2 s in front of every
Binance order). Every HTTP request is counted instead in the venue's rate budget
(perpbot.execution.rate_budget, set by the composition root as `rate_budget`): a new order is charged
and leaves at once (the risk gate already refused it if it would go over); any other request may wait
up to `max_read_wait_s` for its window or the venue's Retry-After, and fails as RateLimited beyond that.
Every response's status and headers go back to the budget (usage headers, 429 / 418 with Retry-After).
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Any, Literal, Protocol, TypeVar
from urllib.parse import urlsplit

import ccxt.async_support as ccxt_async  # type: ignore[import-untyped]

from perpbot.core import errors
from perpbot.core.approved import ApprovedOrder
from perpbot.core.instruments import Instrument
from perpbot.core.numbers import decimal_or_none, plain
from perpbot.core.orders import FundingPayment, OrderRequest, OrderResult, VenueBalance, VenuePosition
from perpbot.core.transfers import TransferCall
from perpbot.execution.ccxt_errors import point_urls, translate
from perpbot.execution.leg_margin import leg_margin_from_row
from perpbot.execution.rate_budget import ORDER, RateBudget
from perpbot.settings import VenueSettings

log = logging.getLogger(__name__)

T = TypeVar("T")
READ_ATTEMPTS = 3
ZERO = Decimal(0)
OrderStatus = Literal["filled", "partially_filled", "canceled", "rejected", "open", "expired"]
_FINAL: dict[object, OrderStatus] = {"canceled": "canceled", "expired": "expired", "rejected": "rejected"}


class FillReading(Protocol):
    """An order's (a trade's) filled size (its size), average (its price), fee and order size:
    the venue's strings, ccxt's numbers where the venue's answer lacks them, None where both do."""

    @property
    def filled(self) -> Decimal | None: ...
    @property
    def average(self) -> Decimal | None: ...
    @property
    def fee(self) -> Decimal | None: ...
    @property
    def amount(self) -> Decimal | None: ...


class VenueTrading(Protocol):
    """A venue's trading specifics (perpbot.venues._trading.TradingSpec satisfies it)."""

    @property
    def ccxt_class(self) -> str: ...
    @property
    def insufficient_funds_markers(self) -> tuple[str, ...]: ...
    @property
    def funding_amount_sign(self) -> int: ...
    @property
    def fetch_order_raw(self) -> Callable[[Any, str, str], Awaitable[dict[str, Any] | None]] | None: ...
    def ccxt_config(self, settings: VenueSettings) -> dict[str, Any]: ...
    def prepare(self, exchange: Any) -> None: ...
    def order_params(self, request: OrderRequest) -> dict[str, Any]: ...
    def fetch_params(self, client_order_id: str) -> dict[str, Any]: ...
    def cancel_params(self, client_order_id: str) -> dict[str, Any]: ...
    def order_fill(self, order: Mapping[str, Any], lot: Decimal | None) -> FillReading: ...
    def trade_fill(self, trade: Mapping[str, Any]) -> FillReading: ...


def _status(status: object, filled: Decimal, amount: Decimal | None) -> OrderStatus:
    if status == "closed":
        return "filled" if amount is None or filled >= amount else "partially_filled"
    if status in ("canceled", "expired") and filled > 0:
        return "partially_filled"
    return _FINAL.get(status, "open")


def _no_stream() -> bool:
    return False


class CcxtClient:
    """ExchangeClient over one ccxt async exchange instance."""

    def __init__(
        self, venue: str, venue_settings: VenueSettings, rest_url: str,
        instruments: dict[str, Instrument] | None = None, timeout_s: float = 10.0,
        spec: VenueTrading | None = None,
    ) -> None:
        self.venue = venue
        # Execution and the venue packages are sibling layers that do not import each other: the
        # composition root should pass the registry's spec in; until it does, it is looked up by name.
        chosen = spec or importlib.import_module("perpbot.venues.registry").trading_spec(venue)
        configured = getattr(chosen, "configured", None)  # the configured margin mode in orders (OKX tdMode)
        self.spec: VenueTrading = configured(venue_settings) if configured is not None else chosen
        config = self.spec.ccxt_config(venue_settings)
        config.update({"timeout": int(timeout_s * 1000), "enableRateLimit": False})
        self._secrets = tuple(
            s.get_secret_value() for s in (venue_settings.api_key, venue_settings.api_secret,
                                          venue_settings.passphrase, venue_settings.private_key) if s
        )
        self.exchange: Any = getattr(ccxt_async, self.spec.ccxt_class)(config)
        # ccxt deep-merges constructor options into its defaults (broker-id tables survive a {});
        # assigning them again replaces the defaults outright.
        for key, value in config["options"].items():
            self.exchange.options[key] = value
        self.spec.prepare(self.exchange)
        self.exchange.urls["api"] = point_urls(self.exchange.urls["api"], rest_url)
        self.rest_url = rest_url
        self.instruments: dict[str, Instrument] = dict(instruments or {})
        # True while this venue's private stream is live (set by the composition root): an order's
        # answer is then returned as acknowledged, with no follow-up fill query.
        self.stream_confirms: Callable[[], bool] = _no_stream
        # The venue's request budget (set by the composition root; None: nothing counted).
        self.rate_budget: RateBudget | None = None
        self.max_read_wait_s = 2.0
        self._path_prefix = urlsplit(rest_url).path.rstrip("/")
        self._ccxt_fetch = self.exchange.fetch
        self._ccxt_on_response = self.exchange.on_rest_response
        self.exchange.fetch = self._budgeted_fetch
        self.exchange.on_rest_response = self._observe_response

    def __repr__(self) -> str:  # never shows credentials
        return f"CcxtClient({self.venue} @ {self.rest_url})"

    # -- the rate budget, around every HTTP request ccxt makes ----------------------------------
    def _endpoint(self, budget: RateBudget, url: str, method: str, body: Any) -> str | None:
        path = urlsplit(url).path
        if self._path_prefix and path.startswith(self._path_prefix):
            path = path[len(self._path_prefix):]
        return budget.endpoint_of(self.venue, method, path, body)

    async def _budgeted_fetch(self, url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        """ccxt's fetch, counted: a new order leaves at once; anything else waits for room (bounded)."""
        budget = self.rate_budget
        if budget is not None:
            endpoint = self._endpoint(budget, url, method, body)
            if endpoint is not None:
                if endpoint != ORDER:
                    await self._wait_for_room(budget, endpoint)
                budget.charge(self.venue, endpoint)
        return await self._ccxt_fetch(url, method, headers, body)

    async def _wait_for_room(self, budget: RateBudget, endpoint: str) -> None:
        waited = 0.0
        while True:
            wait = budget.read_wait(self.venue, endpoint)
            if wait <= 0:
                return
            if waited + wait > self.max_read_wait_s:
                raise ccxt_async.RateLimitExceeded(
                    f"{self.venue} {endpoint}: deferred by the rate budget ({wait:.2f}s to wait, "
                    f"{self.max_read_wait_s:g}s allowed)")
            await asyncio.sleep(wait)
            waited += wait

    def _observe_response(self, code: Any, reason: Any, url: str, method: str, response_headers: Any,
                          response_body: Any, request_headers: Any, request_body: Any) -> Any:
        budget = self.rate_budget
        if budget is not None and isinstance(code, int):
            endpoint = self._endpoint(budget, url, method, request_body)
            budget.observe(self.venue, code, response_headers or {}, endpoint)
        return self._ccxt_on_response(code, reason, url, method, response_headers, response_body,
                                      request_headers, request_body)

    # -- helpers ---------------------------------------------------------------------------
    async def _markets(self) -> None:
        if not self.exchange.markets:
            await self._read(self.exchange.load_markets)

    def _ccxt_symbol(self, symbol: str) -> str:
        instrument = self.instruments.get(symbol)
        if instrument is not None:
            return instrument.ccxt_symbol
        market = self.exchange.safe_market(symbol, None, None, "swap")
        return str(market["symbol"])

    async def _read(self, call: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Reads and cancels: retried on temporary failures and rate limits, with capped backoff."""
        delay = 0.2
        for attempt in range(1, READ_ATTEMPTS + 1):
            try:
                return await call(*args)
            except Exception as exc:  # translated below; nothing is swallowed
                error = translate(self.venue, exc, placing=False, secrets=self._secrets)
                if isinstance(error, (errors.TemporaryError, errors.RateLimited)) and attempt < READ_ATTEMPTS:
                    log.warning("%s read failed (attempt %d/%d): %s", self.venue, attempt, READ_ATTEMPTS, error.message)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                raise error from None
        raise AssertionError("unreachable")

    def _numbers(self, order: Mapping[str, Any], symbol: str) -> FillReading:
        instrument = self.instruments.get(symbol)
        return self.spec.order_fill(order, instrument.lot_size if instrument is not None else None)

    def _to_result(self, order: Mapping[str, Any], request_symbol: str, client_order_id: str) -> OrderResult:
        numbers = self._numbers(order, request_symbol)
        filled = numbers.filled or ZERO
        info = order.get("info")
        return OrderResult(
            venue=self.venue, symbol=request_symbol, client_order_id=client_order_id,
            venue_order_id=None if order.get("id") is None else str(order.get("id")),
            status=_status(order.get("status"), filled, numbers.amount),
            side=order.get("side") or "buy", qty=numbers.amount or ZERO,
            filled_qty=filled, avg_price=numbers.average, fee=numbers.fee or ZERO,
            reason=(info.get("sMsg") or None) if isinstance(info, dict) else None,
        )

    def _market_of(self, native: str) -> dict[str, Any]:
        """The ccxt market of a native symbol: by venue id, else by the venue's own name for it
        (Hyperliquid market ids are asset indexes; the coin name is in info.name)."""
        found = self.exchange.markets_by_id.get(native)
        if found:
            market: dict[str, Any] = found[0] if isinstance(found, list) else found
            return market
        for market in self.exchange.markets.values():
            if market.get("swap") and (market.get("info") or {}).get("name") == native:
                return market
        raise errors.OrderRejected(self.venue, f"unknown instrument {native}")

    def _native_of(self, ccxt_symbol: str) -> str:
        for native, instrument in self.instruments.items():
            if instrument.ccxt_symbol == ccxt_symbol:
                return native
        market = self.exchange.markets.get(ccxt_symbol) or {}
        return str((market.get("info") or {}).get("name") or market.get("id") or ccxt_symbol)

    # -- the port --------------------------------------------------------------------------
    async def load_instruments(self, symbols: list[str]) -> dict[str, Instrument]:
        await self._markets()
        found: dict[str, Instrument] = {}
        for symbol in symbols:
            market = self._market_of(symbol)
            limits = market.get("limits") or {}
            found[symbol] = Instrument(
                venue=self.venue, symbol=symbol, base=market["base"], quote=market["quote"],
                ccxt_symbol=market["symbol"],
                tick_size=decimal_or_none(market["precision"]["price"]) or ZERO,
                lot_size=decimal_or_none(market["precision"]["amount"]) or ZERO,
                min_qty=decimal_or_none((limits.get("amount") or {}).get("min")) or ZERO,
                min_notional=decimal_or_none((limits.get("cost") or {}).get("min")) or ZERO,
                contract_size=decimal_or_none(market.get("contractSize")) or Decimal(1),
                taker_fee=decimal_or_none(market.get("taker")) or Decimal("0.0005"),
                maker_fee=decimal_or_none(market.get("maker")) or Decimal("0.0002"),
            )
        self.instruments.update(found)
        return found

    async def transfer(self, call: TransferCall) -> Any:
        """One internal transfer request (perpbot.core.transfers), sent once, never retried: the venue's answer,
        or our error (UnknownOutcome when it may have reached the venue, InsufficientFunds, OrderRejected)."""
        await self._markets()
        try:
            return await getattr(self.exchange, call.method)(call.params)
        except Exception as exc:
            raise translate(self.venue, exc, placing=True, secrets=self._secrets,
                            funds_markers=self.spec.insufficient_funds_markers) from None

    async def place_order(self, order: ApprovedOrder) -> OrderResult:
        """One IOC/GTC limit order the risk gate approved; never retried. UnknownOutcome when the answer is lost."""
        if not isinstance(order, ApprovedOrder):  # the type checker's rule, kept at run time too
            raise TypeError(f"place_order takes an ApprovedOrder minted by the risk gate, not {type(order).__name__}")
        request = order.request
        await self._markets()
        symbol = self._ccxt_symbol(request.symbol)
        params = self.spec.order_params(request)
        try:
            answer = await self.exchange.create_order(
                symbol, "limit", request.side, plain(request.qty), plain(request.price), params
            )
        except Exception as exc:
            error = translate(self.venue, exc, placing=True, secrets=self._secrets,
                              funds_markers=self.spec.insufficient_funds_markers)
            if isinstance(error, errors.OrderRejected):
                log.warning(
                    "Order rejected: %s %s %s %s @ %s id=%s reason=%s", self.venue, request.symbol,
                    request.side, request.qty, request.price, request.client_order_id, error.message,
                )
            raise error from None
        result = self._to_result(answer, request.symbol, request.client_order_id)
        if self.stream_confirms() and result.status != "rejected":
            # The venue's private stream is live: it pushes the order's fills and final state, and
            # the order lifecycle waits for them there (REST only if they do not come in time).
            return dataclasses.replace(result, details_complete=False)
        if answer.get("status") is None or self._numbers(answer, request.symbol).filled is None \
                or result.status == "open":
            # Some venues (OKX) acknowledge with ids only: the fill is learnt by query.
            try:
                queried = await self.fetch_order(request.symbol, request.client_order_id)
            except errors.VenueErrorBase as exc:
                raise errors.UnknownOutcome(self.venue, f"placed, state unknown: {exc.message}") from None
            if queried is None:
                raise errors.UnknownOutcome(self.venue, "acknowledged but not found by client id")
            result = queried  # fetch_order already completed its fill details
        else:
            try:
                result = await self._fill_details(answer, result, symbol)
            except errors.VenueErrorBase as exc:
                # It filled; how exactly is unknown. The engine resolves it by query, never by re-sending.
                raise errors.UnknownOutcome(self.venue, f"filled, details unknown: {exc.message}") from None
        if result.status == "rejected":
            log.warning("Order rejected: %s %s id=%s reason=%s", self.venue, request.symbol,
                        request.client_order_id, result.reason)
        return result

    async def fetch_order(self, symbol: str, client_order_id: str) -> OrderResult | None:
        await self._markets()
        ccxt_symbol = self._ccxt_symbol(symbol)
        custom = self.spec.fetch_order_raw
        try:
            if custom is not None:
                order = await self._read(custom, self.exchange, ccxt_symbol, client_order_id)
            else:
                order = await self._read(
                    self.exchange.fetch_order, None, ccxt_symbol, self.spec.fetch_params(client_order_id)
                )
        except errors.OrderNotFound:
            return None
        if order is None:
            return None
        return await self._fill_details(order, self._to_result(order, symbol, client_order_id), ccxt_symbol)

    async def _fill_details(self, order: Mapping[str, Any], result: OrderResult, ccxt_symbol: str) -> OrderResult:
        """Average price and fee from the venue's own trade list when the order answer lacks them
        (Hyperliquid's order status has neither, Binance's order has no commission). Booking the limit
        price or a zero fee instead would make positions and PnL differ from the venue's."""
        fee_known = self._numbers(order, result.symbol).fee is not None
        if result.filled_qty <= 0 or (result.avg_price is not None and fee_known) or not result.venue_order_id:
            return result
        trades = await self._read(self.exchange.fetch_my_trades, ccxt_symbol)
        return self._from_trades(result, [t for t in trades if str(t.get("order")) == result.venue_order_id])

    def _from_trades(self, result: OrderResult, trades: list[Mapping[str, Any]]) -> OrderResult:
        """Average price and total fee of an order from its own trades (the venue's strings, ccxt's
        numbers where a trade lacks them); the result as it was unless they add up to its filled size."""
        fills = [self.spec.trade_fill(trade) for trade in trades]
        amount = sum((fill.filled or ZERO for fill in fills), ZERO)
        if not fills or amount != result.filled_qty:
            log.warning("%s order %s: trades (%s) do not add up to the filled %s; fill details as reported",
                        self.venue, result.client_order_id, amount, result.filled_qty)
            return result
        notional = sum(((fill.filled or ZERO) * (fill.average or ZERO) for fill in fills), ZERO)
        fee = sum((fill.fee or ZERO for fill in fills), ZERO)
        return dataclasses.replace(result, avg_price=notional / amount, fee=fee)

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderResult | None:
        await self._markets()
        ccxt_symbol = self._ccxt_symbol(symbol)
        try:
            await self._read(self.exchange.cancel_order, None, ccxt_symbol, self.spec.cancel_params(client_order_id))
        except errors.OrderNotFound:
            pass  # already final (an IOC) or never placed: the query below tells which
        return await self.fetch_order(symbol, client_order_id)

    async def fetch_open_orders(self) -> list[OrderResult]:
        await self._markets()
        results = []
        for symbol, instrument in self.instruments.items():
            orders = await self._read(self.exchange.fetch_open_orders, instrument.ccxt_symbol)
            for order in orders:
                cid = order.get("clientOrderId") or str(order.get("id"))
                results.append(self._to_result(order, symbol, cid))
        return results

    async def fetch_positions(self) -> list[VenuePosition]:
        await self._markets()
        rows = await self._read(self.exchange.fetch_positions)
        positions = []
        for row in rows:
            market = self.exchange.markets.get(row.get("symbol")) or {}
            native = self._native_of(row.get("symbol"))
            contracts = decimal_or_none(row.get("contracts")) or ZERO
            contract_size = decimal_or_none(row.get("contractSize") or market.get("contractSize")) or Decimal(1)
            size = contracts * contract_size
            if row.get("side") == "short":
                size = -abs(size)
            if size == 0:
                continue
            positions.append(VenuePosition(
                venue=self.venue, symbol=native, size=size,
                entry_price=decimal_or_none(row.get("entryPrice")) or ZERO,
                mark_price=decimal_or_none(row.get("markPrice")),
                unrealized_pnl=decimal_or_none(row.get("unrealizedPnl")) or ZERO,
                leverage=decimal_or_none(row.get("leverage")),
                margin=leg_margin_from_row(self.venue, native, size, row, int(row.get("timestamp") or 0)),
            ))
        return positions

    async def fetch_balance(self) -> VenueBalance:
        await self._markets()
        balance = await self._read(self.exchange.fetch_balance)
        quote = "USDC" if "USDC" in balance and "USDT" not in balance else "USDT"
        entry = balance.get(quote) or {}
        total = decimal_or_none(entry.get("total")) or ZERO
        free = decimal_or_none(entry.get("free")) or ZERO
        used = decimal_or_none(entry.get("used"))
        return VenueBalance(self.venue, equity=total, available=free,
                            used_margin=used if used is not None else total - free, extra={"currency": quote})

    async def fetch_funding_payments(self, since_ms: int) -> list[FundingPayment]:
        """Funding booked on this account since `since_ms`, per traded symbol (ccxt fetch_funding_history).

        Amounts are + received / - paid; a venue whose wire reports funding as a fee (paid
        positive, Bybit's execFee) declares funding_amount_sign = -1 in its trading spec. The
        payment id joins the venue's id (when it has one) with symbol and time, so it is unique
        per venue even where the venue repeats an id (Hyperliquid's zero hash)."""
        await self._markets()
        sign = Decimal(self.spec.funding_amount_sign)
        payments: dict[str, FundingPayment] = {}
        for symbol, instrument in self.instruments.items():
            rows = await self._read(self.exchange.fetch_funding_history, instrument.ccxt_symbol, int(since_ms))
            for row in rows:
                if row.get("symbol") not in (None, instrument.ccxt_symbol):
                    continue  # venues that ignore the symbol filter list every market
                info = row.get("info") if isinstance(row.get("info"), dict) else {}
                if info.get("execType", "Funding") != "Funding":
                    continue  # an execution list that also holds trades (Bybit) is not all funding
                amount = decimal_or_none(row.get("amount"))
                stamp = row.get("timestamp")
                if amount is None or stamp is None or int(stamp) < since_ms:
                    continue
                payment_id = f"{row.get('id') or ''}:{symbol}:{int(stamp)}"
                payments[payment_id] = FundingPayment(self.venue, symbol, payment_id, amount * sign, int(stamp))
        return sorted(payments.values(), key=lambda p: (p.ts_ms, p.payment_id))

    async def close(self) -> None:
        await self.exchange.close()
