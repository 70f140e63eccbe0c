"""Helpers shared by the monitoring tests: load the alert rules and dashboard, pull metric names out of PromQL,
find promtool and prometheus."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
MONITORING = REPO / "manifests" / "monitoring"
RULE_FILE = MONITORING / "prometheusrule.yaml"
DASHBOARD = MONITORING / "dashboards" / "yolo-operator.json"
RUNBOOKS = REPO / "docs" / "runbooks.md"
APT_HINT = "Debian/Ubuntu: `apt-get install -y prometheus` (it ships prometheus and promtool)"

# Names our code does not define but rules and panels may use: Prometheus' own `up`, and NVIDIA DCGM exporter's.
EXTERNAL_METRICS = frozenset({"up", "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE"})

_KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "inf",
     "nan", "atan2"}
)  # fmt: skip


def rule_groups() -> dict[str, Any]:
    """The PrometheusRule's spec: exactly the `groups:` document promtool reads."""
    rule = yaml.safe_load(RULE_FILE.read_text())
    assert rule["kind"] == "PrometheusRule"
    return dict(rule["spec"])


def alerts() -> list[dict[str, Any]]:
    return [r for g in rule_groups()["groups"] for r in g["rules"] if "alert" in r]


def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def dashboard_exprs() -> list[str]:
    """Every PromQL expression in the dashboard: panel targets and templating queries."""
    exprs: list[str] = []
    for panel in dashboard()["panels"]:
        exprs.extend(t["expr"] for t in panel.get("targets", []))
    for var in dashboard()["templating"]["list"]:
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if var.get("type") == "query" and isinstance(query, str):
            exprs.append(re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", query))
    return exprs


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects: identifiers that are not functions, keywords, labels or durations."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)  # label lists
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery selectors
    text = re.sub(r"\$\w+", " ", text)  # Grafana variables
    names = set()
    for match in re.finditer(r"(?<![\w.])([A-Za-z_:][A-Za-z0-9_:]*)\b(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if call or word.lower() in _KEYWORDS:
            continue
        names.add(word)
    return names


def find_tool(name: str) -> str | None:
    for candidate in (shutil.which(name), f"/usr/bin/{name}", f"/usr/local/bin/{name}"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None
