"""Account preflight per venue, at start and after every reconnect of its private stream: position mode
one-way, margin mode as configured (venues.<venue>.margin_mode), leverage per symbol as configured
(venues.<venue>.leverage, else risk.max_leverage), the collateral currency the venue settles in, and the
account's own fee rates.

What the bot can fix it fixes (logged as a warning and written to the journal's audit trail when there is
one); what it cannot (the venue refuses: a position or order open, a setting perpbot cannot make) keeps
the venue out of trading: entries there are refused (rule `preflight`), the reason is in
/api/trading/state (`venues_blocked`), `perpbot_venue_preflight_ok{exchange}` is 0 and
PerpbotVenuePreflightFailed fires. Venues start blocked ("preflight pending") until their first pass.

The venue is reached through ccxt's unified account calls, chosen by what the ccxt class has
(`fetchPositionMode`, `setPositionMode`, `fetchLeverage` / `fetchMarginMode`, `setMarginMode`,
`setLeverage`, `fetchTradingFee`), never by the venue's name; a venue without a position-mode call has no
hedge mode (Hyperliquid). "Not modified" answers (Binance -4046/-4059, Bybit 110025/110043) count as
already right. The account's real fee rates replace the instrument's list rates in the desk's instruments
(the strategies' edges and PnL read those).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from decimal import Decimal
from typing import Any

import ccxt.async_support as ccxt  # type: ignore[import-untyped]

from perpbot.core import errors
from perpbot.core.numbers import decimal_or_none
from perpbot.execution.desk import Desk

log = logging.getLogger("perpbot.execution.preflight")
PENDING = "preflight pending"
RETRY_S = 5.0  # a pass the venue could not answer (network, 5xx, rate limit) is tried again after this long
# Substrings of a venue's answer meaning "already so, nothing to change".
UNCHANGED_MARKERS = ("-4046", "-4059", "110025", "110043", "not modified", "No need to change")
COLLATERAL = {"hyperliquid": "USDC"}
# The extra parameters ccxt's setMarginMode / setLeverage need per ccxt class (OKX names the other setting in
# the same call; Hyperliquid's updateLeverage carries both). Nothing extra elsewhere: ccxt passes unknown
# parameters on to the venue, and Binance refuses a request with parameters it does not read (-1104).
MARGIN_MODE_PARAMS: dict[str, Callable[[Decimal, str], dict[str, Any]]] = {
    "okx": lambda leverage, mode: {"lever": str(int(leverage))},
    "hyperliquid": lambda leverage, mode: {"leverage": int(leverage)},
}
LEVERAGE_PARAMS: dict[str, Callable[[Decimal, str], dict[str, Any]]] = {
    "okx": lambda leverage, mode: {"mgnMode": mode},
    "hyperliquid": lambda leverage, mode: {"marginMode": mode},
}


@dataclass(slots=True)
class PreflightResult:
    venue: str
    fixed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    fees: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)  # symbol -> (maker, taker)
    transient: bool = False  # a problem was the venue not answering (tried again after RETRY_S)

    @property
    def ok(self) -> bool:
        return not self.problems


def _transient(exc: BaseException) -> bool:
    """The venue did not answer (network, timeout, 5xx, rate limit): no finding about the account."""
    return isinstance(exc, (ccxt.NetworkError, errors.TemporaryError, errors.RateLimited, errors.UnknownOutcome,
                            asyncio.TimeoutError))


def _unchanged(exc: Exception) -> bool:
    text = str(exc)
    return any(marker in text for marker in UNCHANGED_MARKERS)


class Preflight:
    """Runs each venue's pass and keeps `desk.venues_blocked` (venue -> reason) current."""

    def __init__(self, desk: Desk, clients: dict[str, Any], audit: Callable[[str, dict[str, Any]], Any] | None = None):
        self.desk = desk
        self.clients = clients  # the REST (ccxt) clients by venue
        self.audit = audit
        self.results: dict[str, PreflightResult] = {}  # each venue's last pass
        self.history: deque[PreflightResult] = deque(maxlen=100)  # every pass, newest last
        self._wanted: set[str] = set()
        self._wake = asyncio.Event()
        self._connected: set[str] = set()  # venues whose stream has been live once (the start pass covers that)
        self._retry: set[str] = set()  # venues whose last pass the venue did not answer
        self.first_pass = asyncio.Event()  # set once every venue was checked at start
        for venue in clients:
            desk.venues_blocked[venue] = PENDING

    # -- triggers -------------------------------------------------------------------------
    def on_live(self, venue: str, live: bool) -> None:
        """A private stream came back up (a reconnect, not its first connection): check that venue again."""
        if not live or venue not in self.clients:
            return
        if venue not in self._connected:
            self._connected.add(venue)
            return
        self._wanted.add(venue)
        self._wake.set()

    async def run(self) -> None:
        """Every venue once now, then each venue again whenever its private stream comes back, until stopped."""
        await self.check_all()
        self.first_pass.set()
        while not self.desk.stop_event.is_set():
            if not self._wanted:
                # Wait for a reconnect, or (a pass the venue did not answer) RETRY_S.
                self._wake.clear()
                retry: asyncio.Future[Any] | None = (asyncio.ensure_future(asyncio.sleep(RETRY_S))
                                                     if self._retry else None)
                waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._wake.wait()),
                                                    asyncio.ensure_future(self.desk.stop_event.wait())]
                if retry is not None:
                    waits.append(retry)
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for wait in waits:
                        wait.cancel()
                if self.desk.stop_event.is_set():
                    return
                if retry is not None and retry.done() and not retry.cancelled():
                    self._wanted |= self._retry
            self._retry -= self._wanted
            venues, self._wanted = self._wanted, set()
            for venue in sorted(venues):
                await self.check(venue)

    async def check_all(self) -> dict[str, PreflightResult]:
        await asyncio.gather(*(self.check(venue) for venue in self.clients))
        return dict(self.results)

    # -- one venue ------------------------------------------------------------------------
    async def check(self, venue: str) -> PreflightResult:
        desk = self.desk
        result = PreflightResult(venue)
        client = self.clients[venue]
        try:
            await self._check(venue, client, result)
        except errors.VenueErrorBase as exc:
            result.problems.append(f"account not readable: {exc.message}")
            result.transient = result.transient or _transient(exc)
        except Exception as exc:  # a ccxt error the client did not translate
            result.problems.append(f"account not readable: {type(exc).__name__}: {exc}")
            result.transient = result.transient or _transient(exc)
        if result.transient:
            self._retry.add(venue)
            self._wake.set()
        self.results[venue] = result
        self.history.append(result)
        if result.ok:
            desk.venues_blocked.pop(venue, None)
        else:
            desk.venues_blocked[venue] = "; ".join(result.problems)
            log.error("preflight %s: venue kept out of trading: %s", venue, desk.venues_blocked[venue])
        desk.metrics.venue_preflight_ok.labels(venue).set(1 if result.ok else 0)
        for fix in result.fixed:
            log.warning("preflight %s: fixed %s", venue, fix)
            if self.audit is not None:
                await self.audit("preflight_fix", {"venue": venue, "fix": fix})
        return result

    async def _check(self, venue: str, client: Any, result: PreflightResult) -> None:
        settings = self.desk.settings
        cfg: Any = getattr(settings.venues, venue)
        exchange = client.exchange
        has = exchange.has
        await exchange.load_markets()
        symbols = {native: instrument.ccxt_symbol for native, instrument in client.instruments.items()}
        first = next(iter(symbols.values()), None)
        # Position mode: one-way.
        if has.get("fetchPositionMode") and first is not None:
            mode = await exchange.fetch_position_mode(first)
            if mode.get("hedged"):
                await self._fix(result, "position mode hedge -> one-way",
                                lambda: exchange.set_position_mode(False, first))
        elif has.get("setPositionMode") and first is not None:
            await self._fix(result, None, lambda: exchange.set_position_mode(False, first))
        wanted_mode = cfg.margin_mode
        wanted_leverage = cfg.leverage or settings.risk.max_leverage
        for native, ccxt_symbol in symbols.items():
            seen_mode, seen_leverage = await self._read_leverage(exchange, ccxt_symbol, wanted_mode)
            if seen_mode is None or seen_mode != wanted_mode:
                what = f"{native} margin mode {seen_mode} -> {wanted_mode}" if seen_mode is not None else None
                if has.get("setMarginMode"):
                    extra = MARGIN_MODE_PARAMS.get(exchange.id)
                    params = extra(wanted_leverage, wanted_mode) if extra is not None else {}
                    await self._fix(result, what, partial(exchange.set_margin_mode, wanted_mode, ccxt_symbol, params))
                elif seen_mode is not None:
                    result.problems.append(f"{native} margin mode is {seen_mode}, {wanted_mode} wanted")
            if seen_leverage is None or seen_leverage != wanted_leverage:
                what = f"{native} leverage {seen_leverage} -> {wanted_leverage}" if seen_leverage is not None else None
                extra = LEVERAGE_PARAMS.get(exchange.id)
                params = extra(wanted_leverage, wanted_mode) if extra is not None else {}
                await self._fix(result, what, partial(exchange.set_leverage, int(wanted_leverage), ccxt_symbol, params))
        await self._collateral(venue, client, result)
        await self._fees(venue, client, result)

    async def _read_leverage(self, exchange: Any, symbol: str, mode: str) -> tuple[str | None, Decimal | None]:
        """(margin mode, leverage) the venue reports for `symbol`; None where it has no call for it."""
        if exchange.has.get("fetchLeverage"):
            try:
                answer = await exchange.fetch_leverage(symbol, {"marginMode": mode})
            except Exception as exc:  # noqa: BLE001 - a venue that cannot say: set instead
                log.info("preflight: fetch_leverage %s failed (%s): set instead", symbol, exc)
                return None, None
            seen = answer.get("marginMode")
            return (str(seen).lower() if seen else None), decimal_or_none(answer.get("longLeverage"))
        return None, None

    async def _fix(self, result: PreflightResult, what: str | None, call: Callable[[], Any]) -> None:
        """Make the change; `what` None: an idempotent set (fixed only if the venue did not say unchanged)."""
        try:
            await call()
        except Exception as exc:  # noqa: BLE001 - the venue's refusal is the finding
            if _unchanged(exc):
                return
            if _transient(exc):
                result.transient = True
                result.problems.append(f"{what or 'account setting'} not answered: {exc}")
                return
            result.problems.append(f"{what or 'account setting'} refused: {exc}")
            return
        if what is not None:
            result.fixed.append(what)

    async def _collateral(self, venue: str, client: Any, result: PreflightResult) -> None:
        balance = await client.fetch_balance()
        currency = balance.extra.get("currency") if balance.extra else None
        wanted = COLLATERAL.get(venue, "USDT")
        if currency is not None and currency != wanted:
            result.problems.append(f"collateral is {currency}, {wanted} wanted")

    async def _fees(self, venue: str, client: Any, result: PreflightResult) -> None:
        """The account's own maker/taker rates into the desk's instruments (the list rates until then)."""
        exchange = client.exchange
        if not exchange.has.get("fetchTradingFee"):
            return
        for native, instrument in client.instruments.items():
            try:
                fee = await exchange.fetch_trading_fee(instrument.ccxt_symbol)
            except Exception as exc:  # noqa: BLE001 - list rates stay; not a reason to stop trading
                log.info("preflight %s: fee rates of %s not read (%s): list rates kept", venue, native, exc)
                continue
            maker, taker = decimal_or_none(fee.get("maker")), decimal_or_none(fee.get("taker"))
            if maker is None or taker is None:
                continue
            result.fees[native] = (maker, taker)
            key = (venue, native)
            held = self.desk.instruments.get(key)
            if held is not None and (held.maker_fee, held.taker_fee) != (maker, taker):
                self.desk.instruments[key] = dataclasses.replace(held, maker_fee=maker, taker_fee=taker)
                result.fixed.append(f"{native} fee rates {held.maker_fee}/{held.taker_fee} -> {maker}/{taker} "
                                    "(the account's)")


__all__ = ["PENDING", "Preflight", "PreflightResult"]
