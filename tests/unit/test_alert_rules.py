"""The alert rules of deploy/prometheus are valid Prometheus rules, and each fires exactly on
the series of its own unit tests (deploy/prometheus/alerts_test.yml), run by promtool."""

from __future__ import annotations

import shutil
import subprocess

import yaml

from gateway.paths import ROOT

RULES = ROOT / "deploy" / "prometheus"


def promtool(*arguments: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary is not None, "no promtool: `make prometheus-tools` installs it"
    return subprocess.run(
        [binary, *arguments], cwd=RULES, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_alert_rules_pass_promtools_check() -> None:
    checked = promtool("check", "rules", "alerts.yml")

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout


def test_every_alert_passes_its_unit_tests_in_promtool() -> None:
    tested = promtool("test", "rules", "alerts_test.yml")

    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_alert_has_a_unit_test_that_expects_it_to_fire() -> None:
    rules = yaml.safe_load((RULES / "alerts.yml").read_text())
    tests = yaml.safe_load((RULES / "alerts_test.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    fired = {
        case["alertname"]
        for test in tests["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }

    assert fired == alerts
