"""The operator's own Prometheus metrics about its autoscaler: what it decided, what it measured, how often it
scaled. Names are constants so dashboards, alerts and tests refer to one spelling.

Registered in the operator's registry (metrics/operator_metrics.py), which its /metrics endpoint serves.
"""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge

from yolo_operator.metrics.operator_metrics import REGISTRY

DESIRED_REPLICAS = "yolo_operator_autoscaler_desired_replicas"
"""Gauge {namespace, name}: replicas the autoscaler wants."""
CURRENT_REPLICAS = "yolo_operator_autoscaler_current_replicas"
"""Gauge {namespace, name}: replicas the Deployment had when the autoscaler ran."""
METRIC_VALUE = "yolo_operator_autoscaler_metric_value"
"""Gauge {namespace, name, metric}: the metric's current mean over the replicas."""
METRIC_TARGET = "yolo_operator_autoscaler_metric_target"
"""Gauge {namespace, name, metric}: the target it is compared with."""
SCALE_EVENTS_TOTAL = "yolo_operator_autoscaler_scale_events_total"
"""Counter {namespace, name, direction}: scales performed."""
METRIC_ERRORS_TOTAL = "yolo_operator_autoscaler_metric_errors_total"
"""Counter {namespace, name, reason}: steps without a usable metric (ScalingActive False)."""

_NS = ["namespace", "name"]
desired_replicas = Gauge(DESIRED_REPLICAS, "Replicas the autoscaler wants", _NS, registry=REGISTRY)
current_replicas = Gauge(CURRENT_REPLICAS, "Replicas before the autoscaler step", _NS, registry=REGISTRY)
metric_value = Gauge(METRIC_VALUE, "Current metric value (mean per replica)", [*_NS, "metric"], registry=REGISTRY)
metric_target = Gauge(METRIC_TARGET, "Target metric value per replica", [*_NS, "metric"], registry=REGISTRY)
# prometheus_client appends `_total` to counter names itself: give it the base name.
scale_events = Counter(
    SCALE_EVENTS_TOTAL.removesuffix("_total"),
    "Scales performed by the autoscaler",
    [*_NS, "direction"],
    registry=REGISTRY,
)
metric_errors = Counter(
    METRIC_ERRORS_TOTAL.removesuffix("_total"),
    "Autoscaler steps without a usable metric",
    [*_NS, "reason"],
    registry=REGISTRY,
)


def forget(namespace: str, name: str) -> None:
    """Drop a deleted service's series so they do not linger on dashboards."""
    for gauge in (desired_replicas, current_replicas):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, name)
    for labelled in (metric_value, metric_target):
        for metric in ("gpuUtilization", "queueDepth"):
            with contextlib.suppress(KeyError):
                labelled.remove(namespace, name, metric)
