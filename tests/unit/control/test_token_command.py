"""`perpbot token`: prints the control API's trade token and nothing else on stdout, for scripts."""

from __future__ import annotations

import stat

from perpbot.cli import main


def test_perpbot_token_creates_then_prints_the_same_generated_token(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no config.yaml, no .env
    monkeypatch.delenv("PERPBOT_API_TOKEN", raising=False)
    monkeypatch.setenv("PERPBOT_JOURNAL__PATH", str(tmp_path / "data" / "journal.sqlite"))
    assert main(["token"]) == 0
    first = capsys.readouterr()
    token = first.out.strip()
    assert len(token) >= 40 and first.out == token + "\n"
    assert "generated now" in first.err and token not in first.err
    path = tmp_path / "data" / "api_token"
    assert path.read_text().strip() == token and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert main(["token"]) == 0
    assert capsys.readouterr().out == token + "\n"


def test_perpbot_token_prints_the_configured_token_and_writes_no_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PERPBOT_API_TOKEN", "configured-operator-token")
    monkeypatch.setenv("PERPBOT_JOURNAL__PATH", str(tmp_path / "data" / "journal.sqlite"))
    assert main(["token"]) == 0
    out = capsys.readouterr()
    assert out.out == "configured-operator-token\n" and "PERPBOT_API_TOKEN" in out.err
    assert not (tmp_path / "data" / "api_token").exists()
