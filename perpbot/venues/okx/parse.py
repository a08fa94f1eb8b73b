"""OKX v5 public WebSocket frames -> events (pure), and OKX book integrity rules (seqId chain, CRC32).

Wire reference: https://www.okx.com/docs-v5/en/#order-book-trading-market-data-ws-order-book-channel
and the funding-rate channel (#public-data-websocket-funding-rate-channel); notes in VENUES.md §1.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from perpbot.book.l2 import L2Book
from perpbot.book.sync import APPLY
from perpbot.core.accelerators import load_accelerator
from perpbot.core.events import BookUpdate, Event, FundingUpdate, ParseError, Pong, SubscribeAck, VenueError
from perpbot.venues._wire import check_levels, decimal_field, decode, field, int_field
# The pure-Python checksum (perpbot.venues.okx.checksum), re-exported: callers import it from here.
from perpbot.venues.okx.checksum import CHECKSUM_DEPTH, _verify_checksum_py, checksum_string, crc32_signed

VENUE = "okx"
BOOK_CHANNELS = ("books", "books5")
FUNDING_CHANNEL = "funding-rate"
DEFAULT_FUNDING_HOURS = 8.0
_MS_PER_HOUR = 3_600_000
# ts bounds: anything a signed 64-bit ms timestamp can hold (found by the long fuzz run: a
# 5,000-digit ts made int() raise a bare ValueError past Python's int-string limit).
_TS_MAX_DIGITS = 18
_TS_LIMIT = 1 << 63


# Typed fast path for `books` frames: msgspec decodes straight into these structs and
# checks every level's shape in C (faster than orjson.loads alone), replacing the
# per-level Python checks. Any frame that does not fit exactly (events, funding, odd
# types, ts not a digit string...) falls through to the generic path, which alone
# decides the result and every error message: the fast path only ever accepts frames
# the generic path would turn into the very same BookUpdates.
_Level = Annotated[list[str], msgspec.Meta(min_length=2)]


# gc=False: these structs hold only strings, ints and lists, never a cycle, so the
# collector need not track them (a measurable share of the decode).
class _Arg(msgspec.Struct, gc=False):
    channel: str
    instId: str


class _Item(msgspec.Struct, gc=False):
    bids: list[_Level]
    asks: list[_Level]
    ts: str
    seqId: int | None = None
    prevSeqId: int | None = None
    checksum: int | None = None


class _BooksFrame(msgspec.Struct, gc=False):
    arg: _Arg
    data: list[_Item]
    action: str = ""
    event: object = None


_decode_books = msgspec.json.Decoder(_BooksFrame).decode
_TYPED_MISS = (msgspec.ValidationError, msgspec.DecodeError)

# The C parser of plain `books` updates and the C checksum (perpbot/venues/okx/_books.c, built at
# install when a compiler is there): the same results as the msgspec path and _verify_checksum_py,
# which run when it is absent or PERPBOT_PURE_PYTHON=1 (tests/unit/venues/test_okx_c_parser.py and
# tests/unit/book/test_accel.py compare them). It keeps nothing between calls.
def _load_books() -> Any:
    return load_accelerator("perpbot.venues.okx._books")


_books = _load_books()
ACCELERATED = _books is not None
_peek: Any = _books.peek if _books is not None else None
_crc: Any = _books.checksum if _books is not None else None


def set_accelerated(enabled: bool) -> bool:
    """Turns this process's C frame parser and checksum off (or back on, where built and not
    disabled by PERPBOT_PURE_PYTHON); returns the previous setting: the bench's pure-Python rows."""
    global _peek, _crc
    previous = _peek is not None
    on = enabled and _books is not None
    _peek = _books.peek if on else None
    _crc = _books.checksum if on else None
    return previous


