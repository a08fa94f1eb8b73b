"""The request budget per venue and account: counted before each request, corrected by the venues' own answers.

Nothing here sleeps and nothing does I/O: callers ask, charge and report. The venues' limits come
declared as data (perpbot.execution.rate_limits): windows (a weight or a count per period, rolling or per
calendar interval), what each endpoint costs in which window, and which response headers carry the
venue's own count.

The API, for every order path (the ccxt REST client, a WebSocket order channel):

- ``try_order(venue, count=1, reserve=0, now=None) -> Refusal | None`` — may `count` orders leave now?
  A Refusal (rule ``rate_limited`` while the venue's Retry-After runs, ``rate_budget`` when an order window
  would go over its limit while keeping ``reserve`` more orders for repairs) or None. It charges nothing:
  the risk gate asks, the order path charges when the order leaves. An order is never delayed.
- ``charge(venue, endpoint, now=None)`` — a request is leaving: count its cost in every window it uses.
  ``endpoint`` is a logical name (``ORDER`` for a new order over REST or WebSocket, ``CANCEL``, or a read's
  name from the venue's table); ``endpoint_of(venue, method, path, body)`` names a REST request.
- ``read_wait(venue, endpoint, now=None) -> float`` — seconds a read should wait before leaving (0: go now).
  Reads keep ``read_headroom_percent`` of every window that orders also use free for orders, and wait out
  a Retry-After; the caller decides whether to wait or give up (reads may wait, orders never).
- ``observe(venue, status, headers, endpoint=None, now=None)`` — a response came back: the venue's usage
  headers replace the estimate (Binance ``X-MBX-USED-WEIGHT-1m``, ``X-MBX-ORDER-COUNT-10s/1m``; Bybit
  ``X-Bapi-Limit-Status`` / ``X-Bapi-Limit`` / ``X-Bapi-Limit-Reset-Timestamp`` for that endpoint), and a
  429 / 418 (or the venue's ban status) stops the venue for its Retry-After (or the venue's default) and
  marks the endpoint's windows full until then: the budget learns the venue counted more than we did.
- ``observe_order(venue, status, headers)`` — ``observe`` for an order channel's answer (endpoint ``ORDER``).
- ``snapshot(now=None) -> BudgetSnapshot`` — a typed view for metrics and operators.

Times are unix seconds (the risk context's clock), so calendar-aligned windows (Binance counts per
calendar minute) and the venues' reset timestamps line up.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Literal

import orjson

from perpbot.core.decisions import Refusal

ORDER = "order"
CANCEL = "cancel"
RATE_LIMITED = "rate_limited"  # refusal rule: the venue said stop (429 / 418 / ban) and its time has not run out
RATE_BUDGET = "rate_budget"  # refusal rule: the order would take a window over the venue's limit
EndpointKind = Literal["order", "cancel", "read"]
ALWAYS_STOP = (429, 418)  # too many requests / banned: a stop on any venue, whatever its table adds


# -- the declared limits -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class WindowSpec:
    """One of the venue's limits: `limit` weight per `period_s`, rolling or per calendar interval
    (`aligned`); `used_header` is the response header with the venue's own count for it."""

    name: str
    limit: int
    period_s: float
    aligned: bool = False
    used_header: str | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A request kind and its cost per window; `header_window` is the window that per-endpoint
    usage headers (Bybit's) describe."""

    name: str
    costs: tuple[tuple[str, int], ...]
    kind: EndpointKind = "read"
    header_window: str | None = None


@dataclass(frozen=True, slots=True)
class BodyRoute:
    """Endpoints told apart by a field of the JSON body (Hyperliquid: /info `type`, /exchange `action.type`)."""

    field: tuple[str, ...]
    endpoints: Mapping[str, str]
    default: str


@dataclass(frozen=True, slots=True)
class RemainingHeaders:
    """Per-endpoint headers giving what is left, the limit and when it resets (epoch ms)."""

    remaining: str
    limit: str
    reset_ms: str


@dataclass(frozen=True, slots=True)
class VenueLimits:
    """A venue's limits as documented (`source`), its endpoints and how REST requests map to them.

    `stop_statuses`: HTTP statuses that mean "stop now" (429 and 418 always do), with the block in
    seconds when the answer carries no Retry-After (None or not listed: the budget's default)."""

    venue: str
    windows: tuple[WindowSpec, ...]
    endpoints: tuple[Endpoint, ...]
    routes: Mapping[tuple[str, str], str | BodyRoute]
    stop_statuses: Mapping[int, float | None]
    remaining_headers: RemainingHeaders | None = None
    default_endpoint: str | None = None
    source: str = ""
    # False where a stop answering an order or cancel is the account's action allowance, not the IP's
    # (Hyperliquid's address limits): reads go on meanwhile.
    order_stops_reads: bool = True


# -- the typed view --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class WindowUsage:
    name: str
    used: int
    limit: int
    period_s: float


@dataclass(frozen=True, slots=True)
class VenueBudget:
    venue: str
    windows: tuple[WindowUsage, ...]
    blocked_for_s: float  # Retry-After still running (0 when free)
    block_reason: str | None
    stop_responses: Mapping[int, int]  # 429 / 418 / ban answers seen, by status
    reads_deferred: int  # reads told to wait


@dataclass(frozen=True, slots=True)
class BudgetSnapshot:
    venues: tuple[VenueBudget, ...]

    def venue(self, name: str) -> VenueBudget | None:
        return next((v for v in self.venues if v.venue == name), None)


# -- the state -------------------------------------------------------------------------------------
class _Window:
    """Usage of one window: our own charges, and a floor the venue told us (its count, valid until)."""

    __slots__ = ("spec", "limit", "events", "total", "start", "venue_used", "venue_until")

    def __init__(self, spec: WindowSpec) -> None:
        self.spec = spec
        self.limit = spec.limit
        self.events: deque[tuple[float, int]] = deque()  # rolling: (time, cost)
        self.total = 0
        self.start = -math.inf  # aligned: the current interval's start
        self.venue_used = 0
        self.venue_until = -math.inf

    def _roll(self, now: float) -> None:
        period = self.spec.period_s
        if self.spec.aligned:
            start = math.floor(now / period) * period
            if start > self.start:
                self.start, self.total = start, 0
            return
        horizon = now - period
        events = self.events
        while events and events[0][0] <= horizon:
            self.total -= events.popleft()[1]

    def used(self, now: float) -> int:
        self._roll(now)
        return max(self.total, self.venue_used) if now < self.venue_until else self.total

    def add(self, cost: int, now: float) -> None:
        self._roll(now)
        self.total += cost
        if now < self.venue_until:
            self.venue_used += cost  # on top of what the venue last counted
        if not self.spec.aligned:
            self.events.append((now, cost))

    def learn(self, used: int, until: float, now: float) -> None:
        """The venue's own count, valid until `until`: a floor under ours from now on (it includes every
        other client of the same account or IP); our charges above it are dropped, oldest first."""
        self._roll(now)
        events = self.events
        while self.total > used and events:
            self.total -= events.popleft()[1]
        self.total = min(self.total, used)
        self.venue_used, self.venue_until = used, until

    def end(self, now: float) -> float:
        """When the current usage is all gone at the latest."""
        self._roll(now)
        if self.spec.aligned:
            return self.start + self.spec.period_s
        return (self.events[-1][0] if self.events else now) + self.spec.period_s

    def wait_for(self, cost: int, cap: int, now: float) -> float:
        """Seconds until `cost` more fits under `cap` (0: it fits now)."""
        used = self.used(now)
        if used + cost <= cap:
            return 0.0
        waits = []
        if now < self.venue_until and self.venue_used + cost > cap:
            waits.append(self.venue_until - now)
        if self.total + cost > cap:
            if self.spec.aligned:
                waits.append(self.start + self.spec.period_s - now)
            else:
                freed, need = 0, self.total + cost - cap
                for stamp, charged in self.events:
                    freed += charged
                    if freed >= need:
                        waits.append(stamp + self.spec.period_s - now)
                        break
                else:
                    waits.append(self.spec.period_s)
        return max(max(waits, default=0.0), 1e-3)


@dataclass(slots=True)
class _Venue:
    limits: VenueLimits
    windows: dict[str, _Window]
    endpoints: dict[str, Endpoint]
    order_windows: frozenset[str]  # windows new orders or cancels use: reads keep headroom there
    blocked_until: float = -math.inf  # orders and cancels
    reads_blocked_until: float = -math.inf
    block_reason: str | None = None
    stop_responses: Counter[int] = field(default_factory=Counter)
    reads_deferred: int = 0


class RateBudget:
    """Per venue (one account per venue): windows, charges, the venue's counts and Retry-After blocks."""

    def __init__(self, limits: Mapping[str, VenueLimits], *, read_headroom_percent: float = 20.0,
                 default_retry_after_s: float = 1.0, clock: Callable[[], float] = time.time) -> None:
        if not 0 <= read_headroom_percent < 100:
            raise ValueError("read_headroom_percent must be in [0, 100)")
        self.read_headroom_percent = read_headroom_percent
        self.default_retry_after_s = default_retry_after_s
        self.clock = clock
        self._venues: dict[str, _Venue] = {}
        for name, venue in limits.items():
            endpoints = {e.name: e for e in venue.endpoints}
            windows = {w.name: _Window(w) for w in venue.windows}
            for endpoint in venue.endpoints:
                unknown = [w for w, _ in endpoint.costs if w not in windows]
                if unknown:
                    raise ValueError(f"{name} endpoint {endpoint.name} costs unknown windows {unknown}")
            order_windows = frozenset(w for e in venue.endpoints if e.kind != "read" for w, cost in e.costs if cost)
            self._venues[name] = _Venue(venue, windows, endpoints, order_windows)

    def venues(self) -> tuple[str, ...]:
        return tuple(self._venues)

    def _now(self, now: float | None) -> float:
        return self.clock() if now is None else now

    # -- orders -------------------------------------------------------------------------------------
    def try_order(self, venue: str, count: int = 1, reserve: int = 0, now: float | None = None) -> Refusal | None:
        """Whether `count` new orders may leave now on `venue`, keeping `reserve` more possible (the risk
        gate keeps room for the repairs an entry may need). Charges nothing."""
        state = self._venues.get(venue)
        if state is None:
            return None
        now = self._now(now)
        if now < state.blocked_until:
            return Refusal(RATE_LIMITED, f"{venue}: {state.block_reason}; "
                                         f"{state.blocked_until - now:.1f}s of its Retry-After left")
        endpoint = state.endpoints.get(ORDER)
        if endpoint is None:
            return None
        for window_name, cost in endpoint.costs:
            if not cost:
                continue
            window = state.windows[window_name]
            used = window.used(now)
            if used + cost * (count + reserve) > window.limit:
                kept = f", keeping {reserve} for repairs" if reserve else ""
                return Refusal(RATE_BUDGET, f"{venue} {window_name}: {used} used + {cost * count} > "
                                            f"{window.limit} per {window.spec.period_s:g}s{kept}")
        return None

    # -- every request --------------------------------------------------------------------------------
    def charge(self, venue: str, endpoint: str, now: float | None = None) -> None:
        """A request of `endpoint` is leaving `venue`: its cost goes into every window it uses."""
        state = self._venues.get(venue)
        found = state.endpoints.get(endpoint) if state is not None else None
        if state is None or found is None:
            return
        now = self._now(now)
        for window_name, cost in found.costs:
            if cost:
                state.windows[window_name].add(cost, now)

    def read_wait(self, venue: str, endpoint: str, now: float | None = None) -> float:
        """Seconds this read should wait (0: it may leave now). Counts a deferral when it is not 0."""
        state = self._venues.get(venue)
        if state is None:
            return 0.0
        now = self._now(now)
        found = state.endpoints.get(endpoint)
        blocked_until = state.blocked_until if found is not None and found.kind != "read" \
            else state.reads_blocked_until
        wait = max(0.0, blocked_until - now)
        if found is not None:
            for window_name, cost in found.costs:
                if not cost:
                    continue
                window = state.windows[window_name]
                cap = window.limit
                if window_name in state.order_windows and found.kind == "read":
                    cap -= math.ceil(window.limit * self.read_headroom_percent / 100)
                wait = max(wait, window.wait_for(cost, max(cap, 0), now))
        if wait > 0:
            state.reads_deferred += 1
        return wait

    def endpoint_of(self, venue: str, method: str, path: str, body: str | bytes | None = None) -> str | None:
        """The logical endpoint of a REST request (None: not in the venue's table, not counted)."""
        state = self._venues.get(venue)
        if state is None:
            return None
        route = state.limits.routes.get((method.upper(), path))
        if isinstance(route, BodyRoute):
            value: object = _parsed(body)
            for key in route.field:
                value = value.get(key) if isinstance(value, dict) else None
            return route.endpoints.get(value, route.default) if isinstance(value, str) else route.default
        return route if route is not None else state.limits.default_endpoint

    def observe(self, venue: str, status: int, headers: Mapping[str, str], endpoint: str | None = None,
                now: float | None = None) -> None:
        """A response from `venue`: learn its usage headers; on a stop status, stop the venue for its
        Retry-After and hold the endpoint's windows full until then."""
        state = self._venues.get(venue)
        if state is None:
            return
        now = self._now(now)
        lowered = {key.lower(): value for key, value in headers.items()}
        for window in state.windows.values():
            header = window.spec.used_header
            value = _int(lowered.get(header.lower())) if header else None
            if value is not None:
                window.learn(value, window.end(now) if window.spec.aligned else now + window.spec.period_s, now)
        found = state.endpoints.get(endpoint) if endpoint is not None else None
        named = state.limits.remaining_headers
        if named is not None and found is not None and found.header_window is not None:
            remaining, limit = _int(lowered.get(named.remaining.lower())), _int(lowered.get(named.limit.lower()))
            reset_ms = _int(lowered.get(named.reset_ms.lower()))
            if remaining is not None and limit is not None and limit > 0:
                window = state.windows[found.header_window]
                window.limit = limit
                until = reset_ms / 1000 if reset_ms is not None and reset_ms / 1000 > now \
                    else now + window.spec.period_s
                window.learn(max(0, limit - remaining), until, now)
        if status in state.limits.stop_statuses or status in ALWAYS_STOP:
            self._stop(state, status, lowered, found, now)

    def observe_order(self, venue: str, status: int, headers: Mapping[str, str]) -> None:
        """`observe` for an order channel's answer (a WebSocket order socket): the endpoint is a new order."""
        self.observe(venue, status, headers, ORDER)

    def _stop(self, state: _Venue, status: int, headers: Mapping[str, str], endpoint: Endpoint | None,
              now: float) -> None:
        state.stop_responses[status] += 1
        retry_after = _retry_after(headers.get("retry-after"), now)
        source = "Retry-After"
        if retry_after is None:
            default = state.limits.stop_statuses.get(status)
            retry_after = self.default_retry_after_s if default is None else default
            source = "no Retry-After, default"
        until = now + retry_after
        if until > state.blocked_until:
            state.blocked_until = until
            state.block_reason = f"venue answered HTTP {status} ({source} {retry_after:g}s)"
        if endpoint is not None and endpoint.kind != "read" and not state.limits.order_stops_reads:
            return  # the account's action allowance: reads (and the windows they share) go on
        state.reads_blocked_until = max(state.reads_blocked_until, until)
        if endpoint is not None:
            for window_name, cost in endpoint.costs:
                if cost:
                    window = state.windows[window_name]
                    window.learn(window.limit, until, now)

    # -- the view ---------------------------------------------------------------------------------------
    def blocked_for(self, venue: str, now: float | None = None) -> float:
        state = self._venues.get(venue)
        return 0.0 if state is None else max(0.0, state.blocked_until - self._now(now))

    def snapshot(self, now: float | None = None) -> BudgetSnapshot:
        now = self._now(now)
        venues = []
        for name, state in self._venues.items():
            blocked = max(0.0, state.blocked_until - now)
            venues.append(VenueBudget(
                venue=name,
                windows=tuple(WindowUsage(w.spec.name, w.used(now), w.limit, w.spec.period_s)
                              for w in state.windows.values()),
                blocked_for_s=blocked, block_reason=state.block_reason if blocked else None,
                stop_responses=dict(state.stop_responses), reads_deferred=state.reads_deferred,
            ))
        return BudgetSnapshot(tuple(venues))


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def _retry_after(value: str | None, now: float) -> float | None:
    """Retry-After as seconds (RFC 9110: delay-seconds or an HTTP date); None when absent or unreadable."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError):
        return None


def _parsed(body: str | bytes | None) -> object:
    if not body:
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
