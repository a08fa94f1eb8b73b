"""Simulated Hyperliquid order entry on the public /ws: `post` requests carrying a signed action, on any
connection (Hyperliquid has no login; the signature is the authentication).

Request {"method": "post", "id": <number>, "request": {"type": "action", "payload": {action, nonce,
signature, vaultAddress?, expiresAfter?}}}; answer {"channel": "post", "data": {"id", "response":
{"type": "action", "payload": <what POST /exchange answers>}}}, or {"type": "error", "payload":
"<HTTP status and description>"} for a request the server refuses before the action runs (the docs'
words: "a String ... mirroring the HTTP status code and description that would have been returned if
the request were sent through HTTP"): a body that does not deserialize ("422 Failed to deserialize the
JSON body into the target type"), the rate-limit fault ("429 Too Many Requests", no Retry-After, as
over HTTP; "418 I'm a Teapot" for the `ip_ban` fault), maintenance ("503 Service Unavailable").

Authentication as the venue does it: the signer is recovered from the L1 signature over the action,
nonce and vault (perpbot.venues.hyperliquid.signing's hash, i.e. the official SDK's) and must be the
simulated wallet; any other signer is "User or API Wallet <address> does not exist." (an `err` action
answer, venue_errors.json). The simulator stands in for mainnet and testnet alike, so a phantom agent of
either source ("a" or "b") is accepted. An order naming a builder the account never approved is
"Builder fee has not been approved.", as over REST; an action whose nonce was already used on the socket
is "Invalid nonce: duplicate nonce <n>" (the text users of the live venue report). Orders, cancels and fills are the REST API's own
(perpbot.sim.trading.hyperliquid on the venue's SimExchange), so the private stream pushes the fills;
placements run under the WebSocket order faults (perpbot.sim.private.order_faults.ws_order).
Info requests over the socket are not served (the bot makes none): they get an error answer that says so.
"""

from __future__ import annotations

import heapq
from decimal import Decimal
from http import HTTPStatus
from typing import Any

import msgspec
import orjson
from aiohttp import web
from coincurve import PublicKey

from perpbot.sim.private.order_faults import ws_order
from perpbot.sim.trading.clients import SIM_WALLET
from perpbot.sim.trading.hyperliquid import HyperliquidApi
from perpbot.sim.trading.hyperliquid_wire import BUILDER_NOT_APPROVED, DESERIALIZE_ERROR, ORDER_ERRORS, _BadBody
from perpbot.sim.trading.matching import SimReject
from perpbot.sim.ws_common import Session, dumps
from perpbot.venues.hyperliquid.signing import action_hash, keccak256, l1_digest

BAD_BODY = f"422 {DESERIALIZE_ERROR}"
RATE_LIMITED = "429 Too Many Requests"
UNAVAILABLE = "503 Service Unavailable"
# Signed actions the REST handler runs synchronously (their answers are POST /exchange's, verbatim).
CANCELS = ("cancel", "cancelByCloid")
NONCES_KEPT = 100