def parse(frame: str | bytes, recv_ts: float) -> list[Event]:
    """One OKX public frame -> events. Raises ParseError on anything malformed."""
    try:
        typed = _decode_books(frame)
    except _TYPED_MISS:
        # Not a books frame (or not JSON: OKX's keepalive answer is the bare text "pong").
        if frame == "pong" or frame == b"pong":
            return [Pong(VENUE, recv_ts)]
        return _parse_generic(frame, recv_ts)
    except (TypeError, UnicodeDecodeError):  # not str/bytes, or not UTF-8: the generic path raises the ParseError
        return _parse_generic(frame, recv_ts)
    if typed.event is None and typed.arg.channel == "books":
        action = typed.action
        if action == "update":
            snapshot = False
        elif action == "snapshot":
            snapshot = True
        else:
            return _parse_generic(frame, recv_ts)
        symbol = typed.arg.instId
        out: list[Event] = []
        for item in typed.data:
            ts = item.ts
            # A real ms timestamp has 13 digits; longer ones (up to 4,300+ digits from a corrupt
            # frame would make int() raise ValueError) are the generic path's to refuse.
            if not (ts.isascii() and ts.isdigit()) or len(ts) > _TS_MAX_DIGITS:
                return _parse_generic(frame, recv_ts)
            seq = item.seqId
            prev = item.prevSeqId
            if seq is None:
                # See _book: 2022-era frames carry no seqId; the exchange ts stands in.
                seq = int(ts)
                prev = None
            checksum = item.checksum
            if checksum == 0:
                checksum = None
            out.append(BookUpdate(VENUE, symbol, snapshot, item.bids, item.asks, seq, prev, None, checksum, int(ts), recv_ts))
        return out
    return _parse_generic(frame, recv_ts)


def apply_books_frame(frame: str | bytes, recv_ts: float, books) -> tuple[L2Book, int, str | None] | None:
    """Fast path for the common frame: a `books` update of one symbol whose book is synced.

    Decodes straight into the book: no BookUpdate, no apply_update/Rules calls. `books` maps
    (venue, symbol) to L2Book, like BookStore.books. Returns (book, exchange ts ms, None) when
    applied, (book, exchange ts ms, reason) when the book was invalidated (the very reasons
    and book state apply_update gives: "malformed: ...", "checksum", "crossed"), or None for
    anything else: not a books update, several items, an unknown or unsynced book,
    a seqId gap... The caller then runs parse() + apply_update on the same frame: nothing was
    touched, so that path alone owns every unusual case and its error.
    """
    if _peek is not None:
        done = _apply_peeked(frame, recv_ts, books)
        if done is not False:
            return done
    try:
        typed = _decode_books(frame)
    except Exception:  # whatever the typed decode refuses belongs to the generic path
        return None
    data = typed.data
    if typed.action != "update" or typed.event is not None or len(data) != 1 or typed.arg.channel != "books":
        return None
    book = books.get((VENUE, typed.arg.instId))
    if book is None:
        return None
    item = data[0]
    last = book.seq
    prev = item.prevSeqId
    # Rules.check_sequence's APPLY case only; a gap (and its reason) is the generic path's.
    if last is None or book.awaiting_first_delta or (prev != last and prev is not None):
        return None
    ts = item.ts
    if not (ts.isascii() and ts.isdigit()) or len(ts) > _TS_MAX_DIGITS:
        return None
    ts_ms = int(ts)
    seq = item.seqId
    if seq is None:  # 2022-era frames: no seqId, the exchange ts stands in and no check applies (see _book)
        if prev is not None:
            return None
        seq = ts_ms
    try:
        book.apply_levels(item.bids, item.asks)
    except (ValueError, IndexError, TypeError) as exc:  # as apply_update: a level that is not exact
        book.invalidate("malformed")
        book.seq = None
        return book, ts_ms, f"malformed: {exc}"
    return _applied(book, seq, ts_ms, recv_ts, item.checksum)


