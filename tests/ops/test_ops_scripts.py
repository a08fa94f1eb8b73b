"""health-check.sh, backup.sh, logs.sh and validate_perpbot_v2.py against real loopback servers and real files."""

from __future__ import annotations

import os
import select
import sqlite3
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from ops.conftest import REPO, SCRIPTS, TOKEN, loopback_port


def health_check(env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "ALERTMANAGER_URL", "EXPECT_PAUSED")}
    full.update(env)
    return subprocess.run(["bash", str(SCRIPTS / "health-check.sh")], env=full, capture_output=True, text=True, timeout=60)


def validate(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PERPBOT_URL", "PERPBOT_API_TOKEN")}
    return subprocess.run([sys.executable, str(REPO / "validate_perpbot_v2.py"), *args], env=env,
                          capture_output=True, text=True, timeout=60)


# -- health-check.sh -------------------------------------------------------------------------------------

def test_health_check_passes_against_a_healthy_api_with_redis_and_quiet_alertmanager(fake_api, redis_server):
    proc = health_check({"PERPBOT_URL": fake_api.url, "REDIS_URL": redis_server, "ALERTMANAGER_URL": fake_api.url})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "HEALTHY" in proc.stdout
    assert "OK   okx feed connected" in proc.stdout
    assert "answers PING" in proc.stdout
    assert "no critical alert firing" in proc.stdout


def test_health_check_names_the_disconnected_venue(fake_api):
    status = fake_api.state["/api/websocket/status"][1]
    status["hyperliquid"]["connected"] = False
    proc = health_check({"PERPBOT_URL": fake_api.url})
    assert proc.returncode == 1
    assert "FAIL hyperliquid feed DISCONNECTED" in proc.stdout
    assert "UNHEALTHY" in proc.stdout


def test_health_check_fails_readably_when_the_api_is_unreachable():
    port = loopback_port()  # nothing listens there
    proc = health_check({"PERPBOT_URL": f"http://127.0.0.1:{port}"})
    assert proc.returncode == 1
    assert f"API unreachable at http://127.0.0.1:{port}" in proc.stdout


def test_health_check_fails_when_redis_is_unreachable(fake_api):
    proc = health_check({"PERPBOT_URL": fake_api.url, "REDIS_URL": f"redis://127.0.0.1:{loopback_port()}/0"})
    assert proc.returncode == 1
    assert "FAIL Redis at 127.0.0.1" in proc.stdout and "unreachable" in proc.stdout


def test_health_check_flags_an_unexpected_pause_but_accepts_an_expected_one(fake_api):
    fake_api.set("/api/trading/state", 200, {"state": "PAUSED", "reason": "operator"})
    unexpected = health_check({"PERPBOT_URL": fake_api.url})
    expected = health_check({"PERPBOT_URL": fake_api.url, "EXPECT_PAUSED": "1"})
    assert unexpected.returncode == 1 and "PAUSED unexpectedly (reason: operator)" in unexpected.stdout
    assert expected.returncode == 0, expected.stdout


def test_health_check_fails_on_halted_trading(fake_api):
    fake_api.set("/api/trading/state", 200, {"state": "HALTED", "reason": "daily loss limit"})
    proc = health_check({"PERPBOT_URL": fake_api.url, "EXPECT_PAUSED": "1"})
    assert proc.returncode == 1 and "trading HALTED (reason: daily loss limit)" in proc.stdout


def test_health_check_fails_on_a_firing_critical_alert(fake_api):
    fake_api.set("/api/v2/alerts", 200, [{"labels": {"alertname": "PerpbotUnhedgedExposure", "severity": "critical"}}])
    proc = health_check({"PERPBOT_URL": fake_api.url, "ALERTMANAGER_URL": fake_api.url})
    assert proc.returncode == 1
    assert "critical alerts firing: PerpbotUnhedgedExposure" in proc.stdout
    alert_query = [path for method, path, _ in fake_api.requests if path.startswith("/api/v2/alerts")]
    assert "severity" in alert_query[0] and "active=true" in alert_query[0]


def test_health_check_fails_when_not_ready(fake_api):
    fake_api.set("/health/ready", 503, {"ready": False, "reason": "books not valid"})
    proc = health_check({"PERPBOT_URL": fake_api.url})
    assert proc.returncode == 1 and "FAIL API ready (HTTP 503" in proc.stdout and "books not valid" in proc.stdout


# -- backup.sh -------------------------------------------------------------------------------------------

def make_deployment(root: Path) -> None:
    (root / "config.yaml").write_text("mode: sim\nrisk:\n  max_leverage: 3\n")
    (root / ".env").write_text("PERPBOT_API_TOKEN=secret-for-backup-test\n")
    (root / "logs").mkdir()
    (root / "logs" / "perpbot.log").write_text("2024-01-01 INFO started\n")
    (root / "data").mkdir()
    db = sqlite3.connect(root / "data" / "journal.sqlite")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE trades (id INTEGER PRIMARY KEY, symbol TEXT)")
    db.execute("INSERT INTO trades (symbol) VALUES ('BTC-USDT-SWAP')")
    db.commit()
    db.close()


def run_backup(root: Path, backups: Path, redis_url: str | None = None) -> tuple[subprocess.CompletedProcess, Path]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update({"PERPBOT_ROOT": str(root), "BACKUP_DIR": str(backups)})
    if redis_url:
        env["REDIS_URL"] = redis_url
    proc = subprocess.run(["bash", str(SCRIPTS / "backup.sh")], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc, Path(proc.stdout.strip().splitlines()[-1])


def test_backup_archive_holds_config_env_logs_and_a_readable_journal(tmp_path: Path):
    root, backups = tmp_path / "deploy", tmp_path / "backups"
    root.mkdir()
    make_deployment(root)
    _, archive = run_backup(root, backups)
    assert archive.parent == backups and archive.name.startswith("perpbot-backup-") and archive.suffixes[-2:] == [".tar", ".gz"]
    assert oct(archive.stat().st_mode & 0o777) == "0o600"
    out = tmp_path / "restore"
    with tarfile.open(archive) as tar:
        tar.extractall(out, filter="data")
    (top,) = list(out.iterdir())
    assert (top / "config.yaml").read_text().startswith("mode: sim")
    assert "secret-for-backup-test" in (top / ".env").read_text()
    assert (top / "logs" / "perpbot.log").exists()
    rows = sqlite3.connect(top / "data" / "journal.sqlite").execute("SELECT symbol FROM trades").fetchall()
    assert rows == [("BTC-USDT-SWAP",)]


def test_backup_includes_a_fresh_redis_snapshot_when_redis_is_reachable(tmp_path: Path, redis_server):
    import redis

    redis.Redis.from_url(redis_server).set("perpbot:state", "ACTIVE")
    root, backups = tmp_path / "deploy", tmp_path / "backups"
    root.mkdir()
    make_deployment(root)
    proc, archive = run_backup(root, backups, redis_url=redis_server)
    assert "saved Redis snapshot" in proc.stdout
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        member = next(n for n in names if n.endswith("/redis/dump.rdb"))
        assert b"perpbot:state" in tar.extractfile(member).read()


# -- logs.sh ---------------------------------------------------------------------------------------------

def read_until(proc: subprocess.Popen, needle: str, timeout: float) -> str:
    seen, deadline = "", time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"{needle!r} not seen in {seen!r}"
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 4096).decode()
            assert chunk, f"logs.sh ended early; saw {seen!r}"
            seen += chunk
    return seen


def test_logs_follows_the_perpbot_log_file_without_docker(tmp_path: Path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "perpbot.log").write_text("first line\n")
    env = {**os.environ, "LOGS_USE_DOCKER": "no", "PERPBOT_LOG_DIR": str(logs)}
    proc = subprocess.Popen(["bash", str(SCRIPTS / "logs.sh"), "perpbot"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        read_until(proc, "first line", 10)
        with (logs / "perpbot.log").open("a") as fh:
            fh.write("WebSocket connection failed okx: refused\n")
        read_until(proc, "WebSocket connection failed okx", 10)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_logs_without_a_service_prints_usage_and_exits_2():
    proc = subprocess.run(["bash", str(SCRIPTS / "logs.sh")], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "usage:" in proc.stderr


def test_logs_for_a_service_without_log_file_explains(tmp_path: Path):
    env = {**os.environ, "LOGS_USE_DOCKER": "no", "PERPBOT_LOG_DIR": str(tmp_path)}
    proc = subprocess.run(["bash", str(SCRIPTS / "logs.sh"), "perpbot"], env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1 and "perpbot.log" in proc.stderr


# -- validate_perpbot_v2.py against the stand-in API ------------------------------------------------------

def test_validator_passes_a_healthy_deployment_and_uses_the_token_only_where_allowed(fake_api):
    proc = validate("--url", fake_api.url, "--token", TOKEN)
    assert proc.returncode == 0, proc.stdout
    assert "perpbot deployment VALID" in proc.stdout
    assert "PASS  POST /api/trading/pause without a token is refused (HTTP 401)" in proc.stdout
    assert TOKEN not in proc.stdout + proc.stderr
    posted = [(path, auth) for method, path, auth in fake_api.requests if method == "POST"]
    assert ("/api/sync/positions?dry_run=true", f"Bearer {TOKEN}") in posted  # a dry run: applies nothing
    assert all(auth is None for path, auth in posted if path in ("/api/trading/pause", "/api/positions/close-all"))


def test_validator_fails_on_a_leaked_secret_in_config(fake_api):
    config = fake_api.state["/api/config"][1]
    config["venues"]["okx"]["api_secret"] = "plain-text-secret"
    proc = validate("--url", fake_api.url)
    assert proc.returncode == 1
    assert "config secrets redacted (exposed: venues.okx.api_secret)" in proc.stdout


def test_validator_fails_on_a_missing_spec_metric_and_a_down_feed(fake_api):
    fake_api.set("/metrics", 200, fake_api.state["/metrics"][1].replace("perpbot_capital_utilization_percent", "x_other")
                 .replace('perpbot_websocket_connected{exchange="okx"} 1.0', 'perpbot_websocket_connected{exchange="okx"} 0.0'))
    proc = validate("--url", fake_api.url)
    assert proc.returncode == 1
    assert "FAIL  metric perpbot_capital_utilization_percent exported" in proc.stdout
    assert 'FAIL  perpbot_websocket_connected{exchange="okx"} == 1 (got 0.0)' in proc.stdout


def test_validator_fails_on_an_invalid_or_crossed_book(fake_api):
    fake_api.set("/api/books/okx/BTC-USDT-SWAP", 200, {"valid": True, "best_bid": "60003", "best_ask": "60002"})
    fake_api.set("/api/books/hyperliquid/BTC", 200, {"valid": False, "invalid_reason": "gap"})
    proc = validate("--url", fake_api.url)
    assert proc.returncode == 1
    assert "FAIL  okx BTC-USDT-SWAP book not crossed" in proc.stdout
    assert "FAIL  hyperliquid BTC book valid (invalid_reason: gap)" in proc.stdout


def test_validator_fails_when_control_routes_are_open_without_a_token(fake_api):
    fake_api.set("/api/trading/pause", 200, {})
    # the stand-in answers 401 to token-less POSTs; make pause open to anyone:
    original = fake_api.server.RequestHandlerClass._answer

    def open_pause(handler, method):
        if method == "POST" and handler.path == "/api/trading/pause":
            handler.headers.replace_header("Authorization", f"Bearer {TOKEN}") if handler.headers.get("Authorization") \
                else handler.headers.add_header("Authorization", f"Bearer {TOKEN}")
        return original(handler, method)

    fake_api.server.RequestHandlerClass._answer = open_pause
    proc = validate("--url", fake_api.url)
    assert proc.returncode == 1
    assert "FAIL  POST /api/trading/pause without a token is refused (HTTP 200)" in proc.stdout


def test_validator_exercise_controls_pauses_checks_orders_and_resumes(fake_api):
    proc = validate("--url", fake_api.url, "--token", TOKEN, "--exercise-controls")
    # the stand-in's state does not change on pause, so "state PAUSED after pause" must fail: the check is real
    assert proc.returncode == 1
    assert "PASS  POST /api/trading/pause with token (HTTP 200)" in proc.stdout
    assert "PASS  active orders empty after pause" in proc.stdout
    assert "FAIL  state PAUSED after pause" in proc.stdout
    assert "PASS  POST /api/trading/resume with token (HTTP 200)" in proc.stdout


def test_validator_reads_the_generated_token_from_its_file_and_never_prints_it(fake_api, tmp_path: Path):
    token_file = tmp_path / "api_token"
    token_file.write_text(TOKEN + "\n")
    proc = validate("--url", fake_api.url, "--token-file", str(token_file))
    assert proc.returncode == 0, proc.stdout
    assert TOKEN not in proc.stdout + proc.stderr
    posted = [(path, auth) for method, path, auth in fake_api.requests if method == "POST"]
    assert ("/api/sync/positions?dry_run=true", f"Bearer {TOKEN}") in posted
    missing = validate("--url", fake_api.url, "--token-file", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "cannot read the token file" in missing.stderr
