"""Security: constant-time token check, 401 for wrong tokens of every length, 413 on big bodies,
no public bind without a token, and secrets absent from logs, stdout, /api/config, /metrics and error bodies."""

from __future__ import annotations

import asyncio
import inspect
import logging

import aiohttp
import pytest

from perpbot.app import App
from perpbot.control import auth
from perpbot.control.server import ControlContext, ControlServer, Guard
from perpbot.settings import ConfigError, Settings
from perpbot.telemetry.metrics import Metrics

from testkit import free_port, wait_started, wait_until

TOKEN = "tok-7f3a9c1e5b2d4f6a8c0e"
SECRETS = {
    "PERPBOT_API_TOKEN": TOKEN,
    "PERPBOT_VENUES__OKX__API_KEY": "okxkey-SECRET-11111111",
    "PERPBOT_VENUES__OKX__API_SECRET": "okxsecret-SECRET-22222222",
    "PERPBOT_VENUES__OKX__PASSPHRASE": "okxpass-SECRET-33333333",
    "PERPBOT_VENUES__BINANCE__API_KEY": "bnkey-SECRET-44444444",
    "PERPBOT_VENUES__BINANCE__API_SECRET": "bnsecret-SECRET-55555555",
    "PERPBOT_VENUES__BYBIT__API_KEY": "bykey-SECRET-66666666",
    "PERPBOT_VENUES__BYBIT__API_SECRET": "bysecret-SECRET-77777777",
    "PERPBOT_VENUES__HYPERLIQUID__PRIVATE_KEY": "0x" + "5ec12e7" * 9 + "d",
}


def test_bearer_token_is_compared_with_hmac_compare_digest_in_the_auth_path():
    source = inspect.getsource(auth.Tokens.scope_of)
    assert "hmac.compare_digest(" in source
    # No ordinary equality on the token anywhere in the guard.
    guard = inspect.getsource(Guard)
    assert "== given" not in guard and "given ==" not in guard and "!= given" not in guard
    assert auth.hmac.compare_digest is __import__("hmac").compare_digest


async def _control(tmp_path, **http):
    settings = Settings(mode="sim", log_dir=str(tmp_path / "logs"), api_token=TOKEN,
                        http={"host": "127.0.0.1", "port": 0, "max_body_bytes": 1024, **http},
                        journal={"path": str(tmp_path / "journal.sqlite")},
                        sim={"enabled": True, "ports": {v: free_port() for v in ("okx", "hyperliquid", "binance", "bybit")},
                             "admin_port": free_port()})
    server = ControlServer(ControlContext(settings=settings, metrics=Metrics()))
    await server.start()
    return server


async def test_wrong_bearer_tokens_of_every_length_get_401_and_the_right_one_passes_auth(tmp_path):
    server = await _control(tmp_path)
    try:
        base = f"http://127.0.0.1:{server.port}"
        wrong = [TOKEN[:n] for n in range(1, len(TOKEN))] + [TOKEN + "x", TOKEN[:-1] + "X", "x" * 200,
                                                            TOKEN.upper(), " " + TOKEN + "x"]
        async with aiohttp.ClientSession() as http:
            for path in ("/api/trading/pause", "/api/trading/resume", "/api/positions/close-all", "/api/sync/positions"):
                async with http.post(base + path) as resp:
                    assert resp.status == 401, path
                for bad in wrong:
                    async with http.post(base + path, headers={"Authorization": f"Bearer {bad}"}) as resp:
                        assert resp.status == 401, (path, len(bad))
                        assert (await resp.json())["reason"] in ("wrong_token", "malformed_token"), len(bad)
                async with http.post(base + path, headers={"Authorization": f"Basic {TOKEN}"}) as resp:
                    assert resp.status == 401
                # The right token gets past auth: no engine is wired here, so 503 (not 401).
                async with http.post(base + path, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                    assert resp.status == 503, path
    finally:
        await server.stop()


async def test_request_body_over_the_limit_is_refused_with_413_before_auth(tmp_path):
    server = await _control(tmp_path)
    try:
        url = f"http://127.0.0.1:{server.port}/api/trading/pause"
        async with aiohttp.ClientSession() as http:
            async with http.post(url, data=b"x" * 5000, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
                assert resp.status == 413
                assert "body larger than 1024" in (await resp.json())["error"]
            async with http.post(url, data=b"x" * 5000) as resp:
                assert resp.status == 413
    finally:
        await server.stop()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "example.com"])
