"""The alert rules: valid for Prometheus (promtool check), behaving as intended on synthetic series (promtool test
rules with tests/monitoring/rules_test.yaml), and each one documented in a runbook."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from promql import APT_HINT, RUNBOOKS, alerts, find_tool, rule_groups

pytestmark = pytest.mark.unit

HERE = Path(__file__).resolve().parent
REQUIRED_ALERTS = {
    "YoloTrainGpuIdle",
    "YoloTrainStalled",
    "YoloTuningFailed",
    "YoloInferenceLatencyHigh",
    "YoloAutoscalerAtMaxReplicas",
    "YoloOperatorReconcileErrors",
}


@pytest.fixture(scope="module")
def promtool() -> str:
    path = find_tool("promtool")
    assert path, f"promtool not found: {APT_HINT}"
    return path


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_groups(), sort_keys=False))
    shutil.copy(HERE / "rules_test.yaml", tmp_path / "rules_test.yaml")
    return tmp_path


def test_promtool_check_rules(promtool: str, rules_dir: Path) -> None:
    proc = subprocess.run(
        [promtool, "check", "rules", str(rules_dir / "rules.yaml")], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_unit_tests(promtool: str, rules_dir: Path) -> None:
    proc = subprocess.run(
        [promtool, "test", "rules", "rules_test.yaml"], cwd=rules_dir, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_alert_is_unit_tested() -> None:
    tested = {
        case["alertname"]
        for test in yaml.safe_load((HERE / "rules_test.yaml").read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert {a["alert"] for a in alerts()} <= tested


def test_required_alerts_exist_with_severity_and_runbook() -> None:
    names = {a["alert"] for a in alerts()}
    assert names >= REQUIRED_ALERTS, REQUIRED_ALERTS - names
    runbooks = RUNBOOKS.read_text()
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in runbooks.splitlines()
        if line.startswith("## ")
    }
    for alert in alerts():
        assert alert["labels"]["severity"] in {"info", "warning", "critical"}, alert["alert"]
        url = alert["annotations"]["runbook_url"]
        assert url.endswith("docs/runbooks.md#" + alert["alert"].lower()), url
        assert alert["alert"].lower() in headings, f"docs/runbooks.md has no `## {alert['alert']}` section"
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]
