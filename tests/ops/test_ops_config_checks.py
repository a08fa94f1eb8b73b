"""The deployment files pass the same linters CI runs, and hold the SPEC's names, thresholds and panel places."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml

from ops.conftest import DEPLOY, REPO, SCRIPTS

DASHBOARD = REPO / "dashboards" / "perpbot-main.json"
RUNBOOK = REPO / "docs" / "RUNBOOK.md"


def run(*cmd: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True, timeout=120)


def assert_ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"{proc.args} failed:\n{proc.stdout}\n{proc.stderr}"


def alert_rules() -> list[dict]:
    doc = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def runbook_anchors() -> set[str]:
    anchors = set()
    for line in RUNBOOK.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"\s+", "-", re.sub(r"[^\w\s-]", "", title)))
    return anchors


def test_compose_config_renders_the_stack_with_spec_names():
    proc = run("docker-compose", "-f", "deploy/docker-compose.yml", "config", "--format", "json")
    assert_ok(proc)
    config = json.loads(proc.stdout)
    assert config["name"] == "perpbot"
    assert set(config["services"]) == {"perpbot", "redis", "prometheus", "alertmanager", "grafana"}
    assert config["volumes"]["redis-data"]["name"] == "perpbot_redis-data"
    published = {name: {(p.get("host_ip"), p["published"]) for p in svc.get("ports", [])}
                 for name, svc in config["services"].items()}
    assert published["perpbot"] == {("127.0.0.1", "8000")}
    assert {p for _, p in published["prometheus"]} == {"9090"}
    assert {p for _, p in published["alertmanager"]} == {"9093"}
    assert {p for _, p in published["grafana"]} == {"3000"}
    assert "--appendonly" in config["services"]["redis"]["command"]
    assert "yes" in config["services"]["redis"]["command"]


def test_compose_binds_the_api_elsewhere_only_when_asked():
    proc = subprocess.run(["docker-compose", "-f", "deploy/docker-compose.yml", "config", "--format", "json"],
                          cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**__import__("os").environ, "PERPBOT_BIND_ADDRESS": "0.0.0.0"})
    assert_ok(proc)
    ports = json.loads(proc.stdout)["services"]["perpbot"]["ports"]
    assert ports[0]["host_ip"] == "0.0.0.0"


def test_dockerfile_is_hadolint_clean_non_root_with_healthcheck():
    assert_ok(run("hadolint", "deploy/Dockerfile"))
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^USER 10001", text, re.M)
    assert "HEALTHCHECK" in text and "/health/ready" in text
    assert "python:3.11-slim" in text


def test_prometheus_config_and_rules_pass_promtool():
    assert_ok(run("promtool", "check", "config", "deploy/prometheus/prometheus.yml"))
    assert_ok(run("promtool", "check", "rules", "deploy/prometheus/alerts.yml"))


def test_promtool_rule_unit_tests_pass():
    assert_ok(run("promtool", "test", "rules", "alerts_test.yml", cwd=DEPLOY / "prometheus"))


def test_every_alert_rule_has_firing_and_silent_unit_tests():
    tests = yaml.safe_load((DEPLOY / "prometheus" / "alerts_test.yml").read_text())["tests"]
    firing, silent = set(), set()
    for case in tests:
        for check in case["alert_rule_test"]:
            (firing if check["exp_alerts"] else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - firing == set(), "rules without a firing test"
    assert names - silent == set(), "rules without a non-firing test"


def test_every_alert_has_severity_incident_class_and_an_existing_runbook_anchor():
    anchors = runbook_anchors()
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["labels"]["incident_class"] in ("P0", "P1", "P2", "P3"), rule["alert"]
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert anchor in anchors, f"{rule['alert']} points at missing runbook section #{anchor}"


def test_alerts_carry_the_spec_thresholds():
    exprs = {rule["alert"]: " ".join(rule["expr"].split()) for rule in alert_rules()}
    assert exprs["PerpbotHealthCritical"] == "perpbot_system_health < 70"
    assert exprs["PerpbotWebSocketLatencyHigh"] == "perpbot_websocket_latency_current_seconds > 0.2"
    assert "rate(perpbot_orders_success_total[5m])" in exprs["PerpbotOrderSuccessRateLow"]
    assert "< 0.9" in exprs["PerpbotOrderSuccessRateLow"]
    assert exprs["PerpbotCapitalUtilizationHigh"] == "perpbot_capital_utilization_percent > 80"
    assert exprs["PerpbotTooManyPositions"] == "perpbot_active_positions > 10"
    assert exprs["PerpbotDown"] == 'up{job="perpbot"} == 0'
    assert exprs["PerpbotTradingHalted"] == 'perpbot_trading_state{state="HALTED"} == 1'
    assert "perpbot_unhedged_notional_usdt" in exprs["PerpbotUnhedgedExposure"]
    assert "perpbot_book_resyncs_total" in exprs["PerpbotBookResyncStorm"]
    assert exprs["PerpbotWebSocketDisconnected"] == "perpbot_websocket_connected == 0"


def test_alertmanager_config_is_valid_and_routes_critical_to_pager_and_warning_to_chat():
    path = "deploy/alertmanager/alertmanager.yml"
    assert_ok(run("amtool", "check-config", path))
    critical = run("amtool", "config", "routes", "test", f"--config.file={path}", "severity=critical", "alertname=PerpbotDown")
    warning = run("amtool", "config", "routes", "test", f"--config.file={path}", "severity=warning", "alertname=PerpbotTooManyPositions")
    assert critical.stdout.strip() == "pager"
    assert warning.stdout.strip() == "chat"


def test_ops_scripts_are_shellcheck_clean():
    scripts = sorted(str(p) for p in SCRIPTS.glob("*.sh")) + [str(REPO / ".ci" / "ops-tools.sh")]
    assert len(scripts) >= 4
    assert_ok(run("shellcheck", *scripts))


def test_dashboard_has_the_spec_panels_in_the_spec_places():
    panels = {p["title"]: p["gridPos"] for p in json.loads(DASHBOARD.read_text())["panels"]}
    for title in ("System Health", "Active Positions", "Capital Utilization", "WebSocket Latency", "Order Success Rate"):
        assert title in panels, title
    bottom = max(g["y"] for g in panels.values())
    health, positions = panels["System Health"], panels["Active Positions"]
    assert (health["x"], health["y"]) == (0, 0), "System Health top left"
    assert positions["y"] == 0 and positions["x"] + positions["w"] == 24, "Active Positions top right"
    assert panels["Capital Utilization"]["x"] + panels["Capital Utilization"]["w"] == 24, "Capital Utilization right"
    latency = panels["WebSocket Latency"]
    assert 0 < latency["y"] < bottom, "WebSocket Latency in the middle"
    assert panels["Order Success Rate"]["y"] == bottom, "Order Success Rate at the bottom"
    for extra in ("PnL (USDT)", "Arbitrage Opportunities / min", "Risk Refusals by Reason (1h)", "Valid Books",
                  "Book Resyncs (15m)", "Trading State", "Event-Loop Lag"):
        assert extra in panels, extra


def test_dashboard_panels_do_not_overlap():
    cells = set()
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps at {(x, y)}"
                cells.add((x, y))


def test_every_dashboard_and_runbook_query_is_valid_promql(tmp_path: Path):
    from ops.test_deployed_stack import dashboard_queries, runbook_queries

    queries = dashboard_queries() + runbook_queries()
    assert len(queries) > 20
    rules = {"groups": [{"name": "queries", "rules": [{"record": f"check:q{n}", "expr": q} for n, q in enumerate(queries)]}]}
    (tmp_path / "q.yml").write_text(yaml.safe_dump(rules))
    assert_ok(run("promtool", "check", "rules", str(tmp_path / "q.yml")))


def test_grafana_provisioning_points_at_the_dashboards_and_prometheus():
    ds = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert ds["datasources"][0]["uid"] == "prometheus"
    assert ds["datasources"][0]["url"] == "http://prometheus:9090"
    uids = {t["datasource"]["uid"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]}
    assert uids == {"prometheus"}
    provider = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "perpbot.yml").read_text())
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"../dashboards:{provider['providers'][0]['options']['path']}:ro" in mounts


def test_ops_tools_script_runs_every_check_and_passes():
    proc = run("bash", ".ci/ops-tools.sh")
    assert_ok(proc)
    for check in ("docker-compose", "hadolint", "promtool check config", "promtool test rules", "amtool", "shellcheck"):
        assert f"ops-tools: {check}" in proc.stdout
