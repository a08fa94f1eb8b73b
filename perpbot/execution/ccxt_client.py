"""The live/simulator trading client: perpbot's ExchangeClient port over ccxt's async classes.

Live, testnet and the simulator differ only by `rest_url`: every API URL of the ccxt class is
re-pointed at it. Venue specifics (ccxt class, options, params, client-id format) come from
perpbot.venues.<venue>.orders. ccxt exceptions become perpbot.core.errors; placement is never
retried, reads and cancels are retried a few times.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import logging
import re
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Awaitable, Callable, TypeVar
from urllib.parse import urlsplit

import ccxt.async_support as ccxt_async
from ccxt.base import errors as cx

from perpbot.core import errors
from perpbot.core.instruments import Instrument
from perpbot.core.orders import FundingPayment, OrderRequest, OrderResult, VenueBalance, VenuePosition
from perpbot.settings import VenueSettings

log = logging.getLogger(__name__)

T = TypeVar("T")
READ_ATTEMPTS = 3
_QUERY = re.compile(r"\?\S*")


def point_urls(api_urls: Any, rest_url: str) -> Any:
    """Every URL in ccxt's `urls['api']` (nested dicts allowed) re-based onto rest_url, path kept."""
    if isinstance(api_urls, dict):
        return {key: point_urls(value, rest_url) for key, value in api_urls.items()}
    if isinstance(api_urls, str):
        path = urlsplit(api_urls.replace("{hostname}", "placeholder.invalid")).path
        return rest_url.rstrip("/") + path
    return api_urls


def to_decimal(value: Any) -> Decimal | None:
    """ccxt numbers (floats parsed from the venue's strings) back to exact Decimals via repr."""
    if value is None or value == "":
        return None
    return Decimal(str(value))


def translate(
    venue: str, exc: Exception, placing: bool, secrets: tuple[str, ...] = (), funds_markers: tuple[str, ...] = ()
) -> errors.VenueErrorBase:
    """ccxt exception -> perpbot error. On placement anything that may have reached the venue
    (timeouts, lost responses, 5xx) is UnknownOutcome: it must be resolved by a query."""
    message = _QUERY.sub("?...", str(exc))  # signed query strings never reach a log line
    for secret in secrets:
        if secret:
            message = message.replace(secret, "**********")
    message = message[:500]
    if isinstance(exc, cx.InsufficientFunds) or (
        isinstance(exc, cx.BaseError) and not isinstance(exc, cx.NetworkError)
        and any(marker in message for marker in funds_markers)
    ):
        return errors.InsufficientFunds(venue, message)
    if isinstance(exc, cx.OrderNotFound):
        return errors.OrderNotFound(venue, message)
    if isinstance(exc, (cx.DDoSProtection, cx.RateLimitExceeded)):  # siblings in ccxt 4.5
        return errors.RateLimited(venue, message)
    if isinstance(exc, cx.OnMaintenance):
        return errors.TemporaryError(venue, message)
    if isinstance(exc, (cx.NetworkError, asyncio.TimeoutError, OSError)):
        # RequestTimeout, ExchangeNotAvailable (5xx), connection reset after sending, ...
        return errors.UnknownOutcome(venue, message) if placing else errors.TemporaryError(venue, message)
    if isinstance(exc, cx.BaseError):
        return errors.OrderRejected(venue, message) if placing else errors.TemporaryError(venue, message)
    return errors.UnknownOutcome(venue, message) if placing else errors.TemporaryError(venue, message)


def _status(order: dict[str, Any], filled: Decimal) -> str:
    status = order.get("status")
    if status == "closed":
        amount = to_decimal(order.get("amount"))
        return "filled" if amount is None or filled >= amount else "partially_filled"
    if status in ("canceled", "expired"):
        return "partially_filled" if filled > 0 else status
    if status == "rejected":
        return "rejected"
    return "open"


