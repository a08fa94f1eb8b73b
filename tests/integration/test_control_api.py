"""Control API over a real loopback socket: auth, JSON errors, books, engine routes, OpenAPI, redaction.
The control plane's hardening (generated token, Origin/Host, scopes, idempotency, operations, audit)
is in tests/security/test_security_control_plane.py."""

from __future__ import annotations

import io
import logging
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from perpbot.book.store import BookStore
from perpbot.control.auth import read_or_create_token
from perpbot.control.server import ROUTES, ControlContext, ControlServer, build_app
from perpbot.settings import ConfigError, Settings
from perpbot.telemetry.logging import setup_logging, shutdown_logging
from perpbot.telemetry.metrics import Metrics

TOKEN = "t0ken-for-tests-9f8e"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class RecordingEngine:
    """A stand-in implementation of perpbot.core.ports.EngineCommands that records commands."""

    def __init__(self) -> None:
        self.paused_reason: str | None = None
        self.calls: list[str] = []
        self.fail = False

    async def pause(self, reason: str) -> dict[str, Any]:
        self.calls.append("pause")
        self.paused_reason = reason
        return {"state": "paused", "reason": reason}

    async def resume(self) -> dict[str, Any]:
        self.calls.append("resume")
        self.paused_reason = None
        return {"state": "running"}

    async def close_all(self) -> dict[str, Any]:
        self.calls.append("close_all")
        if self.fail:
            raise RuntimeError("engine exploded")
        return {"results": []}

    async def sync_positions(self) -> dict[str, Any]:
        self.calls.append("sync")
        return {"changed": []}

    async def sync_preview(self) -> dict[str, Any]:
        self.calls.append("sync_preview")
        return {"dry_run": True, "changed": [], "orders_to_settle": [], "errors": {}}

    def trading_state(self) -> dict[str, Any]:
        return {"state": "paused" if self.paused_reason else "running"}

    def positions(self) -> list[dict[str, Any]]:
        return [{"venue": "okx", "symbol": "BTC-USDT-SWAP", "size": Decimal("0.01")}]

    def balances(self) -> list[dict[str, Any]]:
        return [{"venue": "okx", "equity": Decimal("1000.5")}]

    def active_orders(self) -> list[dict[str, Any]]:
        return []

    def pnl_today(self) -> dict[str, Any]:
        return {"realized": Decimal("1.25")}

    def trades_since(self, since_ts: float) -> list[dict[str, Any]]:
        self.calls.append(f"trades:{since_ts:.0f}")
        return []


def make_settings(tmp_path, **kw) -> Settings:
    """Settings for a control API under test; the journal (audit trail, generated token) under tmp_path."""
    kw.setdefault("journal", {"path": str(tmp_path / "data" / "journal.sqlite")})
    kw.setdefault("http", {"host": "127.0.0.1", "port": 0})
    return Settings(log_dir=str(tmp_path / "logs"), **kw)


@pytest.fixture
async def api(tmp_path):
    """Start a ControlServer; yields (base_url, context, session)."""
    servers = []

    async def start(settings: Settings, engine=None, store=None):
        ctx = ControlContext(settings=settings, metrics=Metrics(), store=store or BookStore(), engine=engine)
        server = ControlServer(ctx)
        await server.start()
        servers.append(server)
        return f"http://127.0.0.1:{server.port}", ctx

    async with aiohttp.ClientSession() as session:
        yield start, session
    for server in servers:
        await server.stop()


