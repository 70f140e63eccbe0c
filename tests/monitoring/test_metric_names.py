"""Every metric name the alert rules and the Grafana dashboard use is one our components actually export.

Names come from the collectors themselves (the operator's registry, the autoscaler's and the training pod's
gauges in the default registry, a fresh inference-server registry), expanded the way prometheus_client exposes
them (`_total` for counters; `_bucket`, `_sum`, `_count` for histograms). The module-level `yolo_*` constants
in the four metric modules must each match an exported family, so constants and collectors cannot drift apart.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest
from promql import EXTERNAL_METRICS, alerts, dashboard, dashboard_exprs, metric_names

pytestmark = pytest.mark.unit

METRIC_MODULES = (
    "yolo_workloads.train.metrics",
    "yolo_workloads.serve.metrics",
    "yolo_operator.metrics.operator_metrics",
    "yolo_operator.metrics.autoscaler_metrics",
)
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


def exported() -> tuple[set[str], set[str]]:
    """(family names, sample names) of every collector our components register."""
    from prometheus_client import REGISTRY, CollectorRegistry

    modules = {name: importlib.import_module(name) for name in METRIC_MODULES}
    modules["yolo_workloads.train.metrics"].gauges()  # the training gauges register on first use
    registries: list[CollectorRegistry] = [
        REGISTRY,
        modules["yolo_operator.metrics.operator_metrics"].REGISTRY,
        modules["yolo_workloads.serve.metrics"].ServeMetrics().registry,
    ]
    families: set[str] = set()
    samples: set[str] = set()
    for registry in registries:
        for family in registry.collect():
            families.add(family.name)
            samples.update(family.name + s for s in SUFFIXES.get(family.type, ("",)))
    return families, samples


def constants(module: ModuleType) -> set[str]:
    return {v for k, v in vars(module).items() if k.isupper() and isinstance(v, str) and v.startswith("yolo_")}


def test_every_metric_constant_is_exported() -> None:
    families, samples = exported()
    for name in METRIC_MODULES:
        defined = constants(importlib.import_module(name))
        assert defined, f"{name} defines no yolo_* metric name constants"
        missing = {c for c in defined if c not in families and c not in samples}
        assert not missing, f"{name}: constants with no registered collector: {sorted(missing)}"


def test_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (namespace, le) (rate(a_bucket{endpoint=~"x|y"}[5m]))) > 0.25 '
        "and on (pod) (b offset 60m) and changes(c[1h]) == 0 unless d / e"
    )
    assert metric_names(expr) == {"a_bucket", "b", "c", "d", "e"}


def test_alert_rules_use_only_exported_metrics() -> None:
    _, samples = exported()
    for alert in alerts():
        used = metric_names(alert["expr"])
        assert used, f"{alert['alert']}: no metric found in its expression"
        unknown = used - samples - EXTERNAL_METRICS
        assert not unknown, f"alert {alert['alert']} uses metrics nothing exports: {sorted(unknown)}"


def test_dashboard_uses_only_exported_metrics() -> None:
    _, samples = exported()
    exprs = dashboard_exprs()
    assert exprs
    for expr in exprs:
        unknown = metric_names(expr) - samples - EXTERNAL_METRICS
        assert not unknown, f"dashboard query uses metrics nothing exports: {sorted(unknown)}\n{expr}"


def test_dashboard_covers_what_operators_watch() -> None:
    titles = {p["title"] for p in dashboard()["panels"]}
    for wanted in (
        "GPU utilisation per pod",
        "GPU memory used per pod",
        "Training images/s",
        "Inference images/s",
        "Epoch progress",
        "Queue depth",
        "Inference latency percentiles",
        "Replicas over time",
    ):
        assert wanted in titles, f"dashboard lacks the panel {wanted!r}"
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    assert dashboard()["uid"] == "yolo-operator"