def _applied(book: L2Book, seq: int, ts_ms: int, recv_ts: float, checksum: int | None) -> tuple[L2Book, int, str | None]:
    """The fast paths' end, once the levels are in: the book's position, then the checksum and the
    crossed check with apply_update's reasons and book state."""
    book.seq = seq
    book.exchange_ts_ms = ts_ms
    book.recv_ts = recv_ts
    book.updates += 1
    if checksum and not _verify_checksum(book, checksum):  # 0 means "no checksum" (see _book)
        book.invalidate("checksum")
        book.seq = None
        return book, ts_ms, "checksum"
    bid_keys = book.bid_keys
    ask_keys = book.ask_keys
    if bid_keys and ask_keys and bid_keys[-1] >= ask_keys[0]:
        book.invalidate("crossed")
        book.seq = None
        return book, ts_ms, "crossed"
    book.valid = True
    book.invalid_reason = None
    return book, ts_ms, None


def _apply_peeked(frame: str | bytes, recv_ts: float, books: dict[tuple[str, str], L2Book]) -> tuple[L2Book, int, str | None] | None | Literal[False]:
    """apply_books_frame over the C parser (perpbot/venues/okx/_books.c, peek): the same checks in the
    same order and the same results, for the frames it accepts (a plain books update: its level
    strings never become Python objects, the book applies them from the frame through the span
    table peek returns). False when it declines the frame (anything unusual: the typed msgspec path
    then decides, as without the accelerator)."""
    peek = _peek(frame)
    if peek is None:
        return False
    symbol, ts_ms, seq, prev, checksum, spans = peek
    book = books.get((VENUE, symbol))
    if book is None:
        return None
    last = book.seq
    if last is None or book.awaiting_first_delta or (prev != last and prev is not None):
        return None
    if seq is None:  # 2022-era frames: no seqId, the exchange ts stands in (see _book)
        if prev is not None:
            return None
        seq = ts_ms
    try:
        book.apply_spans(frame, spans)
    except (ValueError, IndexError, TypeError) as exc:  # as apply_update: a level that is not exact
        book.invalidate("malformed")
        book.seq = None
        return book, ts_ms, f"malformed: {exc}"
    return _applied(book, seq, ts_ms, recv_ts, checksum)


def _parse_generic(frame: str | bytes, recv_ts: float) -> list[Event]:
    message = decode(VENUE, frame)
    if type(message) is not dict:
        raise ParseError(VENUE, "frame is not a JSON object")
    event = message.get("event")
    if event is not None:
        return [_parse_event(message, event)]
    # Hot path: plain lookups, then one type check per field (field() is for the cold paths).
    arg = message.get("arg")
    data = message.get("data")
    if type(arg) is not dict or type(data) is not list:
        raise ParseError(VENUE, "frame lacks arg object or data list")
    channel = arg.get("channel")
    if channel == "books":
        symbol = arg.get("instId")
        if type(symbol) is not str:
            raise ParseError(VENUE, "books frame without instId")
        action = message.get("action")
        if action == "snapshot":
            snapshot = True
        elif action == "update":
            snapshot = False
        else:
            raise ParseError(VENUE, f"unknown books action {action!r}", symbol)
        return [_book(item, symbol, snapshot, recv_ts) for item in data]
    if type(channel) is not str:
        raise ParseError(VENUE, "arg.channel is not a string")
    if channel == "books5":
        symbol = field(VENUE, arg, "instId", str)
        return [_book(item, symbol, True, recv_ts) for item in data]
    if channel == FUNDING_CHANNEL:
        return [_funding(item, arg, recv_ts) for item in data]
    # Channels we did not subscribe to are not an error, but are not ours to interpret.
    return []


def _parse_event(message: dict, event: object) -> Event:
    if event in ("subscribe", "unsubscribe"):
        arg = message.get("arg")
        detail = f"{event} {arg.get('channel')}:{arg.get('instId')}" if type(arg) is dict else str(event)
        return SubscribeAck(VENUE, detail)
    if event == "error":
        return VenueError(VENUE, str(message.get("code", "")), str(message.get("msg", "")))
    if type(event) is not str:
        raise ParseError(VENUE, "event is not a string")
    # channel-conn-count and similar notices: surface them, they are never book data.
    return SubscribeAck(VENUE, event)