async def test_state_changing_routes_need_the_right_bearer_token(api, tmp_path):
    start, http = api
    engine = RecordingEngine()
    base, _ = await start(make_settings(tmp_path, api_token=TOKEN), engine)
    async with http.post(f"{base}/api/trading/pause") as resp:
        assert resp.status == 401
        assert (await resp.json()) == {"error": "missing bearer token", "reason": "missing_token"}
    async with http.post(f"{base}/api/trading/pause", headers={"Authorization": "Bearer nope"}) as resp:
        assert resp.status == 401 and "wrong" in (await resp.json())["error"]
    assert engine.calls == []
    async with http.post(f"{base}/api/trading/pause", json={"reason": "manual stop"},
                         headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        assert resp.status == 200
        assert (await resp.json()) == {"state": "paused", "reason": "manual stop"}
    assert engine.paused_reason == "manual stop"
    # Reads stay open.
    async with http.get(f"{base}/api/trading/state") as resp:
        assert resp.status == 200 and (await resp.json()) == {"state": "paused"}


async def test_without_a_configured_token_commands_need_the_generated_one_and_a_public_bind_refuses(api, tmp_path):
    start, http = api
    engine = RecordingEngine()
    settings = make_settings(tmp_path)
    base, _ = await start(settings, engine)
    async with http.post(f"{base}/api/trading/resume") as resp:
        assert resp.status == 401  # loopback is no boundary: no token, no command
    assert engine.calls == []
    generated, created = read_or_create_token(settings.token_file_path())
    assert not created  # the server made it at start
    async with http.post(f"{base}/api/trading/resume", headers={"Authorization": f"Bearer {generated}"}) as resp:
        assert resp.status == 200
    assert engine.calls == ["resume"]

    public = make_settings(tmp_path, http={"host": "0.0.0.0", "port": 0})
    with pytest.raises(ConfigError, match="PERPBOT_API_TOKEN"):
        await ControlServer(ControlContext(settings=public, metrics=Metrics())).start()

    # An app built for a public host without a configured token still checks the generated one.
    app = build_app(ControlContext(settings=public, metrics=Metrics(), engine=engine))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/api/positions/close-all"
        async with http.post(url) as resp:
            assert resp.status == 401 and (await resp.json())["reason"] == "missing_token"
    finally:
        await runner.cleanup()
    assert "close_all" not in engine.calls


async def test_books_route_answers_strings_404_and_400_as_json(api, tmp_path):
    start, http = api
    store = BookStore()
    book = store.add("okx", "BTC-USDT-SWAP", Decimal("0.01"))
    book.replace([["100.5", "3"], ["100.4", "10"]], [["100.6", "2"]])
    book.valid, book.invalid_reason, book.seq, book.recv_ts = True, None, 77, 1.0
    base, _ = await start(make_settings(tmp_path), store=store)
    async with http.get(f"{base}/api/books/okx/BTC-USDT-SWAP?depth=1") as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["best_bid"] == "100.5" and body["best_ask"] == "100.6"
    assert body["bids"] == [["100.5", "0.03"]]  # 3 contracts x 0.01 BTC
    assert body["valid"] is True and body["sequence"] == 77
    for path, status in [("/api/books/okx/NOPE", 404), ("/api/books/kraken/BTC", 404),
                         ("/api/books/okx/BTC-USDT-SWAP?depth=0", 400),
                         ("/api/books/okx/BTC-USDT-SWAP?depth=abc", 400),
                         ("/api/nothing-here", 404), ("/api/trades?hours=-1", 503)]:
        async with http.get(base + path) as resp:
            assert resp.status == status, path
            assert resp.content_type == "application/json"
            assert isinstance((await resp.json())["error"], str)


async def test_engine_routes_answer_503_when_running_market_data_only(api, tmp_path):
    start, http = api
    base, _ = await start(make_settings(tmp_path, api_token=TOKEN))
    for method, path in [("GET", "/api/balances"), ("GET", "/api/orders/active"), ("POST", "/api/trading/pause")]:
        async with http.request(method, base + path, headers=AUTH) as resp:
            assert resp.status == 503
            assert "market-data-only" in (await resp.json())["error"]


async def test_engine_routes_pass_through_and_a_failing_engine_is_json_not_500(api, tmp_path):
    start, http = api
    engine = RecordingEngine()
    base, _ = await start(make_settings(tmp_path, api_token=TOKEN), engine)
    async with http.get(f"{base}/api/balances") as resp:
        assert (await resp.json()) == [{"venue": "okx", "equity": "1000.5"}]  # Decimal as string
    async with http.get(f"{base}/api/trades?hours=2") as resp:
        assert resp.status == 200
    async with http.get(f"{base}/api/trades?hours=abc") as resp:
        assert resp.status == 400
    engine.fail = True
    async with http.post(f"{base}/api/positions/close-all", headers=AUTH) as resp:
        assert resp.status == 503 and (await resp.json())["error"].startswith("internal error")
    async with http.post(f"{base}/api/trading/pause", data=b"x" * 70000, headers=AUTH) as resp:
        assert resp.status == 413
    async with http.post(f"{base}/api/trading/pause", data=b"{bad json",
                         headers={"Content-Type": "application/json", **AUTH}) as resp:
        assert resp.status == 400
    async with http.get(f"{base}/metrics") as resp:
        assert resp.status == 200 and "perpbot_system_health" in await resp.text()


async def test_openapi_document_lists_exactly_the_routes_of_the_router(api, tmp_path):
    start, http = api
    base, _ = await start(make_settings(tmp_path))
    async with http.get(f"{base}/api/openapi.json") as resp:
        doc = await resp.json()
    assert doc["openapi"].startswith("3.")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    app = build_app(ControlContext(settings=make_settings(tmp_path), metrics=Metrics()))
    served = {(r.method, r.resource.canonical) for r in app.router.routes() if r.method != "HEAD"}
    assert documented == served
    assert {(r.method, r.path) for r in ROUTES} == served
    for spec_route in ["/api/websocket/status", "/api/balances", "/api/positions", "/api/sync/positions",
                       "/api/trading/pause", "/api/trading/resume", "/api/orders/active",
                       "/api/positions/close-all", "/api/config", "/metrics"]:
        assert spec_route in doc["paths"]


async def test_secrets_set_in_the_environment_never_reach_config_output_or_logs(api, tmp_path, monkeypatch):
    secret_key, secret_token = "AKIA-very-secret-key-123", "tok-secret-xyz-456"
    monkeypatch.setenv("PERPBOT_VENUES__OKX__API_KEY", secret_key)
    monkeypatch.setenv("PERPBOT_API_TOKEN", secret_token)
    settings = make_settings(tmp_path)
    assert settings.venues.okx.api_key.get_secret_value() == secret_key
    stream = io.StringIO()
    log_file = setup_logging(settings, stream=stream)
    try:
        start, http = api
        base, _ = await start(settings)
        async with http.get(f"{base}/api/config") as resp:
            text = await resp.text()
        assert resp.status == 200
        assert secret_key not in text and secret_token not in text
        assert '"api_key":"**********"' in text.replace(" ", "")
        logger = logging.getLogger("perpbot.test")
        logger.warning("connecting with key %s and token %s", secret_key, secret_token)
        try:
            raise ValueError(f"bad key {secret_key}")
        except ValueError:
            logger.exception("failure")
    finally:
        shutdown_logging()
    written = log_file.read_text() + stream.getvalue()
    assert "connecting with key" in written and "bad key" in written
    assert secret_key not in written and secret_token not in written
