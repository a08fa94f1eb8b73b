"""Simulated OKX order entry on the private WebSocket (/ws/v5/private): the `order` and `cancel-order` ops.

Shapes as OKX documents them (no recorded frame exists: see perpbot.venues.okx.order_link): the
answer {"id", "op", "code", "msg", "data": [{"ordId", "clOrdId", "tag", "ts", "sCode", "sMsg"}],
"inTime", "outTime"}; a failed order code "1" with its sCode (the REST table's codes, through
perpbot.sim.trading.okx's error mapping); a logged-out request 60011; rate limit 50011 "Rate limit
reached. Please refer to API documentation and throttle requests accordingly."; maintenance 50001.
A cancel with ordId "" beside its clOrdId (what python-okx always sends) cancels by clOrdId, as
the live venue does. Faults: perpbot.sim.private.order_faults.
"""

from __future__ import annotations

import time
from typing import Any

from perpbot.sim.private.order_faults import ws_order
from perpbot.sim.trading.matching import SimReject
from perpbot.sim.trading.okx import ERROR_CODES, OkxApi
from perpbot.sim.ws_common import Session, dumps

OPS = ("order", "cancel-order")
RATE_LIMIT_MSG = "Rate limit reached. Please refer to API documentation and throttle requests accordingly."


def _micros() -> str:
    return str(int(time.time() * 1_000_000))


def answer(req_id: Any, op: str, data: list[dict[str, Any]], code: str = "0", msg: str = "") -> str:
    return dumps({"id": req_id, "op": op, "code": code, "msg": msg, "data": data, "inTime": _micros(),
                  "outTime": _micros()})


def handle(stream: Any, session: Session, op: str, req_id: Any, args: Any) -> None:
    """One `order` / `cancel-order` request of a logged-in session (`stream` is the OkxPrivate)."""
    if not session.state.get("private"):
        stream.error(session, "60011", "Please log in", req_id)
        return
    items = args if isinstance(args, list) else []
    if len(items) != 1 or not isinstance(items[0], dict):
        stream.error(session, "60012", f"Invalid request: {dumps(args)}", req_id)
        return
    item = items[0]
    if op == "order":
        _order(stream, session, req_id, item)
    else:
        _cancel(stream, session, req_id, item)


def _failed(req_id: Any, op: str, item: dict[str, Any], s_code: str, s_msg: str) -> str:
    data = [{"ordId": "", "clOrdId": str(item.get("clOrdId", "")), "tag": "", "ts": str(int(time.time() * 1000)),
             "sCode": s_code, "sMsg": s_msg}]
    return answer(req_id, op, data, code="1", msg="")


def _order(stream: Any, session: Session, req_id: Any, item: dict[str, Any]) -> None:
    api = OkxApi(stream.sim, None)  # type: ignore[arg-type]  # _place needs the exchange only, not the REST gate
    outcome = ws_order(stream.sim, item.get("instId"), lambda ratio: api._place(item, ratio))
    if outcome.action == "drop":
        session.close(abort=True)
        return
    if outcome.action == "silent":
        return
    if outcome.action == "rate_limited":
        session.enqueue(answer(req_id, "order", [], code="50011", msg=RATE_LIMIT_MSG))
        return
    if outcome.action == "maintenance":
        session.enqueue(answer(req_id, "order", [], code="50001", msg="Service temporarily unavailable. Please try again later."))
        return
    if outcome.error is not None:
        # The REST adapter's code table (reason -> sCode, sMsg): the same answers on both paths.
        s_code, s_msg = ERROR_CODES.get(outcome.error.reason, ("51000", outcome.error.message))
        session.enqueue(_failed(req_id, "order", item, s_code, s_msg))
        return
    placed = dict(outcome.answer)
    placed["sMsg"] = "Order placed"
    session.enqueue(answer(req_id, "order", [placed]))


def _cancel(stream: Any, session: Session, req_id: Any, item: dict[str, Any]) -> None:
    order_id = item.get("ordId")
    client_id = item.get("clOrdId")
    try:
        order = stream.sim.cancel_order(item.get("instId"), order_id or None, client_id or None)
    except SimReject:
        session.enqueue(_failed(req_id, "cancel-order", item, "51400",
                                "Cancellation failed as the order has been filled, canceled or does not exist."))
        return
    data = [{"ordId": order.order_id, "clOrdId": order.client_id or "", "ts": str(order.updated_ms),
             "sCode": "0", "sMsg": ""}]
    session.enqueue(answer(req_id, "cancel-order", data))
