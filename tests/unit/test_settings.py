"""Settings scenarios: layering of config.yaml, environment and .env; one-line errors; redaction."""

from __future__ import annotations

import pytest

from perpbot.settings import ConfigError, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for key in list(__import__("os").environ):
        if key.startswith("PERPBOT_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env / config.yaml


def write(tmp_path, text: str):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_environment_overrides_config_file(tmp_path, monkeypatch):
    cfg = write(tmp_path, "risk:\n  max_leverage: 2\nvenues:\n  okx:\n    ws_url: wss://a.example/ws\n")
    monkeypatch.setenv("PERPBOT_VENUES__OKX__WS_URL", "wss://backup.example/ws")
    s = load_settings(cfg)
    assert s.ws_url("okx") == "wss://backup.example/ws"
    assert str(s.risk.max_leverage) == "2"


def test_dotenv_is_read_and_environment_wins_over_it(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("PERPBOT_RISK__MAX_LEVERAGE=4\nPERPBOT_LOG_LEVEL=WARNING\n")
    monkeypatch.setenv("PERPBOT_LOG_LEVEL", "ERROR")
    s = load_settings(write(tmp_path, "log_level: DEBUG\n"))
    assert str(s.risk.max_leverage) == "4"
    assert s.log_level == "ERROR"


def test_bad_value_gives_one_line_naming_key_value_and_rule(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, "risk:\n  max_leverage: -3\n"))
    message = str(err.value)
    assert "\n" not in message
    assert "risk.max_leverage" in message and "-3" in message and "greater than 0" in message


def test_bad_environment_value_names_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("PERPBOT_VENUES__BYBIT__ENVIRONMENT", "prod")
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, ""))
    assert "venues.bybit.environment" in str(err.value) and "'prod'" in str(err.value)
    assert "testnet" in str(err.value)


def test_unknown_key_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="max_leverge"):
        load_settings(write(tmp_path, "risk:\n  max_leverge: 3\n"))


def test_missing_explicit_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "absent.yaml")


def test_secrets_never_appear_in_redacted_dump_or_repr(tmp_path, monkeypatch):
    monkeypatch.setenv("PERPBOT_VENUES__OKX__API_SECRET", "s3cr3t-value-xyz")
    monkeypatch.setenv("PERPBOT_API_TOKEN", "tok-abcdef-123")
    s = load_settings(write(tmp_path, ""))
    assert s.venues.okx.api_secret.get_secret_value() == "s3cr3t-value-xyz"
    dump = repr(s) + str(s.redacted())
    assert "s3cr3t-value-xyz" not in dump and "tok-abcdef-123" not in dump


def test_secret_in_bad_value_error_is_masked(tmp_path, monkeypatch):
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, "venues:\n  okx:\n    api_key: [hunter2, hunter3]\n"))
    assert "venues.okx.api_key" in str(err.value)
    assert "hunter2" not in str(err.value) and "**********" in str(err.value)


def test_venue_urls_default_per_environment_when_simulator_off(tmp_path):
    s = load_settings(write(tmp_path, "mode: paper\nsim:\n  enabled: false\nvenues:\n  bybit:\n    environment: mainnet\n"))
    assert s.ws_url("bybit") == "wss://stream.bybit.com/v5/public/linear"
    assert s.rest_url("hyperliquid") == "https://api.hyperliquid-testnet.xyz"


def test_simulator_defaults_point_every_venue_at_loopback(tmp_path):
    s = load_settings(write(tmp_path, ""))
    for venue, _ in s.venues.items():
        assert s.ws_url(venue).startswith("ws://127.0.0.1:")
        assert s.rest_url(venue).startswith("http://127.0.0.1:")


def test_simulator_refuses_non_loopback_host(tmp_path):
    with pytest.raises(ConfigError, match="sim.host"):
        load_settings(write(tmp_path, "sim:\n  host: 0.0.0.0\n"))