async def test_server_refuses_to_start_on_a_non_loopback_address_without_a_token(tmp_path, host):
    settings = Settings(mode="sim", log_dir=str(tmp_path / "logs"), http={"host": host, "port": 0},
                        sim={"enabled": True, "ports": {v: free_port() for v in ("okx", "hyperliquid", "binance", "bybit")},
                             "admin_port": free_port()})
    server = ControlServer(ControlContext(settings=settings, metrics=Metrics()))
    with pytest.raises(ConfigError):
        await server.start()
    assert server.port is None
    with pytest.raises(ConfigError):
        await App(settings).run()


async def test_secrets_from_env_never_reach_logs_stdout_config_metrics_or_error_bodies(tmp_path, monkeypatch, capfd):
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    ports = {venue: free_port() for venue in ("okx", "hyperliquid", "binance", "bybit")}
    settings = Settings(
        mode="sim", log_dir=str(tmp_path / "logs"), log_level="INFO",
        http={"host": "127.0.0.1", "port": 0, "max_body_bytes": 1024},
        journal={"path": str(tmp_path / "journal.sqlite")},
        sim={"enabled": True, "ports": ports, "admin_port": free_port(), "seed": 3, "tick_interval_s": 0.05},
        feeds={"backoff_initial_s": 0.05, "backoff_max_s": 0.5},
    )
    assert settings.api_token.get_secret_value() == TOKEN  # the env really was read
    from perpbot.telemetry.logging import setup_logging, shutdown_logging

    setup_logging(settings)
    app = App(settings)
    task = asyncio.get_running_loop().create_task(app.run())
    bodies: list[str] = []
    try:
        await wait_started(app, task)
        # The engine is built with the (env) credentials: wait until it is wired or has given up.
        await wait_until(lambda: app.control.ctx.engine is not None, timeout=30)
        base = f"http://127.0.0.1:{app.control.port}"
        async with aiohttp.ClientSession() as http:
            requests = [
                ("GET", "/api/config", {}, None), ("GET", "/metrics", {}, None),
                ("GET", "/api/books/okx/NOPE", {}, None), ("GET", "/api/books/okx/BTC-USDT-SWAP?depth=x", {}, None),
                ("GET", "/api/trades?hours=nan", {}, None), ("GET", "/no/such/route", {}, None),
                ("POST", "/api/trading/pause", {"Authorization": "Bearer " + TOKEN[:-1]}, None),
                ("POST", "/api/trading/pause", {"Authorization": "Bearer " + TOKEN}, b"{not json"),
                ("POST", "/api/trading/pause", {"Authorization": "Bearer " + TOKEN}, b"x" * 4096),
                ("POST", "/api/trading/resume", {"Authorization": "Bearer " + TOKEN}, None),
                ("GET", "/api/health", {}, None), ("GET", "/api/websocket/status", {}, None),
            ]
            for method, path, headers, data in requests:
                async with http.request(method, base + path, headers=headers, data=data) as resp:
                    bodies.append(f"{path} {resp.status} {await resp.text()} {dict(resp.headers)}")
                    assert resp.status < 500 or resp.status == 503, bodies[-1]
        logging.getLogger("perpbot.test").error("an error logged on purpose with settings %s", settings)
    finally:
        app.request_stop()
        await asyncio.wait_for(task, 20)
        shutdown_logging()
    out, err = capfd.readouterr()
    logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "logs").glob("*"))
    assert logs, "the run wrote no log file"
    haystacks = {"log file": logs, "stdout": out, "stderr": err, "responses": "\n".join(bodies)}
    for name, text in haystacks.items():
        for key, secret in SECRETS.items():
            assert secret not in text, f"{key} leaked into {name}"
            assert secret[4:-4] not in text, f"part of {key} leaked into {name}"
