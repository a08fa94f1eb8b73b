"""The control plane safe by default (issue 17), over a real loopback socket: a generated token when
none is configured, no cross-site or rebinding path, JSON bodies only, scopes, idempotent retries,
long operations that answer in time and join, clean JSON refusals (raw bytes included) and the audit
trail in the journal."""

from __future__ import annotations

import asyncio
import json
import logging
import stat
from typing import Any

import aiohttp
import pytest

from perpbot.book.store import BookStore
from perpbot.control.auth import read_or_create_token
from perpbot.control.server import ROUTES, ControlContext, ControlServer
from perpbot.settings import Settings
from perpbot.telemetry.metrics import Metrics

from testkit import wait_until

TOKEN = "trade-token-for-the-control-plane-tests"
READ = "read-token-for-the-control-plane-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
STATE_CHANGING = [r.path for r in ROUTES if r.protected]


class HeldEngine:
    """EngineCommands whose close-all and sync wait until the test lets them finish (`release`)."""

    def __init__(self, hold: bool = False) -> None:
        self.calls: list[str] = []
        self.release = asyncio.Event()
        if not hold:
            self.release.set()
        self.started = asyncio.Event()

    async def pause(self, reason: str) -> dict[str, Any]:
        self.calls.append(f"pause:{reason}")
        return {"state": "PAUSED", "reason": reason}

    async def resume(self) -> dict[str, Any]:
        self.calls.append("resume")
        return {"state": "ACTIVE", "resumed": True}

    async def close_all(self) -> dict[str, Any]:
        self.calls.append("close_all")
        self.started.set()
        await self.release.wait()
        return {"state": "PAUSED", "results": [{"venue": "okx", "symbol": "BTC-USDT-SWAP", "status": "closed"}]}

    async def sync_positions(self) -> dict[str, Any]:
        self.calls.append("sync")
        self.started.set()
        await self.release.wait()
        return {"changed": [{"kind": "position", "venue": "okx"}], "venues": {"okx": True}, "errors": {}}

    async def sync_preview(self) -> dict[str, Any]:
        self.calls.append("sync_preview")
        return {"dry_run": True, "changed": [{"kind": "position", "venue": "okx"}], "orders_to_settle": [],
                "errors": {}}

    def trading_state(self) -> dict[str, Any]:
        return {"state": "ACTIVE"}

    def positions(self) -> list[dict[str, Any]]:
        return []

    def balances(self) -> list[dict[str, Any]]:
        return []

    def active_orders(self) -> list[dict[str, Any]]:
        return []

    def pnl_today(self) -> dict[str, Any]:
        return {}

    def trades_since(self, since_ts: float) -> list[dict[str, Any]]:
        return []


def settings_for(tmp_path, api_token: str | None = TOKEN, **http: Any) -> Settings:
    return Settings(log_dir=str(tmp_path / "logs"), api_token=api_token,
                    journal={"path": str(tmp_path / "data" / "journal.sqlite")},
                    http={"host": "127.0.0.1", "port": 0, **http})


@pytest.fixture
async def control(tmp_path):
    """start(settings, engine) -> (base URL, server); every server stopped at the end."""
    servers: list[ControlServer] = []

    async def start(settings: Settings, engine: Any = None) -> tuple[str, ControlServer]:
        server = ControlServer(ControlContext(settings=settings, metrics=Metrics(), store=BookStore(), engine=engine))
        await server.start()
        servers.append(server)
        return f"http://127.0.0.1:{server.port}", server

    async with aiohttp.ClientSession() as http:
        yield start, http
    for server in servers:
        await server.stop()


