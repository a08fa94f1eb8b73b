"""The margin-safety alert rules (deploy/prometheus/alerts_margin.yml): promtool-valid, loaded by Prometheus,
each rule with a firing and a silent unit test, labelled like every other rule, with a runbook section."""

from __future__ import annotations

import yaml

from ops.conftest import DEPLOY
from ops.test_ops_config_checks import assert_ok, run, runbook_anchors


def margin_rules() -> list[dict]:
    doc = yaml.safe_load((DEPLOY / "prometheus" / "alerts_margin.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def test_margin_rules_pass_promtool_and_prometheus_loads_them():
    assert_ok(run("promtool", "check", "rules", "deploy/prometheus/alerts_margin.yml"))
    assert_ok(run("promtool", "test", "rules", "alerts_margin_test.yml", cwd=DEPLOY / "prometheus"))
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    assert "alerts_margin.yml" in config["rule_files"]


def test_every_margin_rule_has_firing_and_silent_tests_labels_and_a_runbook_section():
    tests = yaml.safe_load((DEPLOY / "prometheus" / "alerts_margin_test.yml").read_text())["tests"]
    firing, silent = set(), set()
    for case in tests:
        for check in case["alert_rule_test"]:
            (firing if check["exp_alerts"] else silent).add(check["alertname"])
    rules = margin_rules()
    names = {rule["alert"] for rule in rules}
    assert names == {"PerpbotLegNearLiquidation", "PerpbotLegLiquidationImminent", "PerpbotLegAdlRankHigh",
                     "PerpbotLegLiquidatedOrDeleveraged", "PerpbotCollateralImbalanced", "PerpbotVenuePreflightFailed", "PerpbotQuoteRateStale",
                     "PerpbotInternalTransferFailed"}
    assert names - firing == set() and names - silent == set()
    anchors = runbook_anchors()
    for rule in rules:
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["labels"]["incident_class"] in ("P0", "P1", "P2", "P3"), rule["alert"]
        assert rule["annotations"]["runbook"].split("#", 1)[1] in anchors, rule["alert"]