def _book(item: object, symbol: str, snapshot: bool, recv_ts: float) -> BookUpdate:
    if type(item) is not dict:
        raise ParseError(VENUE, "books data element is not an object", symbol)
    bids = check_levels(VENUE, item.get("bids"), symbol)
    asks = check_levels(VENUE, item.get("asks"), symbol)
    ts = item.get("ts")
    if type(ts) is not str or not (ts.isascii() and ts.isdigit()) or len(ts) > _TS_MAX_DIGITS:
        ts = int_field(VENUE, item, "ts", symbol)  # raises unless it is an integer int() can convert
        if not -_TS_LIMIT < ts < _TS_LIMIT:
            raise ParseError(VENUE, f"ts out of range: {str(ts)[:40]}", symbol)
    else:
        ts = int(ts)
    seq = item.get("seqId")
    prev = item.get("prevSeqId")
    if seq is None:
        # 2022-era frames carry no seqId. The book still needs a position so that later
        # deltas are accepted; the receive-independent exchange ts serves, and prev None
        # tells Rules that no sequence check is possible (the checksum still applies).
        seq = ts
        prev = None
    elif type(seq) is not int or (prev is not None and type(prev) is not int):
        raise ParseError(VENUE, "seqId/prevSeqId are not integers", symbol)
    checksum = item.get("checksum")
    if checksum is not None:
        if type(checksum) is not int:
            raise ParseError(VENUE, "checksum is not an integer", symbol)
        if checksum == 0:
            # OKX now sends 0 on every books message: "absent", not a real CRC of 0.
            checksum = None
    return BookUpdate(VENUE, symbol, snapshot, bids, asks, seq, prev, None, checksum, ts, recv_ts)


def _funding(item: object, arg: dict, recv_ts: float) -> FundingUpdate:
    if type(item) is not dict:
        raise ParseError(VENUE, "funding-rate data element is not an object")
    symbol = item.get("instId") or arg.get("instId")
    if type(symbol) is not str:
        raise ParseError(VENUE, "funding-rate without instId")
    rate = decimal_field(VENUE, item, "fundingRate", symbol)
    funding_time = int_field(VENUE, item, "fundingTime", symbol)
    interval = DEFAULT_FUNDING_HOURS
    if item.get("nextFundingTime") not in (None, ""):
        next_time = int_field(VENUE, item, "nextFundingTime", symbol)
        if next_time > funding_time:
            interval = (next_time - funding_time) / _MS_PER_HOUR
    ts = int_field(VENUE, item, "ts", symbol)
    return FundingUpdate(VENUE, symbol, rate, interval, funding_time, None, ts, recv_ts)


class Rules:
    """OKX integrity: prevSeqId must equal the last seqId; CRC32 over the top 25 levels."""

    def check_sequence(self, book: L2Book, update: BookUpdate) -> str:
        prev = update.prev_seq
        if prev is None or prev == book.seq:
            # prev == last seq also covers the keep-alive (prev == seq) and the
            # post-maintenance reset (seq < prev) cases of the docs.
            return APPLY
        return f"okx seqId gap: prevSeqId {prev} != last seqId {book.seq}"

    def verify_checksum(self, book: L2Book, checksum: int) -> bool:
        return _verify_checksum(book, checksum)


def _verify_checksum(book: L2Book, checksum: int) -> bool:
    """True when the CRC32 of the book's top 25 levels, as sent, equals the venue's checksum."""
    if not book.keep_raw:
        # The CRC is over the strings as sent; a book without them cannot match.
        return crc32_signed(checksum_string(book)) == checksum
    if _crc is not None:  # the same string and CRC, built in C (perpbot/venues/okx/_books.c)
        return _crc(book.bid_frags, book.ask_frags, CHECKSUM_DEPTH) == checksum
    return _verify_checksum_py(book, checksum)
