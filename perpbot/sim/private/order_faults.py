"""Faults of the simulated venues' order-entry WebSockets, shared by the four venues' WS order handlers.

`ws_order(sim, symbol, place)` runs one WebSocket placement under the venue's fault board the way
perpbot.sim.trading.gate.FaultGate runs a REST one, and says what the handler must do with the socket:

* `ws_order_drop` — the connection is cut (TCP abort, no close frame) when the order arrives; with
  params {"placed": true} (the default) the order IS placed first, so the client cannot know; with
  {"placed": false} it never reached the book.
* `ws_answer_lost` — the order is placed and its answer is never sent; the connection stays open.
* `rate_limit` / `ip_ban` (the REST fault kinds, on orders) — the venue's rate-limit answer (429, or 418
  for a ban) with params.retry_after_s, nothing placed; every order until then (REST or WebSocket) gets
  the same answer and is counted as retry_after_ignored.
* `maintenance`, `reject`, `insufficient_margin`, `partial_fill` — as over REST; `rest_5xx` is the venue's
  busy / unavailable answer (nothing placed); `timeout` places the order and never answers (unless
  params.placed is false); `lost_response` places it and cuts the socket (or, with params.mode other than
  "drop", never answers). So every trading fault of the hostile matrix reaches an order on either path.

The handler renders `Outcome.answer` (or the SimReject raised by `place`) in its venue's shape.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from perpbot.sim.trading.exchange import SimExchange
from perpbot.sim.trading.matching import SimReject

Action = Literal["answer", "drop", "silent", "rate_limited", "maintenance"]


@dataclass(slots=True)
class Outcome:
    action: Action
    answer: Any = None  # what `place` returned (when it ran)
    error: SimReject | None = None  # what `place` raised
    retry_after_s: int = 1
    status: int = 429


def _take(sim: SimExchange, kind: str, symbol: str | None) -> Any:
    return sim.faults.take(sim.venue, kind, symbol)


def _run(place: Callable[[Decimal | None], Any], ratio: Decimal | None) -> tuple[Any, SimReject | None]:
    try:
        return place(ratio), None
    except SimReject as reject:
        return None, reject


def ws_order(sim: SimExchange, symbol: str | None, place: Callable[[Decimal | None], Any]) -> Outcome:
    """Run `place(fill_ratio)` (which returns the venue's answer data or raises SimReject) under the faults."""
    if sim.faults.active(sim.venue, "maintenance", symbol) and _take(sim, "maintenance", symbol):
        return Outcome("maintenance")
    stopped = sim.faults.order_stopped(sim.venue)  # inside a Retry-After this venue gave (REST or here)
    if stopped is not None:
        return Outcome("rate_limited", retry_after_s=stopped[0], status=stopped[1])
    for kind, status in (("rate_limit", 429), ("ip_ban", 418)):
        fault = _take(sim, kind, symbol)
        if fault:
            outcome = Outcome("rate_limited", retry_after_s=int(fault.params.get("retry_after_s", 1)),
                              status=int(fault.params.get("status", status)))
            sim.faults.stop_orders(sim.venue, outcome.status, outcome.retry_after_s)
            return outcome
    server_error = sim.faults.active(sim.venue, "rest_5xx", symbol)
    if server_error is not None and server_error.params.get("on") != "read" and _take(sim, "rest_5xx", symbol):
        # The venue's server error before the order was taken: answered as its busy / unavailable code.
        return Outcome("maintenance")
    if _take(sim, "reject", symbol):
        return Outcome("answer", error=SimReject("reject", "order rejected by the venue"))
    if _take(sim, "insufficient_margin", symbol):
        return Outcome("answer", error=SimReject("insufficient_margin", "insufficient margin"))
    ratio = None
    fault = _take(sim, "partial_fill", symbol)
    if fault:
        ratio = Decimal(str(fault.params.get("ratio", "0.5")))
    # The venue's timeout and lost reply reach a WebSocket order too: placed (timeout: unless params.placed is
    # false), then no answer on a socket that stays up (timeout, lost_response "status" mode) or the socket cut
    # (lost_response "drop" mode, its default).
    fault = _take(sim, "timeout", symbol)
    if fault:
        if fault.params.get("placed", True):
            _run(place, ratio)
        return Outcome("silent")
    fault = _take(sim, "lost_response", symbol)
    if fault:
        _run(place, ratio)
        return Outcome("drop" if fault.params.get("mode", "drop") == "drop" else "silent")
    fault = _take(sim, "ws_order_drop", symbol)
    if fault:
        if fault.params.get("placed", True):
            _run(place, ratio)
        return Outcome("drop")
    if _take(sim, "ws_answer_lost", symbol):
        _run(place, ratio)
        return Outcome("silent")
    answer, error = _run(place, ratio)
    return Outcome("answer", answer=answer, error=error)
