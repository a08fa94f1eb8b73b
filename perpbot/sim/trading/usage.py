"""Usage headers of the simulated venues' REST answers: what the live venues tell a client of its limits.

Binance USD-M puts the IP's request weight of the current calendar minute on every answer
(`X-MBX-USED-WEIGHT-1m`) and, on order requests, the account's order counts of the current 10 s and
minute (`X-MBX-ORDER-COUNT-10s`, `X-MBX-ORDER-COUNT-1m`). Bybit v5 answers every request with what is
left of that endpoint's per-second allowance (`X-Bapi-Limit-Status`), the allowance (`X-Bapi-Limit`) and
when it resets (`X-Bapi-Limit-Reset-Timestamp`, epoch ms). OKX and Hyperliquid send no usage headers.

The simulator counts and reports; it does not refuse on these counts (its rate-limit refusals are the
fault board's rate_limit / ip_ban faults). Weights and allowances are the venues' documented defaults.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Binance USD-M request weights (IP, per minute) of the endpoints the simulator serves; others weigh 1.
BINANCE_WEIGHTS = {
    ("POST", "/fapi/v1/order"): 0, ("GET", "/fapi/v1/userTrades"): 5, ("GET", "/fapi/v2/positionRisk"): 5,
    ("GET", "/fapi/v3/positionRisk"): 5, ("GET", "/fapi/v2/balance"): 5, ("GET", "/fapi/v3/balance"): 5,
    ("GET", "/fapi/v2/account"): 5, ("GET", "/fapi/v3/account"): 5, ("GET", "/fapi/v1/income"): 30,
}
BINANCE_ORDER = ("POST", "/fapi/v1/order")
# Bybit v5 per-UID allowances per second of the endpoints the simulator serves; others 50.
BYBIT_LIMITS = {"/v5/order/create": 10, "/v5/order/cancel": 10, "/v5/position/set-leverage": 10,
                "/v5/account/transaction-log": 30}


class BinanceUsage:
    """The IP's weight per calendar minute and the account's orders per 10 s and per minute."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._counts: dict[str, tuple[float, int]] = {}  # window -> (interval start, count)

    def _add(self, window: str, period: float, amount: int, now: float) -> int:
        start = math.floor(now / period) * period
        seen_start, count = self._counts.get(window, (start, 0))
        count = (count if seen_start == start else 0) + amount
        self._counts[window] = (start, count)
        return count

    def headers(self, method: str, path: str) -> dict[str, str]:
        if not path.startswith("/fapi/"):
            return {}
        now = self.clock()
        key = (method, path)
        headers = {"X-MBX-USED-WEIGHT-1m": str(self._add("weight", 60.0, BINANCE_WEIGHTS.get(key, 1), now))}
        if key == BINANCE_ORDER:
            headers["X-MBX-ORDER-COUNT-10s"] = str(self._add("orders_10s", 10.0, 1, now))
            headers["X-MBX-ORDER-COUNT-1m"] = str(self._add("orders_1m", 60.0, 1, now))
        return headers


class BybitUsage:
    """Each endpoint's requests in the rolling second."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._calls: dict[str, deque[float]] = {}

    def headers(self, method: str, path: str) -> dict[str, str]:
        if not path.startswith("/v5/") or path.startswith("/v5/market/"):
            return {}  # market data is limited per IP only, without these headers
        now = self.clock()
        calls = self._calls.setdefault(path, deque())
        while calls and calls[0] <= now - 1.0:
            calls.popleft()
        calls.append(now)
        limit = BYBIT_LIMITS.get(path, 50)
        return {"X-Bapi-Limit-Status": str(max(0, limit - len(calls))), "X-Bapi-Limit": str(limit),
                "X-Bapi-Limit-Reset-Timestamp": str(int((calls[0] + 1.0) * 1000))}


USAGE: dict[str, Callable[[Callable[[], float]], Any]] = {"binance": BinanceUsage, "bybit": BybitUsage}


def usage_middleware(venue: str, clock: Callable[[], float] | None = None) -> Any:
    """An aiohttp middleware adding `venue`'s usage headers to every answer (None for a venue without them)."""
    factory = USAGE.get(venue)
    if factory is None:
        return None
    usage = factory(clock or time.time)

    @web.middleware
    async def add_usage_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if not response.prepared:
            response.headers.update(usage.headers(request.method, request.path))
        return response

    return add_usage_headers