async def raw_request(port: int, head: bytes) -> tuple[int, dict[str, Any], bytes]:
    """Send raw bytes (no client library cleaning them) and read the answer: status, JSON body, headers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        await writer.drain()
        data = await reader.read()  # the server closes after an error answer / Connection: close
    finally:
        writer.close()
    header, _, body = data.partition(b"\r\n\r\n")
    status = int(header.split(b" ", 2)[1])
    return status, json.loads(body), header


async def test_no_token_configured_every_state_changing_route_refuses_and_the_generated_token_works(
        control, tmp_path, caplog):
    start, http = control
    engine = HeldEngine()
    settings = settings_for(tmp_path, api_token=None)
    with caplog.at_level(logging.INFO, logger="perpbot.control"):
        base, _ = await start(settings, engine)
    for path in STATE_CHANGING:
        async with http.post(base + path) as resp:
            assert resp.status == 401, path
            assert (await resp.json())["reason"] == "missing_token"
    assert engine.calls == []

    token_file = settings.token_file_path()
    assert token_file == tmp_path / "data" / "api_token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    generated, created = read_or_create_token(token_file)
    assert not created and len(generated) >= 40
    assert str(token_file) in caplog.text and generated not in caplog.text  # where, never what

    for path in STATE_CHANGING:
        async with http.post(base + path, headers={"Authorization": f"Bearer {generated}"}) as resp:
            assert resp.status == 200, (path, await resp.text())
    assert sorted(engine.calls) == sorted(["close_all", "pause:operator request", "resume", "sync"])


async def test_the_generated_token_survives_a_restart(control, tmp_path):
    start, http = control
    settings = settings_for(tmp_path, api_token=None)
    _, first = await start(settings, HeldEngine())
    await first.stop()
    before = settings.token_file_path().read_text()
    base, _ = await start(settings, HeldEngine())
    assert settings.token_file_path().read_text() == before
    async with http.post(base + "/api/trading/resume", headers={"Authorization": f"Bearer {before.strip()}"}) as resp:
        assert resp.status == 200


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.1.evil.example",
                                    "https://127.0.0.1", "file://", "http://localhost:1"])
async def test_a_foreign_origin_is_refused_on_state_changing_routes_even_with_the_token(control, tmp_path, origin):
    start, http = control
    engine = HeldEngine()
    base, _ = await start(settings_for(tmp_path), engine)
    for path in STATE_CHANGING:
        async with http.post(base + path, headers={**AUTH, "Origin": origin}) as resp:
            assert resp.status == 403, (path, origin)
            assert (await resp.json())["reason"] == "foreign_origin"
    async with http.post(base + "/api/trading/pause", headers={**AUTH, "Sec-Fetch-Site": "cross-site"}) as resp:
        assert resp.status == 403
    assert engine.calls == []
    # The API's own origin (a page it served) and curl (no Origin) pass.
    async with http.post(base + "/api/trading/pause", headers={**AUTH, "Origin": base}) as resp:
        assert resp.status == 200
    async with http.post(base + "/api/trading/resume", headers=AUTH) as resp:
        assert resp.status == 200


async def test_a_listed_origin_may_change_state(control, tmp_path):
    start, http = control
    base, _ = await start(settings_for(tmp_path, allowed_origins=["https://ops.example.com"]), HeldEngine())
    async with http.post(base + "/api/trading/resume", headers={**AUTH, "Origin": "https://ops.example.com"}) as resp:
        assert resp.status == 200
    async with http.post(base + "/api/trading/resume", headers={**AUTH, "Origin": "https://ops.example.com.evil"}) as resp:
        assert resp.status == 403


@pytest.mark.parametrize("host", ["evil.example", "127.0.0.1.evil.example", "evil.example:8000", "localhost.evil"])
async def test_a_rebinding_host_is_refused_on_read_and_state_changing_routes(control, tmp_path, host):
    start, http = control
    engine = HeldEngine()
    base, _ = await start(settings_for(tmp_path), engine)
    for method, path in [("GET", "/api/positions"), ("GET", "/api/balances"), ("GET", "/api/config"),
                         ("GET", "/health/live"), ("POST", "/api/trading/pause"), ("POST", "/api/positions/close-all")]:
        async with http.request(method, base + path, headers={**AUTH, "Host": host}) as resp:
            assert resp.status == 403, (method, path)
            assert (await resp.json())["reason"] == "foreign_host"
    assert engine.calls == []
    for good in ("localhost", "127.0.0.1", "[::1]:8000", "127.0.0.2:1"):
        async with http.get(base + "/api/positions", headers={"Host": good}) as resp:
            assert resp.status == 200, good


async def test_an_allowed_host_is_answered_and_others_still_refused(control, tmp_path):
    start, http = control
    base, _ = await start(settings_for(tmp_path, allowed_hosts=["perpbot"]), HeldEngine())
    async with http.get(base + "/api/positions", headers={"Host": "perpbot:8000"}) as resp:
        assert resp.status == 200
    async with http.get(base + "/api/positions", headers={"Host": "evil.example"}) as resp:
        assert resp.status == 403


async def test_text_plain_and_form_bodies_are_refused_on_state_changing_routes(control, tmp_path):
    start, http = control
    engine = HeldEngine()
    base, _ = await start(settings_for(tmp_path), engine)
    for path in STATE_CHANGING:
        for kw in ({"data": b'{"reason": "x"}', "headers": {**AUTH, "Content-Type": "text/plain"}},
                   {"data": {"reason": "x"}, "headers": AUTH},  # application/x-www-form-urlencoded
                   {"data": aiohttp.FormData({"reason": "x"}, default_to_multipart=True), "headers": AUTH},
                   {"data": b"", "headers": {**AUTH, "Content-Type": "text/plain;charset=UTF-8"}},
                   {"data": b"reason=x", "headers": {**AUTH, "Content-Type": "application/octet-stream"}}):
            async with http.post(base + path, **kw) as resp:
                assert resp.status == 415, (path, kw)
                assert (await resp.json())["reason"] == "content_type"
    assert engine.calls == []
    async with http.post(base + "/api/trading/pause", json={"reason": "json is fine"}, headers=AUTH) as resp:
        assert resp.status == 200
    assert engine.calls == ["pause:json is fine"]


async def test_non_utf8_header_bytes_answer_401_and_parser_errors_answer_json(control, tmp_path, caplog):
    start, http = control
    engine = HeldEngine()
    _, server = await start(settings_for(tmp_path), engine)
    port = server.port
    def pause_with(authorization: bytes) -> bytes:
        return (b"POST /api/trading/pause HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: " + authorization +
                b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    for raw in (b"Bearer \xff\xfe\x80", b"\xc3\x28", b"Bearer " + TOKEN.encode() + b"\xff", b"\xff" * 300,
                b"Bearer " + TOKEN.encode()[:-1] + b"\xe9", "Bearer t\u00f6ken".encode()):
        status, body, _ = await raw_request(port, pause_with(raw))
        assert status == 401, raw
        assert body["reason"] == "malformed_token", raw
    # Bytes the HTTP parser itself refuses in a header (NUL) never reach a route: a JSON 400.
    status, body, _ = await raw_request(port, pause_with(b"Bearer \x00abc"))
    assert status == 400 and body["reason"] == "bad_request"
    assert engine.calls == []
    assert "Traceback" not in caplog.text
    # Errors of the HTTP parser itself (no route ran) are JSON too.
    for head in (b"GARBAGE\r\n\r\n", b"GET /api/positions HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n",
                 b"POST /api/trading/pause HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -1\r\n\r\n"):
        status, body, header = await raw_request(port, head)
        assert 400 <= status < 500, head
        assert isinstance(body["error"], str) and b"application/json" in header.lower(), head


async def test_every_refusal_is_json_and_no_cors_is_offered(control, tmp_path):
    start, http = control
    base, _ = await start(settings_for(tmp_path), HeldEngine())
    preflight = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization"}
    async with http.options(base + "/api/trading/pause", headers=preflight) as resp:
        assert resp.status >= 400 and resp.content_type == "application/json"
        assert not any(h.lower().startswith("access-control-") for h in resp.headers)
    for method, path in [("GET", "/api/nothing"), ("PUT", "/api/trading/pause"), ("GET", "/api/trading/pause"),
                         ("POST", "/api/nothing")]:
        async with http.request(method, base + path, headers=AUTH) as resp:
            assert 400 <= resp.status < 500 and resp.content_type == "application/json", (method, path)
            assert not any(h.lower().startswith("access-control-") for h in resp.headers)


async def test_a_read_token_reads_but_cannot_change_state_and_health_stays_public(control, tmp_path):
    start, http = control
    engine = HeldEngine()
    base, _ = await start(settings_for(tmp_path, read_token=READ), engine)
    read = {"Authorization": f"Bearer {READ}"}
    async with http.get(base + "/api/positions") as resp:
        assert resp.status == 401 and (await resp.json())["reason"] == "missing_token"
    for headers in (read, AUTH):
        async with http.get(base + "/api/positions", headers=headers) as resp:
            assert resp.status == 200
    for path in STATE_CHANGING:
        async with http.post(base + path, headers=read) as resp:
            assert resp.status == 403, path
            body = await resp.json()
            assert body["reason"] == "scope" and "trade token" in body["error"]
    assert engine.calls == []
    for path in ("/health/live", "/metrics"):
        async with http.get(base + path) as resp:
            assert resp.status == 200, path


async def test_without_a_read_token_reads_stay_open_on_loopback(control, tmp_path):
    start, http = control
    base, _ = await start(settings_for(tmp_path), HeldEngine())
    async with http.get(base + "/api/trading/state") as resp:
        assert resp.status == 200


async def test_concurrent_close_alls_act_once_and_both_callers_learn_the_result(control, tmp_path):
    start, http = control
    engine = HeldEngine(hold=True)
    base, server = await start(settings_for(tmp_path), engine)

    async def close_all() -> tuple[int, dict[str, Any]]:
        async with http.post(base + "/api/positions/close-all", headers=AUTH) as resp:
            return resp.status, await resp.json()

    first = asyncio.ensure_future(close_all())
    await asyncio.wait_for(engine.started.wait(), 5)
    second = asyncio.ensure_future(close_all())
    # The second request is in once the running operation counts it as joined.
    await wait_until(lambda: server.operations.running("close_all").joined == 1, timeout=5)
    engine.release.set()
    (s1, a1), (s2, a2) = await asyncio.gather(first, second)
    assert (s1, s2) == (200, 200)
    assert engine.calls == ["close_all"]
    assert a1["operation_id"] == a2["operation_id"]
    assert a1["results"] == a2["results"] == [{"venue": "okx", "symbol": "BTC-USDT-SWAP", "status": "closed"}]
    assert a2.get("joined") is True and "joined" not in a1


async def test_a_long_close_all_answers_in_time_with_an_operation_to_poll(control, tmp_path):
    start, http = control
    engine = HeldEngine(hold=True)  # holds until released: whatever the wait, the answer comes first
    base, server = await start(settings_for(tmp_path, operation_wait_s=0.2), engine)
    async with http.post(base + "/api/positions/close-all", headers=AUTH) as resp:
        assert resp.status == 202
        running = await resp.json()
    assert running["status"] == "running" and running["kind"] == "close_all"
    assert running["poll"] == f"/api/operations/{running['id']}"
    async with http.get(base + running["poll"]) as resp:
        assert resp.status == 200 and (await resp.json())["status"] == "running"
    engine.release.set()
    await asyncio.wait_for(asyncio.shield(server.operations.get(running["id"]).task), 5)
    async with http.get(base + running["poll"] + "?wait=5") as resp:
        done = await resp.json()
    assert done["status"] == "done" and done["finished_at"] >= done["started_at"]
    assert done["result"]["results"][0]["status"] == "closed"
    assert engine.calls == ["close_all"]
    async with http.get(base + "/api/operations/close-all-000000000000") as resp:
        assert resp.status == 404 and "no such operation" in (await resp.json())["error"]


async def test_an_idempotent_retry_of_close_all_acts_once_and_returns_the_first_answer(control, tmp_path):
    start, http = control
    engine = HeldEngine()
    base, _ = await start(settings_for(tmp_path), engine)
    key = {"Idempotency-Key": "flatten-2026-12-02-a"}
    answers = []
    for _ in range(3):
        async with http.post(base + "/api/positions/close-all", headers={**AUTH, **key}) as resp:
            answers.append((resp.status, resp.headers.get("Idempotent-Replayed"), await resp.json()))
    assert engine.calls == ["close_all"]
    assert [a[0] for a in answers] == [200, 200, 200]
    assert [a[1] for a in answers] == [None, "true", "true"]
    assert answers[0][2]["operation_id"] == answers[1][2]["operation_id"] == answers[2][2]["operation_id"]
    assert answers[0][2]["results"] == answers[2][2]["results"]
    # Another key acts again; the same key on resume is its own; the same key with another body is refused.
    async with http.post(base + "/api/positions/close-all", headers={**AUTH, "Idempotency-Key": "b"}) as resp:
        assert resp.status == 200
    assert engine.calls == ["close_all", "close_all"]
    for _ in range(2):
        async with http.post(base + "/api/trading/resume", headers={**AUTH, **key}) as resp:
            assert resp.status == 200
    assert engine.calls.count("resume") == 1
    async with http.post(base + "/api/trading/pause", json={"reason": "one"}, headers={**AUTH, "Idempotency-Key": "p"}) as resp:
        assert resp.status == 200
    async with http.post(base + "/api/trading/pause", json={"reason": "two"}, headers={**AUTH, "Idempotency-Key": "p"}) as resp:
        assert resp.status == 422 and (await resp.json())["reason"] == "idempotency_conflict"
    assert [c for c in engine.calls if c.startswith("pause")] == ["pause:one"]
    async with http.post(base + "/api/trading/pause", headers={**AUTH, "Idempotency-Key": "x" * 201}) as resp:
        assert resp.status == 400 and (await resp.json())["reason"] == "idempotency_key"


async def test_concurrent_retries_with_one_key_act_once(control, tmp_path):
    start, http = control
    engine = HeldEngine(hold=True)
    base, server = await start(settings_for(tmp_path), engine)

    async def close_all() -> dict[str, Any]:
        async with http.post(base + "/api/positions/close-all", headers={**AUTH, "Idempotency-Key": "k"}) as resp:
            assert resp.status == 200
            return await resp.json()

    first = asyncio.ensure_future(close_all())
    await asyncio.wait_for(engine.started.wait(), 5)
    second = asyncio.ensure_future(close_all())  # waits on the first, or replays it: acts once either way
    engine.release.set()
    a1, a2 = await asyncio.gather(first, second)
    assert engine.calls == ["close_all"] and a1["operation_id"] == a2["operation_id"]


async def test_the_dry_run_sync_reports_without_applying_then_a_sync_applies(control, tmp_path):
    start, http = control
    engine = HeldEngine()
    base, _ = await start(settings_for(tmp_path), engine)
    async with http.post(base + "/api/sync/positions?dry_run=true", headers=AUTH) as resp:
        assert resp.status == 200
        preview = await resp.json()
    assert preview["dry_run"] is True and preview["changed"] == [{"kind": "position", "venue": "okx"}]
    assert engine.calls == ["sync_preview"]
    async with http.post(base + "/api/sync/positions?dry_run=maybe", headers=AUTH) as resp:
        assert resp.status == 400
    async with http.post(base + "/api/sync/positions?dry_run=false", headers=AUTH) as resp:
        assert resp.status == 200 and "dry_run" not in await resp.json()
    assert engine.calls == ["sync_preview", "sync"]


async def test_the_audit_trail_lists_what_was_done_and_what_was_refused(control, tmp_path):
    start, http = control
    engine = HeldEngine()
    base, server = await start(settings_for(tmp_path), engine)
    async with http.post(base + "/api/trading/pause", json={"reason": "audit"}, headers=AUTH) as resp:
        assert resp.status == 200
    async with http.post(base + "/api/trading/resume", headers={"Authorization": "Bearer wrong"}) as resp:
        assert resp.status == 401
    async with http.post(base + "/api/positions/close-all", headers={**AUTH, "Origin": "http://evil.example"}) as resp:
        assert resp.status == 403
    async with http.get(base + "/api/positions", headers={"Host": "evil.example"}) as resp:
        assert resp.status == 403
    async with http.post(base + "/api/positions/close-all", headers={**AUTH, "Idempotency-Key": "audit-1"}) as resp:
        operation_id = (await resp.json())["operation_id"]
    async with http.get(base + "/api/audit?hours=1") as resp:
        assert resp.status == 200
        text = await resp.text()
    trail = json.loads(text)
    seen = [(e["method"], e["path"], e["status"], e["scope"]) for e in trail]
    assert seen == [("POST", "/api/trading/pause", 200, "trade"), ("POST", "/api/trading/resume", 401, None),
                    ("POST", "/api/positions/close-all", 403, None), ("GET", "/api/positions", 403, None),
                    ("POST", "/api/positions/close-all", 200, "trade")]
    assert [e["outcome"] for e in trail][:4] == ["ok", "wrong bearer token", "cross-origin requests may not change state",
                                                 "Host is not a loopback name or address (DNS rebinding refused)"]
    assert trail[2]["origin"] == "http://evil.example" and trail[0]["remote"] == "127.0.0.1"
    assert trail[4]["operation_id"] == operation_id and trail[4]["idempotency_key"] == "audit-1"
    assert TOKEN not in text
    # Journalled: a second server on the same journal reads the same trail.
    await server.stop()
    base2, _ = await start(settings_for(tmp_path), engine)
    async with http.get(base2 + "/api/audit?hours=1") as resp:
        assert [e["path"] for e in await resp.json()][:5] == [e["path"] for e in trail]
    async with http.get(base2 + "/api/audit?hours=0") as resp:
        assert resp.status == 400
    async with http.get(base2 + "/metrics") as resp:
        assert resp.status == 200
    # The refusals were counted by reason (the first server's registry is gone; count on this one).
    async with http.post(base2 + "/api/trading/pause", headers={"Authorization": "Bearer nope"}) as resp:
        assert resp.status == 401
    async with http.get(base2 + "/metrics") as resp:
        assert 'perpbot_control_refusals_total{reason="wrong_token"} 1.0' in await resp.text()


async def test_the_generated_token_is_redacted_from_the_logs_like_a_configured_secret(control, tmp_path):
    import io

    from perpbot.telemetry.logging import setup_logging, shutdown_logging

    start, _ = control
    settings = settings_for(tmp_path, api_token=None)
    stream = io.StringIO()
    log_file = setup_logging(settings, stream=stream)
    try:
        await start(settings, HeldEngine())
        generated, _ = read_or_create_token(settings.token_file_path())
        logging.getLogger("perpbot.test").error("a careless line with %s in it", generated)
    finally:
        shutdown_logging()
    written = log_file.read_text() + stream.getvalue()
    assert "a careless line with" in written and str(settings.token_file_path()) in written
    assert generated not in written