class CcxtClient:
    """ExchangeClient over one ccxt async exchange instance."""

    def __init__(
        self, venue: str, venue_settings: VenueSettings, rest_url: str,
        instruments: dict[str, Instrument] | None = None, timeout_s: float = 10.0,
    ) -> None:
        self.venue = venue
        self.spec = importlib.import_module(f"perpbot.venues.{venue}.orders")
        config = self.spec.ccxt_config(venue_settings)
        config.update({"timeout": int(timeout_s * 1000), "enableRateLimit": True})
        self._secrets = tuple(
            s.get_secret_value() for s in (venue_settings.api_key, venue_settings.api_secret,
                                          venue_settings.passphrase, venue_settings.private_key) if s
        )
        self.exchange = getattr(ccxt_async, self.spec.CCXT_CLASS)(config)
        # ccxt deep-merges constructor options into its defaults (broker-id tables survive a {});
        # assigning them again replaces the defaults outright.
        for key, value in config["options"].items():
            self.exchange.options[key] = value
        self.exchange.urls["api"] = point_urls(self.exchange.urls["api"], rest_url)
        self.rest_url = rest_url
        self.instruments: dict[str, Instrument] = dict(instruments or {})

    def __repr__(self) -> str:  # never shows credentials
        return f"CcxtClient({self.venue} @ {self.rest_url})"

    # -- helpers ---------------------------------------------------------------------------
    async def _markets(self) -> None:
        if not self.exchange.markets:
            await self._read(self.exchange.load_markets)

    def _ccxt_symbol(self, symbol: str) -> str:
        instrument = self.instruments.get(symbol)
        if instrument is not None:
            return instrument.ccxt_symbol
        market = self.exchange.safe_market(symbol, None, None, "swap")
        return market["symbol"]

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

    def _to_result(self, order: dict[str, Any], request_symbol: str, client_order_id: str) -> OrderResult:
        instrument = self.instruments.get(request_symbol)
        filled = to_decimal(order.get("filled")) or Decimal(0)
        amount = to_decimal(order.get("amount")) or Decimal(0)
        if instrument is not None:
            # ccxt parsed the venue's decimal strings into floats; snap back onto the lot grid.
            filled = (filled / instrument.lot_size).quantize(Decimal(1), ROUND_HALF_EVEN) * instrument.lot_size
            amount = (amount / instrument.lot_size).quantize(Decimal(1), ROUND_HALF_EVEN) * instrument.lot_size
        fee = Decimal(0)
        for item in order.get("fees") or ([order["fee"]] if order.get("fee") else []):
            cost = to_decimal((item or {}).get("cost"))
            if cost is not None:
                fee += cost
        return OrderResult(
            venue=self.venue, symbol=request_symbol, client_order_id=client_order_id,
            venue_order_id=None if order.get("id") is None else str(order.get("id")),
            status=_status(order, filled), side=order.get("side") or "buy", qty=amount,
            filled_qty=filled, avg_price=to_decimal(order.get("average")), fee=fee,
            reason=(order.get("info") or {}).get("sMsg") or None if isinstance(order.get("info"), dict) else None,
        )

    def _market_of(self, native: str) -> dict[str, Any]:
        """The ccxt market of a native symbol: by venue id, else by the venue's own name for it
        (Hyperliquid market ids are asset indexes; the coin name is in info.name)."""
        found = self.exchange.markets_by_id.get(native)
        if found:
            return found[0] if isinstance(found, list) else found
        for market in self.exchange.markets.values():
            if market.get("swap") and (market.get("info") or {}).get("name") == native:
                return market
        raise errors.OrderRejected(self.venue, f"unknown instrument {native}")

    def _native_of(self, ccxt_symbol: str) -> str:
        for native, instrument in self.instruments.items():
            if instrument.ccxt_symbol == ccxt_symbol:
                return native
        market = self.exchange.markets.get(ccxt_symbol) or {}
        return (market.get("info") or {}).get("name") or market.get("id") or ccxt_symbol

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
                tick_size=to_decimal(market["precision"]["price"]) or Decimal(0),
                lot_size=to_decimal(market["precision"]["amount"]) or Decimal(0),
                min_qty=to_decimal((limits.get("amount") or {}).get("min")) or Decimal(0),
                min_notional=to_decimal((limits.get("cost") or {}).get("min")) or Decimal(0),
                contract_size=to_decimal(market.get("contractSize")) or Decimal(1),
                taker_fee=to_decimal(market.get("taker")) or Decimal("0.0005"),
                maker_fee=to_decimal(market.get("maker")) or Decimal("0.0002"),
            )
        self.instruments.update(found)
        return found

    async def place_order(self, request: OrderRequest) -> OrderResult:
        """One IOC/GTC limit order; never retried. UnknownOutcome when the answer is lost."""
        await self._markets()
        symbol = self._ccxt_symbol(request.symbol)
        params = self.spec.order_params(request)
        try:
            order = await self.exchange.create_order(
                symbol, "limit", request.side, str(request.qty), str(request.price), params
            )
        except Exception as exc:
            error = translate(self.venue, exc, placing=True, secrets=self._secrets,
                              funds_markers=self.spec.INSUFFICIENT_FUNDS_MARKERS)
            if isinstance(error, errors.OrderRejected):
                log.warning(
                    "Order rejected: %s %s %s %s @ %s id=%s reason=%s", self.venue, request.symbol,
                    request.side, request.qty, request.price, request.client_order_id, error.message,
                )
            raise error from None
        result = self._to_result(order, request.symbol, request.client_order_id)
        if order.get("status") is None or order.get("filled") is None or result.status == "open":
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
                result = await self._fill_details(order, result, symbol)
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
        custom = getattr(self.spec, "fetch_order_raw", None)
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

    async def _fill_details(self, order: dict[str, Any], result: OrderResult, ccxt_symbol: str) -> OrderResult:
        """Average price and fee from the venue's own trade list when the order answer lacks them
        (Hyperliquid's order status has neither, Binance's order has no commission). Booking the limit
        price or a zero fee instead would make positions and PnL differ from the venue's."""
        fee_known = any((item or {}).get("cost") is not None
                        for item in (order.get("fees") or []) + ([order["fee"]] if order.get("fee") else []))
        if result.filled_qty <= 0 or (result.avg_price is not None and fee_known) or not result.venue_order_id:
            return result
        trades = await self._read(self.exchange.fetch_my_trades, ccxt_symbol)
        mine = [t for t in trades if str(t.get("order")) == result.venue_order_id]
        instrument = self.instruments.get(result.symbol)
        contract = instrument.contract_size if instrument is not None else Decimal(1)
        amount = sum((to_decimal(t.get("amount")) or Decimal(0) for t in mine), Decimal(0))
        if not mine or amount * contract != result.filled_qty * contract:
            log.warning("%s order %s: trades (%s) do not add up to the filled %s; fill details as reported",
                        self.venue, result.client_order_id, amount, result.filled_qty)
            return result
        notional = sum(((to_decimal(t.get("price")) or Decimal(0)) * (to_decimal(t.get("amount")) or Decimal(0))
                        for t in mine), Decimal(0))
        fee = sum((to_decimal((t.get("fee") or {}).get("cost")) or Decimal(0) for t in mine), Decimal(0))
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
            contracts = to_decimal(row.get("contracts")) or Decimal(0)
            contract_size = to_decimal(row.get("contractSize")) or to_decimal(market.get("contractSize")) or Decimal(1)
            size = contracts * contract_size
            if row.get("side") == "short":
                size = -abs(size)
            if size == 0:
                continue
            positions.append(VenuePosition(
                venue=self.venue, symbol=native, size=size,
                entry_price=to_decimal(row.get("entryPrice")) or Decimal(0),
                mark_price=to_decimal(row.get("markPrice")),
                unrealized_pnl=to_decimal(row.get("unrealizedPnl")) or Decimal(0),
                leverage=to_decimal(row.get("leverage")),
            ))
        return positions

    async def fetch_balance(self) -> VenueBalance:
        await self._markets()
        balance = await self._read(self.exchange.fetch_balance)
        quote = "USDC" if "USDC" in balance and "USDT" not in balance else "USDT"
        entry = balance.get(quote) or {}
        total = to_decimal(entry.get("total")) or Decimal(0)
        free = to_decimal(entry.get("free")) or Decimal(0)
        used = to_decimal(entry.get("used"))
        return VenueBalance(self.venue, equity=total, available=free,
                            used_margin=used if used is not None else total - free, extra={"currency": quote})

    async def fetch_funding_payments(self, since_ms: int) -> list[FundingPayment]:
        """Funding booked on this account since `since_ms`, per traded symbol (ccxt fetch_funding_history).

        Amounts are + received / - paid; a venue whose wire reports funding as a fee (paid
        positive, Bybit's execFee) declares FUNDING_AMOUNT_SIGN = -1 in its orders module. The
        payment id joins the venue's id (when it has one) with symbol and time, so it is unique
        per venue even where the venue repeats an id (Hyperliquid's zero hash)."""
        await self._markets()
        sign = Decimal(getattr(self.spec, "FUNDING_AMOUNT_SIGN", 1))
        payments: dict[str, FundingPayment] = {}
        for symbol, instrument in self.instruments.items():
            rows = await self._read(self.exchange.fetch_funding_history, instrument.ccxt_symbol, int(since_ms))
            for row in rows:
                if row.get("symbol") not in (None, instrument.ccxt_symbol):
                    continue  # venues that ignore the symbol filter list every market
                info = row.get("info") if isinstance(row.get("info"), dict) else {}
                if info.get("execType", "Funding") != "Funding":
                    continue  # an execution list that also holds trades (Bybit) is not all funding
                amount = to_decimal(row.get("amount"))
                stamp = row.get("timestamp")
                if amount is None or stamp is None or int(stamp) < since_ms:
                    continue
                payment_id = f"{row.get('id') or ''}:{symbol}:{int(stamp)}"
                payments[payment_id] = FundingPayment(self.venue, symbol, payment_id, amount * sign, int(stamp))
        return sorted(payments.values(), key=lambda p: (p.ts_ms, p.payment_id))

    async def close(self) -> None:
        await self.exchange.close()
