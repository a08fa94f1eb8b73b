"""Environment overrides name single keys: every key they do not name keeps its default or config-file value.

Issue 12 point 5: with no config file, `PERPBOT_VENUES__OKX__REST_URL` alone used to replace OKX's whole
venue block, so its symbols became [] and the bot sat PAUSED ("no tradeable venue") forever.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from perpbot.cli import EXIT_CONFIG, main
from perpbot.settings import STOP_GRACE_PERIOD_S, ConfigError, Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
OKX_DEFAULT_SYMBOLS = ["BTC-USDT-SWAP", "ETH-USDT-SWAP"]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for key in list(os.environ):
        if key.startswith("PERPBOT_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env / config.yaml: the embedded defaults only


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


# -- environment alone (no config file) ----------------------------------------------------------


def test_env_only_rest_url_keeps_the_venue_default_symbols(monkeypatch):
    assert not Path("config.yaml").exists()
    monkeypatch.setenv("PERPBOT_VENUES__OKX__REST_URL", "https://backup.example/")
    s = load_settings()
    assert s.rest_url("okx") == "https://backup.example"
    assert s.venues.okx.symbols == OKX_DEFAULT_SYMBOLS
    assert s.venues.okx.enabled is True and s.venues.okx.environment == "testnet"
    assert s.venues.hyperliquid.symbols == ["BTC", "ETH"]  # siblings untouched as well


@pytest.mark.parametrize("venue, symbols", [("hyperliquid", ["BTC", "ETH"]), ("binance", ["BTCUSDT", "ETHUSDT"]),
                                            ("bybit", ["BTCUSDT", "ETHUSDT"])])
def test_env_only_any_venue_key_keeps_that_venue_symbols(monkeypatch, venue, symbols):
    monkeypatch.setenv(f"PERPBOT_VENUES__{venue.upper()}__ENVIRONMENT", "mainnet")
    s = load_settings()
    cfg = getattr(s.venues, venue)
    assert cfg.environment == "mainnet" and cfg.symbols == symbols


def test_env_only_symbols_override_replaces_the_list(monkeypatch):
    monkeypatch.setenv("PERPBOT_VENUES__OKX__SYMBOLS", '["SOL-USDT-SWAP"]')
    s = load_settings()
    assert s.venues.okx.symbols == ["SOL-USDT-SWAP"]  # a list is a value, not merged element-wise


def test_env_only_one_sim_port_keeps_the_other_ports(monkeypatch):
    monkeypatch.setenv("PERPBOT_SIM__PORTS__OKX", "19001")
    s = load_settings()
    assert s.sim.ports == {"okx": 19001, "hyperliquid": 18002, "binance": 18003, "bybit": 18004}
    assert s.ws_url("binance") == "ws://127.0.0.1:18003"


def test_env_only_nested_risk_key_keeps_the_other_risk_keys(monkeypatch):
    monkeypatch.setenv("PERPBOT_RISK__MAX_LEVERAGE", "5")
    s = load_settings()
    assert s.risk.max_leverage == Decimal("5")
    assert s.risk.max_position_size_usdt == Decimal("1000") and s.risk.max_open_positions == 10


def test_env_only_third_level_key_keeps_its_siblings(monkeypatch):
    monkeypatch.setenv("PERPBOT_STRATEGIES__PRICE_SPREAD__MIN_EDGE_BPS", "12")
    s = load_settings()
    assert s.strategies.price_spread.min_edge_bps == Decimal("12")
    assert s.strategies.price_spread.order_size_usdt == Decimal("200")
    assert s.strategies.funding_spread.horizon_hours == Decimal("8")


def test_dotenv_nested_key_keeps_the_venue_defaults(tmp_path):
    (tmp_path / ".env").write_text("PERPBOT_VENUES__BYBIT__WS_URL=wss://backup.example/v5/public/linear\n")
    s = load_settings()
    assert s.ws_url("bybit") == "wss://backup.example/v5/public/linear"
    assert s.venues.bybit.symbols == ["BTCUSDT", "ETHUSDT"]


def test_settings_constructed_directly_also_keeps_defaults(monkeypatch):
    monkeypatch.setenv("PERPBOT_VENUES__OKX__WS_URL", "wss://backup.example/ws")
    s = Settings(venues={"binance": {"environment": "mainnet"}})
    assert s.venues.okx.symbols == OKX_DEFAULT_SYMBOLS and s.venues.binance.symbols == ["BTCUSDT", "ETHUSDT"]


# -- environment together with a config file ------------------------------------------------------


def test_env_key_keeps_the_file_values_of_sibling_keys(tmp_path, monkeypatch):
    cfg = write(tmp_path, "venues:\n  okx:\n    environment: mainnet\n    symbols: [SOL-USDT-SWAP]\n"
                          "    ws_url: wss://file.example/ws\nrisk:\n  max_leverage: 2\n  max_open_positions: 4\n")
    monkeypatch.setenv("PERPBOT_VENUES__OKX__REST_URL", "https://env.example")
    monkeypatch.setenv("PERPBOT_RISK__MAX_OPEN_POSITIONS", "7")
    s = load_settings(cfg)
    assert s.rest_url("okx") == "https://env.example"
    assert s.ws_url("okx") == "wss://file.example/ws"
    assert s.venues.okx.symbols == ["SOL-USDT-SWAP"] and s.venues.okx.environment == "mainnet"
    assert s.risk.max_open_positions == 7 and s.risk.max_leverage == Decimal("2")
    assert s.risk.daily_loss_limit_usdt == Decimal("200")  # named by neither: the default


def test_file_naming_one_venue_key_keeps_the_venue_default_symbols(tmp_path):
    s = load_settings(write(tmp_path, "venues:\n  okx:\n    ws_url: wss://a.example/ws\n"))
    assert s.ws_url("okx") == "wss://a.example/ws" and s.venues.okx.symbols == OKX_DEFAULT_SYMBOLS


def test_env_wins_over_the_file_for_the_key_it_names(tmp_path, monkeypatch):
    cfg = write(tmp_path, "venues:\n  okx:\n    symbols: [SOL-USDT-SWAP]\n")
    monkeypatch.setenv("PERPBOT_VENUES__OKX__SYMBOLS", '["BTC-USDT-SWAP"]')
    assert load_settings(cfg).venues.okx.symbols == ["BTC-USDT-SWAP"]


def test_secret_from_env_keeps_venue_defaults_and_is_never_echoed(monkeypatch, capsys):
    monkeypatch.setenv("PERPBOT_VENUES__OKX__API_KEY", "k3y-value-q9")
    monkeypatch.setenv("PERPBOT_VENUES__OKX__API_SECRET", "s3cr3t-value-q9")
    assert main(["check-config"]) == 0
    out = capsys.readouterr().out
    assert "k3y-value-q9" not in out and "s3cr3t-value-q9" not in out
    okx = json.loads(out)["venues"]["okx"]
    assert okx["api_key"] == "**********" and okx["symbols"] == OKX_DEFAULT_SYMBOLS


# -- check-config, as an operator runs it ---------------------------------------------------------


def run_cli(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PERPBOT_")}
    clean["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), clean.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "perpbot.cli", *args], cwd=cwd, env={**clean, **env},
                          capture_output=True, text=True, timeout=120)


def test_check_config_with_env_only_shows_the_override_and_the_default_symbols(tmp_path):
    done = run_cli(["check-config"], tmp_path, PERPBOT_VENUES__OKX__REST_URL="https://backup.example",
                   PERPBOT_RISK__MAX_LEVERAGE="4", PERPBOT_VENUES__OKX__API_SECRET="s3cr3t-cli-77")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["venues"]["okx"]["rest_url"] == "https://backup.example"
    assert shown["venues"]["okx"]["symbols"] == OKX_DEFAULT_SYMBOLS
    assert shown["venues"]["okx"]["ws_url"] == "ws://127.0.0.1:18001/ws/v5/public"  # not named: default
    assert shown["risk"]["max_leverage"] == "4" and shown["risk"]["max_position_size_usdt"] == "1000"
    assert shown["execution"]["shutdown_grace_s"] == 20.0
    assert "s3cr3t-cli-77" not in done.stdout + done.stderr
    assert shown["venues"]["okx"]["api_secret"] == "**********"


def test_enabled_venue_without_symbols_exits_2_naming_venue_and_key(tmp_path):
    cfg = write(tmp_path, "venues:\n  binance:\n    symbols: []\n")
    done = run_cli(["run", "--config", str(cfg)], tmp_path)
    assert done.returncode == EXIT_CONFIG == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("config error: venues.binance.symbols")
    assert "enabled" in lines[0] and "(root)" not in lines[0]


def test_enabled_venue_emptied_by_env_is_refused_by_check_config(tmp_path):
    done = run_cli(["check-config"], tmp_path, PERPBOT_VENUES__BYBIT__SYMBOLS="[]")
    assert done.returncode == 2 and done.stdout == ""
    assert "venues.bybit.symbols" in done.stderr


def test_disabled_venue_may_have_no_symbols(tmp_path, monkeypatch):
    monkeypatch.setenv("PERPBOT_VENUES__BINANCE__ENABLED", "false")
    s = load_settings(write(tmp_path, "venues:\n  binance:\n    symbols: []\n"))
    assert [name for name, _ in s.venues.enabled()] == ["okx", "hyperliquid", "bybit"]


def test_enabled_venue_without_symbols_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, "venues:\n  okx:\n    symbols: []\n"))
    message = str(err.value)
    assert "\n" not in message and "venues.okx.symbols" in message and "venues.okx.enabled" in message


# -- execution.shutdown_grace_s -------------------------------------------------------------------


def test_shutdown_grace_defaults_to_20_seconds():
    assert load_settings().execution.shutdown_grace_s == 20.0


@pytest.mark.parametrize("value", ["0.5", "20", "29.9"])
def test_shutdown_grace_accepts_values_inside_the_docker_grace(tmp_path, value):
    s = load_settings(write(tmp_path, f"execution:\n  shutdown_grace_s: {value}\n"))
    assert s.execution.shutdown_grace_s == float(value)


@pytest.mark.parametrize("value, why", [("0", "greater than 0"), ("-1", "greater than 0"), (".nan", "greater than 0"),
                                        ("30", "less than 30"), ("45", "less than 30"), (".inf", "less than 30")])
def test_shutdown_grace_refuses_values_outside_0_to_30(tmp_path, value, why):
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, f"execution:\n  shutdown_grace_s: {value}\n"))
    message = str(err.value)
    assert message.startswith("config error: execution.shutdown_grace_s") and why in message and "\n" not in message


def test_shutdown_grace_from_env_is_validated_and_keeps_other_execution_keys(monkeypatch):
    monkeypatch.setenv("PERPBOT_EXECUTION__SHUTDOWN_GRACE_S", "12.5")
    s = load_settings()
    assert s.execution.shutdown_grace_s == 12.5 and s.execution.order_timeout_s == 5.0
    monkeypatch.setenv("PERPBOT_EXECUTION__SHUTDOWN_GRACE_S", "31")
    with pytest.raises(ConfigError, match="execution.shutdown_grace_s"):
        load_settings()


def test_docker_stop_grace_period_exceeds_every_valid_shutdown_grace():
    compose = yaml.safe_load((REPO / "deploy" / "docker-compose.yml").read_text())
    period = compose["services"]["perpbot"]["stop_grace_period"]
    match = re.fullmatch(r"(\d+)s", str(period))
    assert match, period
    assert int(match.group(1)) >= STOP_GRACE_PERIOD_S  # validation refuses shutdown_grace_s >= this bound
    assert not math.isinf(STOP_GRACE_PERIOD_S)


def test_shipped_config_yaml_documents_shutdown_grace_and_loads():
    shipped = yaml.safe_load((REPO / "config.yaml").read_text())
    assert shipped["execution"]["shutdown_grace_s"] == 20
    assert load_settings(REPO / "config.yaml").execution.shutdown_grace_s == 20.0


def test_bad_sim_command_line_override_is_one_config_error_line(capsys):
    assert main(["sim", "--admin-port", "70000"]) == EXIT_CONFIG
    err = capsys.readouterr().err.strip()
    assert err.startswith("config error: sim.admin_port = 70000") and "\n" not in err
