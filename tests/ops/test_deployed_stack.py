"""Done-when: a real Prometheus scrapes a running perpbot on the simulator; every panel and runbook query has data.

Starts `python -m perpbot.cli run --config <tmp>` with its HTTP API and the simulator's venues on free loopback
ports, waits for /health/ready, starts `prometheus` scraping it every second (with deploy/prometheus/alerts.yml
loaded), then queries through Prometheus' HTTP API every expression of dashboards/*.json and every ```promql
block of docs/RUNBOOK.md. validate_perpbot_v2.py and health-check.sh run against the same bot.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from ops.conftest import DEPLOY, REPO, SCRIPTS, TOKEN, loopback_port

QUERY_DEADLINE_S = 60.0


def dashboard_queries() -> list[str]:
    out = []
    for path in sorted((REPO / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            out.extend(t["expr"] for t in panel.get("targets", []) if t.get("expr"))
    return out


def runbook_queries() -> list[str]:
    text = (REPO / "docs" / "RUNBOOK.md").read_text()
    return [block.strip() for block in re.findall(r"```promql\n(.*?)```", text, re.S)]


def http_json(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.status, json.loads(resp.read() or b"null")


def wait_for(what: str, condition, deadline_s: float, proc: subprocess.Popen | None = None, log: Path | None = None):
    """Poll `condition()` until truthy; fail naming `what` (and the process log) at the deadline."""
    deadline = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what}: process exited with {proc.returncode}\n{tail(log)}")
        try:
            value = condition()
            if value:
                return value
        except (OSError, ValueError) as exc:
            last = exc
        time.sleep(0.25)
    pytest.fail(f"{what}: not reached within {deadline_s}s (last error: {last})\n{tail(log)}")


def tail(path: Path | None, lines: int = 40) -> str:
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def bot(tmp_path_factory):
    work = tmp_path_factory.mktemp("bot")
    http_port = loopback_port()
    venues = ("okx", "hyperliquid", "binance", "bybit")
    config = {
        "mode": "sim",
        "log_dir": str(work / "logs"),
        "journal": {"path": str(work / "data" / "journal.sqlite")},
        "http": {"host": "127.0.0.1", "port": http_port},
        "sim": {"enabled": True, "ports": {v: loopback_port() for v in venues}, "admin_port": loopback_port()},
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERPBOT_")}
    env.update({"PERPBOT_API_TOKEN": TOKEN, "PYTHONPATH": str(REPO)})
    log = work / "stdout.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "perpbot.cli", "run", "--config", str(work / "config.yaml")],
                                cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{http_port}"
    try:
        def ready():
            try:
                return http_json(f"{url}/health/ready")[0] == 200
            except urllib.error.HTTPError:
                return False
        wait_for("perpbot /health/ready", ready, 90, proc, log)
        yield {"url": url, "port": http_port, "log": log, "work": work}
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def prometheus(bot, tmp_path_factory):
    binary = shutil.which("prometheus")
    assert binary, "prometheus binary required (Debian package prometheus; .ci/ops-tools.sh installs it)"
    work = tmp_path_factory.mktemp("prometheus")
    shutil.copy(DEPLOY / "prometheus" / "alerts.yml", work / "alerts.yml")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(work / "alerts.yml")],
        "scrape_configs": [{"job_name": "perpbot", "metrics_path": "/metrics",
                            "static_configs": [{"targets": [f"127.0.0.1:{bot['port']}"]}]}],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = loopback_port()
    log = work / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([binary, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'tsdb'}",
                                 f"--web.listen-address=127.0.0.1:{port}"], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("prometheus ready", lambda: urllib.request.urlopen(f"{url}/-/ready", timeout=2).status == 200, 60, proc, log)
        yield url
    finally:
        stop(proc)


def query(prom: str, expr: str) -> list:
    status, body = http_json(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_prometheus_has_data_for_every_dashboard_panel_and_runbook_query(prometheus):
    wait_for("perpbot scraped (up == 1)", lambda: any(r["value"][1] == "1" for r in query(prometheus, 'up{job="perpbot"}')), 60)
    pending = dict.fromkeys(dashboard_queries() + runbook_queries())
    assert len(pending) > 20
    deadline = time.monotonic() + QUERY_DEADLINE_S
    while pending and time.monotonic() < deadline:
        for expr in list(pending):
            if query(prometheus, expr):
                del pending[expr]
        if pending:
            time.sleep(1.0)  # the next scrape (1 s interval) is what can bring data
    assert not pending, "queries with no data after {}s:\n  {}".format(QUERY_DEADLINE_S, "\n  ".join(pending))


def test_attribution_rules_are_healthy_and_every_series_they_read_has_data(prometheus):
    """The attribution rules (issue 18) Prometheus loaded evaluate without error, and every series they
    read (the bot's perpbot_* and the recorded perpbot:* measures) has data from the bot on the simulator."""
    def attribution_rules():
        status, body = http_json(f"{prometheus}/api/v1/rules")
        return [r for g in body["data"]["groups"] if g["name"] == "perpbot.attribution" for r in g["rules"]]
    rules = attribution_rules()
    assert {r["name"] for r in rules} >= {"PerpbotSlippageAboveExpected", "PerpbotFundingDrift", "PerpbotFeeDrift"}
    pending = dict.fromkeys(sorted({name for r in rules for name in re.findall(r"\bperpbot[:\w]*", r["query"])}
                                   | {r["name"] for r in rules if r["type"] == "recording"}))
    assert len(pending) >= 7
    deadline = time.monotonic() + QUERY_DEADLINE_S
    while pending and time.monotonic() < deadline:
        for name in list(pending):
            if query(prometheus, name):
                del pending[name]
        if pending:
            time.sleep(1.0)  # the next scrape or rule evaluation (1 s) is what can bring data
    assert not pending, f"series read by the attribution rules with no data: {sorted(pending)}"
    assert [(r["name"], r.get("lastError")) for r in attribution_rules() if r["health"] != "ok"] == []


def test_no_critical_alert_fires_on_a_healthy_simulated_deployment(prometheus):
    firing = query(prometheus, 'ALERTS{alertstate="firing",severity="critical"}')
    assert firing == [], [r["metric"]["alertname"] for r in firing]


def test_validator_accepts_the_running_bot(bot):
    env = {k: v for k, v in os.environ.items() if k not in ("PERPBOT_URL", "PERPBOT_API_TOKEN")}
    proc = subprocess.run([sys.executable, str(REPO / "validate_perpbot_v2.py"), "--url", bot["url"], "--token", TOKEN],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "perpbot deployment VALID" in proc.stdout


def test_health_check_accepts_the_running_bot(bot):
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "ALERTMANAGER_URL")}
    env["PERPBOT_URL"] = bot["url"]
    proc = subprocess.run(["bash", str(SCRIPTS / "health-check.sh")], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout
    assert "HEALTHY" in proc.stdout
