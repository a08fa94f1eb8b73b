"""Price-spread strategy: buy where the depth-weighted ask is below another venue's bid, net of fees.

Prices of a USDC-settled venue (Hyperliquid) are compared with the USDT venues' through the USDC/USDT rate
(risk.usdc_usdt_rate, perpbot.core.quote_rate), in the edges and in every screen, never 1:1 unless the rate is 1."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_CEILING, ROUND_FLOOR, Context, Decimal

from perpbot.book.l2 import L2Book
from perpbot.core.decisions import Decision
from perpbot.core.events import FundingUpdate
from perpbot.core.instruments import Instrument
from perpbot.core.quote_rate import usdt_per
from perpbot.scanner.depth import BPS, exponent_of, mid_price
from perpbot.scanner.edges import best_first, close_decision, long_short, own_exits, pair_size_at, quote_pair
from perpbot.scanner.protocol import Key, MarketView, OpenTrade, Screens, Usable, held_keys
from perpbot.settings import PriceSpreadSettings


# Exact arithmetic for the exit screen's constants (its inputs have far fewer digits than this).
_WIDE = Context(prec=200)
# The exit screen's margin (bps): far above Decimal's 28-digit rounding in a quote, far below any edge.
_EXIT_MARGIN_BPS = Decimal("0.000001")

# One usable book as evaluate reads it: (instrument, book, best bid, best ask) (scaled ints, None: empty side).
_Top = tuple[Instrument, L2Book, int | None, int | None]
# An open trade's exit screen: (trade, long key, short key, exit factors or None), see _exit_screen.
_ExitScreen = tuple[OpenTrade, Key, Key, tuple[int, int] | None]


class PriceSpreadStrategy:
    """Cross-venue price spread on the same underlying.

    Entry: for every ordered pair of venues, buy `order_size_usdt` (converted at the pair's
    mid, rounded onto both lot grids) where the depth-weighted ask is lower than the other
    venue's depth-weighted bid; edge after both taker fees must reach `min_edge_bps`.
    Exit: when entry edge + edge of the reverse trade now >= `exit_edge_bps` (the spread has
    converged: closing costs less than the entry gained), or after `max_hold_s`.
    One open trade per venue pair: no new entry on a pair that already holds one.
    `usdc_usdt`: USDT per USDC; a USDC book's prices count at that rate in edges and screens.
    """

    name = "price_spread"

    def __init__(self, settings: PriceSpreadSettings, usdc_usdt: Decimal = Decimal(1)) -> None:
        self.settings = settings
        self.usdc_usdt = usdc_usdt
        # Rate 1: raw prices of any two books compare as they are (the factor-free pre-checks hold).
        self._plain = usdc_usdt == 1
        # Per instrument: integer fee factors for the entry screen (see may_enter).
        self._factors: dict[Key, tuple[int, int]] = {}
        # Per open trade (by id): (trade, long key, short key, exit factors or None), see _exit_screen.
        self._exits: dict[str, _ExitScreen] = {}
        self.exit_screen = True  # tests turn it off to compare with the unscreened exit
        self.pair_screen = True  # likewise for the per-pair entry screen in evaluate

    def _factors_of(self, inst: Instrument, key: Key) -> tuple[int, int]:
        """(sell, buy) factors x 2**40: ceil((1 - fee) x r x 2**40) + 1 and
        floor((1 + fee + min_edge) x r x 2**40) - 1, r the book's USDT per quote unit (1 for USDT).
        The rounding and the +-1 only ever loosen the screen (by ~1e-12, far above Decimal's
        28-digit error in the real quote)."""
        factors = self._factors.get(key)
        if factors is None:
            one = Decimal(1 << 40)
            fee = inst.taker_fee
            rate = usdt_per(inst.quote, self.usdc_usdt) or 1
            sell = int(((1 - fee) * rate * one).to_integral_value(ROUND_CEILING)) + 1
            buy = int(((1 + fee + self.settings.min_edge_bps / BPS) * rate * one)
                      .to_integral_value(ROUND_FLOOR)) - 1
            factors = self._factors[key] = (sell, buy)
        return factors

    def top_factors(self, instrument: Instrument) -> tuple[int, int]:
        """TopScreen: the same (sell, buy) factors may_enter compares, for the scanner's
        incremental screen (an entry needs best_bid x sell >= best_ask x buy for some pair)."""
        return self._factors_of(instrument, instrument.key)

    def may_enter(self, base: str, usable: Usable, funding: Mapping[Key, FundingUpdate]) -> bool:
        """Entry screen (EntryScreen): False when no pair of usable books can reach min_edge_bps.

        The quoted edge is vwap_bid x (1 - fee_sell) - vwap_ask x (1 + fee_buy) >= min_edge x
        vwap_ask; depth only lowers vwap_bid below the best bid and raises vwap_ask above the
        best ask, so it needs best_bid x (1 - fee_sell) >= best_ask x (1 + fee_buy + min_edge)
        for some pair: compared as exact integers (scaled prices x the factors above). A quiet
        market stops at the first, factor-free test: no bid above any ask (only with a USDC/USDT
        rate of 1: otherwise raw prices of a USDC and a USDT book do not compare)."""
        max_bid = min_ask = None
        for _, _, book in usable:
            keys = book.bid_keys
            if keys and (max_bid is None or keys[-1] > max_bid):
                max_bid = keys[-1]
            keys = book.ask_keys
            if keys and (min_ask is None or keys[0] < min_ask):
                min_ask = keys[0]
        if max_bid is None or min_ask is None or (self._plain and max_bid <= min_ask):
            return False
        best_sell = 0
        best_buy = None
        factors_of = self._factors_of
        for inst, key, book in usable:
            sell, buy = factors_of(inst, key)
            if book.bid_keys:
                value = book.bid_keys[-1] * sell
                if value > best_sell:
                    best_sell = value
            if book.ask_keys:
                value = book.ask_keys[0] * buy
                if best_buy is None or value < best_buy:
                    best_buy = value
        return best_buy is not None and best_sell >= best_buy

    def screens(self) -> Screens:
        """An EntryScreen, a TopScreen (the same integer test, kept per book by the scanner) and an ExitScreen."""
        return Screens(may_enter=self.may_enter, top_factors=self.top_factors, may_exit=self.may_exit)

    def evaluate(self, view: MarketView, base: str, open_trades: list[OpenTrade]) -> list[Decision]:
        decisions = own_exits(self.name, base, open_trades, view, self._exit)
        exits = len(decisions)  # entries follow the exits, best edge first (see best_first)
        tops = _crossed_tops(view, base, open_trades, self._plain)
        mids: dict[int, Decimal | None] = {}  # id(book) -> its mid, computed once for all the pairs it is in
        for i, a in enumerate(tops):
            for b in tops[i + 1 :]:
                if a[0].venue == b[0].venue:
                    continue
                for buy, sell in ((a, b), (b, a)):
                    ask, bid = buy[3], sell[2]
                    # Exact: depth only worsens both prices and fees are >= 0, so unless the
                    # best bid exceeds the best ask no size can have a positive edge (raw prices
                    # of books in one currency; across USDC and USDT the factored test in _entry).
                    if ask is not None and bid is not None and (
                            bid > ask or (not self._plain and buy[0].quote != sell[0].quote)):
                        decision = self._entry(base, buy, sell, ask, bid, mids)
                        if decision is not None:
                            decisions.append(decision)
        return best_first(decisions, exits)

    def _entry(self, base: str, buy: _Top, sell: _Top, ask: int, bid: int,
               mids: dict[int, Decimal | None]) -> Decision | None:
        """The entry buying on `buy`'s book (best ask `ask`) and selling on `sell`'s (best bid `bid` > `ask` in
        one currency), if its edge at depth for the order size, in USDT, reaches min_edge_bps."""
        buy_i, buy_b = buy[0], buy[1]
        sell_i, sell_b = sell[0], sell[1]
        # Exact too (may_enter's test for this one pair): a cross inside both taker fees and min_edge at the
        # best prices is not quoted at depth.
        if self.pair_screen and (
                bid * self._factors_of(sell_i, sell_i.key)[0] < ask * self._factors_of(buy_i, buy_i.key)[1]):
            return None
        mid_buy = mids.get(id(buy_b))
        if mid_buy is None:
            mid_buy = mids[id(buy_b)] = mid_price(buy_b)
        mid_sell = mids.get(id(sell_b))
        if mid_sell is None:
            mid_sell = mids[id(sell_b)] = mid_price(sell_b)
        rate_buy, rate_sell = usdt_per(buy_i.quote, self.usdc_usdt), usdt_per(sell_i.quote, self.usdc_usdt)
        qty = pair_size_at(buy_i, mid_buy, sell_i, mid_sell, self.settings.order_size_usdt, rate_buy, rate_sell)
        if qty <= 0:
            return None
        quote = quote_pair(buy_i, buy_b, sell_i, sell_b, qty, rate_buy, rate_sell)
        if quote is None or quote.edge_bps < self.settings.min_edge_bps:
            return None
        return Decision(
            strategy=self.name,
            action="open",
            base=base,
            legs=quote.legs(),
            edge_bps=quote.edge_bps,
            edge_usdt=quote.edge_usdt,
            reason=(
                f"spread {quote.edge_bps:.2f}bps buy {buy_i.venue} "
                f"{quote.buy.vwap:.8g} sell {sell_i.venue} {quote.sell.vwap:.8g}"
            ),
        )

    def _exit_factors(self, trade: OpenTrade, long_inst: Instrument, short_inst: Instrument) -> tuple[int, int] | None:
        """(a, b) with: best_bid(long) x a < best_ask(short) x b  =>  the close cannot reach exit_edge_bps.

        The close buys back on the short venue (vwap >= its best ask, taker fee fb) and sells on the
        long venue (vwap <= its best bid, fee fs), so with rl, rs each venue's USDT per quote unit its
        edge_bps <= (bid rl (1 - fs) / (ask rs) - 1 - fb) x 1e4. The round trip entry_edge_bps + edge_bps
        stays under exit_edge_bps when bid rl (1 - fs) 1e4 < ask rs (1e4 (1 + fb) + exit_edge_bps -
        entry_edge_bps - margin), computed exactly (wide context) and scaled to integers. None when a
        fee >= 1 (no screen)."""
        fs, fb = long_inst.taker_fee, short_inst.taker_fee
        if fs >= 1 or fb >= 1:
            return None
        wide = _WIDE
        sell = wide.multiply(wide.subtract(1, fs), BPS)
        limit = wide.add(wide.multiply(wide.add(1, fb), BPS), wide.subtract(self.settings.exit_edge_bps, trade.entry_edge_bps))
        limit = wide.subtract(limit, _EXIT_MARGIN_BPS)
        rate_long, rate_short = usdt_per(long_inst.quote, self.usdc_usdt), usdt_per(short_inst.quote, self.usdc_usdt)
        if rate_long is not None:
            sell = wide.multiply(sell, rate_long)
        if rate_short is not None:
            limit = wide.multiply(limit, rate_short)
        exponent = min(exponent_of(sell), exponent_of(limit))
        a = int(wide.scaleb(sell, -exponent))
        b = int(wide.scaleb(limit, -exponent))
        return a, b

    def _exit_screen(self, trade: OpenTrade, instruments: Mapping[Key, Instrument]) -> _ExitScreen | None:
        """(trade, long key, short key, _exit_factors) of an open trade, computed once per trade object;
        None while a leg's instrument is unknown (then no close can be priced either)."""
        cached = self._exits.get(trade.trade_id)
        if cached is not None and cached[0] is trade:
            return cached
        long_leg, short_leg = long_short(trade.legs)
        long_key, short_key = (long_leg.venue, long_leg.symbol), (short_leg.venue, short_leg.symbol)
        long_inst, short_inst = instruments.get(long_key), instruments.get(short_key)
        if long_inst is None or short_inst is None:
            return None
        if len(self._exits) > 4096:
            self._exits.clear()  # closed trades' entries: the cache only has to hold the open ones
        cached = self._exits[trade.trade_id] = (
            trade, long_key, short_key, self._exit_factors(trade, long_inst, short_inst))
        return cached

    def may_exit(self, trade: OpenTrade, books: Mapping[Key, L2Book], instruments: Mapping[Key, Instrument],
                 funding: Mapping[Key, FundingUpdate], now: float) -> bool:
        """ExitScreen: False only where `_exit` returns None for `trade` at `now`: before max_hold_s,
        with both legs' instruments known and the exit screen's integer test on the books' best
        prices holding (the same test `_exit` applies before quoting); a missing book or
        instrument cannot be priced, so no close either."""
        if not self.exit_screen or now - trade.opened_at >= self.settings.max_hold_s:
            return True
        screen = self._exit_screen(trade, instruments)
        if screen is None:
            return False
        _, long_key, short_key, factors = screen
        long_book, short_book = books.get(long_key), books.get(short_key)
        if long_book is None or short_book is None:
            return False
        if factors is None:
            return True
        bids, asks = long_book.bid_keys, short_book.ask_keys
        return not (bids and asks and bids[-1] * factors[0] < asks[0] * factors[1])

    def _exit(self, view: MarketView, trade: OpenTrade) -> Decision | None:
        long_leg, short_leg = long_short(trade.legs)
        long_book = view.book(long_leg.venue, long_leg.symbol)
        short_book = view.book(short_leg.venue, short_leg.symbol)
        long_inst = view.instrument(long_leg.venue, long_leg.symbol)
        short_inst = view.instrument(short_leg.venue, short_leg.symbol)
        if long_book is None or short_book is None or long_inst is None or short_inst is None:
            return None  # cannot price the close on unusable books; retried on the next update
        if self.exit_screen and view.now - trade.opened_at < self.settings.max_hold_s:
            # Most updates of a held base: not converged and not timed out. Exact integer test on
            # the best prices (see _exit_factors) instead of a depth-weighted Decimal quote.
            screen = self._exit_screen(trade, view.instruments)
            factors = screen[3] if screen is not None else None
            bids, asks = long_book.bid_keys, short_book.ask_keys
            if factors is not None and bids and asks and bids[-1] * factors[0] < asks[0] * factors[1]:
                return None
        # Closing = buy back on the short venue, sell on the long venue (priced at the smaller size).
        qty = min(long_leg.base_qty, short_leg.base_qty)
        quote = quote_pair(short_inst, short_book, long_inst, long_book, qty,
                           usdt_per(short_inst.quote, self.usdc_usdt), usdt_per(long_inst.quote, self.usdc_usdt))
        if quote is None:
            return None
        round_trip_bps = trade.entry_edge_bps + quote.edge_bps
        if round_trip_bps >= self.settings.exit_edge_bps:
            reason = f"converged: round trip {round_trip_bps:.2f}bps"
        elif view.now - trade.opened_at >= self.settings.max_hold_s:
            reason = f"max hold {self.settings.max_hold_s:.0f}s: round trip {round_trip_bps:.2f}bps"
        else:
            return None
        return close_decision(self.name, trade, quote, short_leg, long_leg, short_book, long_book, reason)



def _crossed_tops(view: MarketView, base: str, open_trades: list[OpenTrade], plain: bool = True) -> list[_Top]:
    """The usable books of `base` an entry may use, with their best prices; none when no venue's bid
    exceeds another's ask (then nothing can be entered; with `plain`, a USDC/USDT rate of 1, else raw
    prices in two currencies do not compare and only an empty side ends it). Best prices are read once
    per book: most scans end at this integer pre-check."""
    tops = [(inst, book, book.best_bid(), book.best_ask()) for inst, book in view.books_for(base)]
    bids = [top[2] for top in tops if top[2] is not None]
    asks = [top[3] for top in tops if top[3] is not None]
    if not bids or not asks or (plain and max(bids) <= min(asks)):
        return []
    busy = held_keys(open_trades)
    if busy:  # books of held venue/symbols take no part in a new entry (the test below, hoisted)
        tops = [top for top in tops if (top[0].venue, top[0].symbol) not in busy]
    return tops
