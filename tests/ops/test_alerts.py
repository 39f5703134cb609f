"""Prometheus alert rules: valid, and each alert's unit test in ops/prometheus/alerts_test.yml passes."""

import subprocess
from pathlib import Path

import yaml

RULES = Path(__file__).resolve().parents[2] / "ops" / "prometheus"
REQUIRED_ALERTS = {
    "MLOpsHighErrorRate",  # > 1% for 5 m
    "MLOpsHighLatencyP95",  # p95 > 100 ms
    "MLOpsCanaryLatencyRegression",  # canary p95 > 1.3 x production
    "MLOpsNoModelsLoaded",
    "MLOpsPredictionLogSpilling",
    "MLOpsCanaryRolledBack",
}


def _alerts() -> dict[str, dict]:
    groups = yaml.safe_load((RULES / "alerts.yml").read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def test_promtool_check_rules(promtool):
    result = subprocess.run([promtool, "check", "rules", "alerts.yml"], cwd=RULES, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass(promtool):
    result = subprocess.run([promtool, "test", "rules", "alerts_test.yml"], cwd=RULES, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_required_alerts_exist_with_their_thresholds():
    alerts = _alerts()
    assert set(alerts) >= REQUIRED_ALERTS
    assert "> 0.01" in alerts["MLOpsHighErrorRate"]["expr"] and alerts["MLOpsHighErrorRate"]["for"] == "5m"
    assert "> 0.1" in alerts["MLOpsHighLatencyP95"]["expr"]
    assert "1.3 *" in alerts["MLOpsCanaryLatencyRegression"]["expr"]


def test_every_alert_has_a_firing_unit_test():
    tested = yaml.safe_load((RULES / "alerts_test.yml").read_text())["tests"]
    fired = {case["alertname"] for test in tested for case in test["alert_rule_test"] if case.get("exp_alerts")}
    quiet = {case["alertname"] for test in tested for case in test["alert_rule_test"] if not case.get("exp_alerts")}
    assert set(_alerts()) <= fired, f"alerts without a firing case: {set(_alerts()) - fired}"
    assert set(_alerts()) <= quiet, f"alerts without a case where they must stay quiet: {set(_alerts()) - quiet}"
