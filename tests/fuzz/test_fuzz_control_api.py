"""The control API fuzzed by schemathesis from its own OpenAPI document, against the running bot
(App + simulator + trading engine on loopback): no 5xx, and nothing changes without the token."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import requests
import schemathesis
from hypothesis import given
from hypothesis import strategies as st
from schemathesis import GenerationMode

from perpbot.reliability.live import LiveBot

from fuzz_mutations import fuzz_settings

TOKEN = "fuzz-token-0b1d2e3f4a5c6d7e"


class BotThread:
    """The whole bot in its own thread and event loop, so the synchronous fuzzer can call it over TCP."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.ready = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.base = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="bot-under-fuzz", daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported to the test thread
            self.error = exc
        finally:
            self.ready.set()
            self.done.set()

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with LiveBot(self.workdir, seed=11, api_token=TOKEN) as bot:
            self.live = bot
            self.base = f"http://127.0.0.1:{bot.app.control.port}"
            self.ready.set()
            await self._stop.wait()

    def __enter__(self) -> "BotThread":
        self._thread.start()
        assert self.ready.wait(90), "bot did not start"
        if self.error is not None:
            raise self.error
        return self

    def __exit__(self, *exc) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        assert self.done.wait(60), "bot did not stop"


def _state(http: requests.Session, base: str) -> dict:
    out = {}
    for path in ("/api/trading/state", "/api/positions", "/api/orders/active"):
        resp = http.get(base + path, timeout=10)
        assert resp.status_code == 200, (path, resp.status_code, resp.text)
        out[path] = resp.json()
    out["/api/trading/state"] = {k: out["/api/trading/state"][k] for k in ("state", "reason", "open_trades")}
    # Marks and PnL move with the market; what an unauthenticated caller could change is sizes.
    out["/api/positions"] = sorted((p["venue"], p["symbol"], p["side"], p["size"]) for p in out["/api/positions"])
    return out


def _settle(http: requests.Session, base: str) -> dict:
    """Pause (with the token), then wait until no order is left working (a paused bot keeps its
    open trades: their positions must then stay exactly as they are)."""
    resp = http.post(base + "/api/trading/pause", json={"reason": "fuzz"}, timeout=10,
                     headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 200, resp.text
    deadline = time.monotonic() + 30
    while True:
        state = _state(http, base)
        if not state["/api/orders/active"]:
            return state
        assert time.monotonic() < deadline, f"bot did not settle after pause: {state}"
        time.sleep(0.2)  # polling the bot's own API for a condition, with a deadline


def test_schemathesis_fuzz_of_the_control_api_finds_no_5xx_and_changes_nothing_without_the_token(tmp_path):
    with BotThread(tmp_path) as bot, requests.Session() as http:
        http.trust_env = False  # loopback only, never a proxy
        document = http.get(bot.base + "/api/openapi.json", timeout=10).json()
        schema = schemathesis.openapi.from_dict(document)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert {op.path for op in operations} >= {"/api/trading/pause", "/api/positions/close-all", "/api/books/{venue}/{symbol}"}
        before = _settle(http, bot.base)
        statuses: dict[tuple[str, str], set[int]] = {}
        strategy = st.one_of(schema.as_strategy(GenerationMode.POSITIVE), schema.as_strategy(GenerationMode.NEGATIVE))

        # Long mode: 10x (3,000 requests against the live bot); the 100x of the parser tests
        # would spend half an hour on HTTP round trips, not on new inputs.
        @fuzz_settings(300, long_factor=10)
        @given(case=strategy)
        def fuzz(case):
            headers = dict(case.headers or {})
            headers.pop("Authorization", None)  # never the real token; fuzzed junk tokens stay
            case.headers = headers
            resp = case.call(base_url=bot.base, session=http, timeout=15)
            statuses.setdefault((case.method, case.operation.path), set()).add(resp.status_code)
            detail = f"{case.method} {case.formatted_path} {case.query} -> {resp.status_code} {resp.text[:300]}"
            assert resp.status_code < 500 or (resp.status_code == 503 and case.operation.path == "/health/ready"), detail
            if case.method == "POST":
                # Never done without the token: refused (malformed, missing, wrong token; a foreign Origin;
                # a body that is not JSON; a bad Idempotency-Key) or not a route at all.
                assert resp.status_code in (400, 401, 403, 404, 405, 413, 415, 422), detail
            if resp.status_code >= 400:
                assert "error" in resp.json(), detail  # JSON errors, never an HTML page

        fuzz()
        after = _state(http, bot.base)
        assert after == before, "state changed during the unauthenticated fuzz run"
        assert after["/api/trading/state"]["state"] == "PAUSED"
        posts = [k for k in statuses if k[0] == "POST"]
        assert len(posts) >= 3, statuses  # the protected routes really were exercised
