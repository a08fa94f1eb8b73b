"""Funding-spread strategy: long the venue paying the lower hourly funding, short the higher.

Notionals, fees and the price spread of a USDC-settled leg (Hyperliquid) count in USDT at the USDC/USDT rate
(risk.usdc_usdt_rate, perpbot.core.quote_rate), never 1:1 unless the rate is 1."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from perpbot.book.l2 import L2Book
from perpbot.core.decisions import Decision
from perpbot.core.events import FundingUpdate
from perpbot.core.instruments import Instrument
from perpbot.core.quote_rate import usdt_per
from perpbot.scanner.depth import BPS
from perpbot.scanner.edges import best_first, close_decision, long_short, own_exits, pair_size, quote_pair
from perpbot.scanner.protocol import Key, MarketView, OpenTrade, Screens, Usable, held_keys
from perpbot.settings import FundingSpreadSettings


# One usable book with a funding rate: (hourly rate, instrument, book).
_Rated = tuple[Decimal, Instrument, L2Book]


def hourly(update: FundingUpdate) -> Decimal:
    """Funding per hour, whatever the venue's interval (OKX/Binance/Bybit 8h or 4h, Hyperliquid 1h)."""
    return update.hourly_rate


class FundingSpreadStrategy:
    """Cross-venue funding carry on the same underlying.

    A long pays funding when the rate is positive, a short receives it; holding long on the
    lower-rate venue and short on the higher earns (high - low) per hour on the notional.
    Entry: hourly spread >= `entry_hourly_spread` AND expected funding over `horizon_hours`
    exceeds both venues' taker fees for entry and exit plus the price spread paid at entry
    (depth-weighted for the size). Exit: spread < `exit_hourly_spread` (this includes a flip,
    when the side we are long now pays more) or after `max_hold_s`.
    `usdc_usdt`: USDT per USDC, the rate a USDC leg's notional and fees count at.
    """

    name = "funding_spread"

    def __init__(self, settings: FundingSpreadSettings, usdc_usdt: Decimal = Decimal(1)) -> None:
        self.settings = settings
        self.usdc_usdt = usdc_usdt
        # Funding changes rarely, books often: keep each update's hourly rate until it is replaced.
        self._hourly: dict[tuple[str, str], tuple[FundingUpdate, Decimal]] = {}

    def _hourly_of(self, update: FundingUpdate) -> Decimal:
        key = (update.venue, update.symbol)
        cached = self._hourly.get(key)
        if cached is not None and cached[0] is update:
            return cached[1]
        rate = hourly(update)
        self._hourly[key] = (update, rate)
        return rate

    def screens(self) -> Screens:
        """An EntryScreen, a FundingScreen (judged by the scanner only when a rate was replaced) and an ExitScreen."""
        return Screens(may_enter=self.may_enter, funding_may_enter=self.funding_may_enter, may_exit=self.may_exit)

    def _apart(self, rates: list[Decimal]) -> bool:
        """Two of `rates` (hourly) differ by at least entry_hourly_spread, and by more than 0."""
        if not rates:
            return False
        low, high = min(rates), max(rates)
        return high > low and high - low >= self.settings.entry_hourly_spread

    def funding_may_enter(self, updates: list[FundingUpdate | None]) -> bool:
        """FundingScreen: False unless two of the base's funding updates differ by at least
        entry_hourly_spread per hour (and by more than 0). Over every instrument of the base, so
        at least as permissive as the same test over the usable ones (may_enter, evaluate)."""
        return self._apart([self._hourly_of(update) for update in updates if update is not None])

    def may_enter(self, base: str, usable: Usable, funding: Mapping[Key, FundingUpdate]) -> bool:
        """Entry screen (EntryScreen): False unless two usable books' hourly funding differ by at
        least entry_hourly_spread (and by more than 0), the first test `evaluate` applies."""
        return self._apart([self._hourly_of(update) for _, key, _ in usable
                            if (update := funding.get(key)) is not None])

    def evaluate(self, view: MarketView, base: str, open_trades: list[OpenTrade]) -> list[Decision]:
        decisions = own_exits(self.name, base, open_trades, view, self._exit)
        exits = len(decisions)  # entries follow the exits, best edge first (see best_first)
        rated = self._rated(view, base)
        busy = held_keys(open_trades) if rated else set()
        for i, a in enumerate(rated):
            for b in rated[i + 1 :]:
                if a[1].venue == b[1].venue or a[1].key in busy or b[1].key in busy:
                    continue
                decision = self._entry(base, a, b) if a[0] <= b[0] else self._entry(base, b, a)
                if decision is not None:
                    decisions.append(decision)
        return best_first(decisions, exits)

    def _rated(self, view: MarketView, base: str) -> list[_Rated]:
        """The usable books of `base` that have a funding rate, as (hourly rate, instrument, book); none
        when no two of them are far enough apart to enter."""
        threshold = self.settings.entry_hourly_spread
        # Cheaper still, before any book is read: the spread over every instrument of the base (a
        # superset of the usable ones, so its range is at least theirs) misses the threshold.
        funding = view.funding
        rates = [
            self._hourly_of(update)
            for inst in view.instruments_of(base)
            if (update := funding(inst.venue, inst.symbol)) is not None
        ]
        if len(rates) < 2 or max(rates) - min(rates) < threshold:
            return []
        rated = []
        for instrument, book in view.books_for(base):
            update = funding(instrument.venue, instrument.symbol)
            if update is not None:
                rated.append((self._hourly_of(update), instrument, book))
        if len(rated) < 2:
            return []
        # Cheap exit for the common case: no pair's spread can reach the entry threshold.
        rates = [entry[0] for entry in rated]
        if max(rates) - min(rates) < threshold:
            return []
        return rated

    def _entry(self, base: str, low: _Rated, high: _Rated) -> Decision | None:
        """The entry long `low` (the lower hourly rate) and short `high`, if the funding it expects over the
        horizon beats the price spread paid and both legs' fees, in and out."""
        settings = self.settings
        spread = high[0] - low[0]
        if spread < settings.entry_hourly_spread or spread <= 0:
            return None
        rate_low, rate_high = usdt_per(low[1].quote, self.usdc_usdt), usdt_per(high[1].quote, self.usdc_usdt)
        qty = pair_size(low[1], low[2], high[1], high[2], settings.order_size_usdt, rate_low, rate_high)
        if qty <= 0:
            return None
        quote = quote_pair(low[1], low[2], high[1], high[2], qty, rate_low, rate_high)
        if quote is None:
            return None
        notional = (quote.buy_usdt + quote.sell_usdt) / 2
        expected_funding = spread * settings.horizon_hours * notional
        # quote.edge_usdt already holds -(price spread paid) - entry fees; exit fees are
        # estimated at the same notionals (same taker rates).
        edge_usdt = expected_funding + quote.edge_usdt - quote.fees_usdt
        if edge_usdt <= 0:
            return None
        return Decision(
            strategy=self.name,
            action="open",
            base=base,
            legs=quote.legs(),
            edge_bps=edge_usdt / quote.buy_usdt * BPS,
            edge_usdt=edge_usdt,
            reason=(
                f"funding spread {spread * BPS:.3f}bps/h long {low[1].venue} "
                f"short {high[1].venue} over {settings.horizon_hours}h"
            ),
        )

    def may_exit(self, trade: OpenTrade, books: Mapping[Key, L2Book], instruments: Mapping[Key, Instrument],
                 funding: Mapping[Key, FundingUpdate], now: float) -> bool:
        """ExitScreen: the reasons `_exit` has to close (max hold, a flipped or narrowed funding
        spread), before any book is read; False only where `_exit` returns None."""
        if now - trade.opened_at >= self.settings.max_hold_s:
            return True
        long_leg, short_leg = long_short(trade.legs)
        long_rate = funding.get((long_leg.venue, long_leg.symbol))
        short_rate = funding.get((short_leg.venue, short_leg.symbol))
        if long_rate is None or short_rate is None:
            return False
        spread = self._hourly_of(short_rate) - self._hourly_of(long_rate)
        return spread < 0 or spread < self.settings.exit_hourly_spread

    def _exit(self, view: MarketView, trade: OpenTrade) -> Decision | None:
        long_leg, short_leg = long_short(trade.legs)
        long_rate = view.funding(long_leg.venue, long_leg.symbol)
        short_rate = view.funding(short_leg.venue, short_leg.symbol)
        reason = None
        if long_rate is not None and short_rate is not None:
            spread = hourly(short_rate) - hourly(long_rate)
            if spread < 0:
                reason = f"funding flipped: {spread * BPS:.3f}bps/h"
            elif spread < self.settings.exit_hourly_spread:
                reason = f"funding spread {spread * BPS:.3f}bps/h under exit threshold"
        if reason is None and view.now - trade.opened_at >= self.settings.max_hold_s:
            reason = f"max hold {self.settings.max_hold_s:.0f}s"
        if reason is None:
            return None
        long_book = view.book(long_leg.venue, long_leg.symbol)
        short_book = view.book(short_leg.venue, short_leg.symbol)
        long_inst = view.instrument(long_leg.venue, long_leg.symbol)
        short_inst = view.instrument(short_leg.venue, short_leg.symbol)
        if long_book is None or short_book is None or long_inst is None or short_inst is None:
            return None  # cannot price the close on unusable books; retried on the next update
        qty = min(long_leg.base_qty, short_leg.base_qty)
        quote = quote_pair(short_inst, short_book, long_inst, long_book, qty,
                           usdt_per(short_inst.quote, self.usdc_usdt), usdt_per(long_inst.quote, self.usdc_usdt))
        if quote is None:
            return None
        return close_decision(self.name, trade, quote, short_leg, long_leg, short_book, long_book, reason)