def http_text(status: int) -> str:
    """'<status> <reason phrase>', the form of the docs' error strings ("429 Too Many Requests")."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def signer_of(payload: dict[str, Any], is_mainnet: bool) -> str | None:
    """The address that signed the L1 action in `payload` (lower-case 0x-hex), None when unreadable."""
    signature = payload.get("signature")
    try:
        assert isinstance(signature, dict)
        r, s, v = int(signature["r"], 16), int(signature["s"], 16), int(signature["v"])
        if v not in (27, 28):
            return None
        digest = l1_digest(action_hash(payload["action"], payload.get("vaultAddress"), payload["nonce"],
                                       payload.get("expiresAfter")), is_mainnet)
        raw = r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v - 27])
        public = PublicKey.from_signature_and_message(raw, digest, hasher=None)
    except (AssertionError, KeyError, TypeError, ValueError, OverflowError, msgspec.MsgspecError):
        return None
    return "0x" + keccak256(public.format(compressed=False)[1:])[-20:].hex()


class HyperliquidOrders:
    """The `post` requests of the simulated Hyperliquid socket, over the REST API's state."""

    def __init__(self, api: HyperliquidApi, wallet: str = SIM_WALLET) -> None:
        self.api = api
        self.sim = api.sim
        self.wallet = wallet.lower()
        self.posts = 0  # requests answered or dropped (tests and stats)
        self._nonces: list[int] = []  # the highest nonces used on the socket (a min-heap) ...
        self._nonce_set: set[int] = set()  # ... and the same as a set

    def fresh(self, nonce: int) -> bool:
        """False for a nonce already used (a replayed action); remembers the NONCES_KEPT highest, as the venue
        keeps the 100 highest per signer (its rule for a nonce below all of them is not modelled)."""
        if nonce in self._nonce_set:
            return False
        heapq.heappush(self._nonces, nonce)
        self._nonce_set.add(nonce)
        if len(self._nonces) > NONCES_KEPT:
            self._nonce_set.discard(heapq.heappop(self._nonces))
        return True

    # -- the socket's side -------------------------------------------------------------------
    def on_post(self, session: Session, request: dict[str, Any]) -> None:
        """One {"method": "post"} request of `session` (the caller checked the method)."""
        req_id = request.get("id")
        body = request.get("request")
        if isinstance(req_id, bool) or not isinstance(req_id, int) or not isinstance(body, dict):
            # The id is mandatory: without one the answer could not name the request.
            session.enqueue(dumps({"channel": "error",
                                   "data": f"Error parsing JSON into valid websocket request: {dumps(request)}"}))
            return
        self.posts += 1
        if body.get("type") == "info":
            self.refuse(session, req_id, "400 info requests over the WebSocket are not served by the simulator")
            return
        payload = body.get("payload")
        action = payload.get("action") if isinstance(payload, dict) else None
        if body.get("type") != "action" or not isinstance(payload, dict) or not isinstance(action, dict) \
                or not isinstance(action.get("type"), str) or isinstance(payload.get("nonce"), bool) \
                or not isinstance(payload.get("nonce"), int):
            self.refuse(session, req_id, BAD_BODY)
            return
        signer = signer_of(payload, True)
        if signer is None:
            self.refuse(session, req_id, BAD_BODY)
            return
        if signer != self.wallet and signer_of(payload, False) != self.wallet:
            self.answer(session, req_id, {"status": "err", "response": f"User or API Wallet {signer} does not exist."})
            return
        if not self.fresh(payload["nonce"]):
            self.answer(session, req_id, {"status": "err",
                                          "response": f"Invalid nonce: duplicate nonce {payload['nonce']}"})
            return
        kind = action["type"]
        if kind == "order":
            self.order(session, req_id, action)
        elif kind in CANCELS:
            self.relay(session, req_id, self.api.cancel(action))
        elif kind == "updateLeverage":
            self.relay(session, req_id, self.api.update_leverage(action))
        else:
            self.answer(session, req_id, {"status": "err", "response": f"Unsupported action type {kind}"})

    # -- orders --------------------------------------------------------------------------------
    def order(self, session: Session, req_id: int, action: dict[str, Any]) -> None:
        builder = action.get("builder")
        if builder is not None:
            address = builder.get("b") if isinstance(builder, dict) else None
            if not isinstance(address, str) or address.lower() not in self.api.approved_builders:
                self.answer(session, req_id, {"status": "err", "response": BUILDER_NOT_APPROVED})
                return
        orders = action.get("orders")
        if not isinstance(orders, list) or not orders or not all(isinstance(o, dict) for o in orders):
            self.refuse(session, req_id, BAD_BODY)
            return
        asset = orders[0].get("a")
        try:
            coin: str | None = self.api.coin_of(asset)
        except SimReject:
            coin = None

        def place(ratio: Decimal | None) -> list[Any]:
            try:
                return [self.api.place_one(o, ratio) for o in orders]
            except _BadBody as exc:
                raise SimReject("bad_body", str(exc)) from exc

        outcome = ws_order(self.sim, coin, place)
        if outcome.action == "drop":
            session.close(abort=True)
        elif outcome.action == "silent":
            return
        elif outcome.action == "rate_limited":  # 429 (rate_limit) or 418 (ip_ban): no Retry-After either way
            self.refuse(session, req_id, RATE_LIMITED if outcome.status == 429 else http_text(outcome.status))
        elif outcome.action == "maintenance":
            self.refuse(session, req_id, UNAVAILABLE)
        elif outcome.error is not None and outcome.error.reason == "bad_body":
            self.refuse(session, req_id, BAD_BODY)
        elif outcome.error is not None:
            # A fault's refusal, in the venue's per-order shape (the REST gate's HyperliquidWire texts).
            text = ORDER_ERRORS.get(outcome.error.reason, ORDER_ERRORS["reject"]).format(bbo="")
            self.answer(session, req_id, {"status": "ok", "response": {"type": "order", "data": {
                "statuses": [{"error": f"{text} asset={asset}"} for _ in orders]}}})
        else:
            self.answer(session, req_id, {"status": "ok", "response": {"type": "order",
                                                                        "data": {"statuses": outcome.answer}}})

    # -- answers ----------------------------------------------------------------------------------
    @staticmethod
    def answer(session: Session, req_id: int, payload: Any) -> None:
        session.enqueue(dumps({"channel": "post", "data": {"id": req_id, "response": {"type": "action",
                                                                                       "payload": payload}}}))

    @staticmethod
    def refuse(session: Session, req_id: int, text: str) -> None:
        session.enqueue(dumps({"channel": "post", "data": {"id": req_id, "response": {"type": "error",
                                                                                       "payload": text}}}))

    def relay(self, session: Session, req_id: int, response: web.Response) -> None:
        """An answer of the REST handler, as the socket carries it."""
        if response.status != 200:
            self.refuse(session, req_id, BAD_BODY if response.status == 422 else http_text(response.status))
            return
        body = response.body
        self.answer(session, req_id, orjson.loads(body if isinstance(body, (bytes, str)) else b"null"))


def mount_hyperliquid_orders(api: HyperliquidApi, feed: Any) -> HyperliquidOrders:
    """Serve `post` requests on the public feed's /ws (perpbot.sim.ws_hyperliquid hands them over)."""
    orders = HyperliquidOrders(api)
    feed.posts = orders
    return orders
