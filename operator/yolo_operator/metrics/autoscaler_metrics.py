"""The operator's own Prometheus metrics about its autoscaler: what it decided, what it measured, how often it
scaled. Names are constants so dashboards, alerts and tests refer to one spelling.

Registered in prometheus_client's default registry, which the operator's metrics endpoint exposes.
"""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge

DESIRED_REPLICAS = "yolo_operator_autoscaler_desired_replicas"
"""Gauge {namespace, name}: replicas the autoscaler wants."""
CURRENT_REPLICAS = "yolo_operator_autoscaler_current_replicas"
"""Gauge {namespace, name}: replicas the Deployment had when the autoscaler ran."""
METRIC_VALUE = "yolo_operator_autoscaler_metric_value"
"""Gauge {namespace, name, metric}: the metric's current mean over the replicas."""
METRIC_TARGET = "yolo_operator_autoscaler_metric_target"
"""Gauge {namespace, name, metric}: the target it is compared with."""
SCALE_EVENTS_TOTAL = "yolo_operator_autoscaler_scale_events"
"""Counter {namespace, name, direction}: scales performed (exposed with the `_total` suffix)."""
METRIC_ERRORS_TOTAL = "yolo_operator_autoscaler_metric_errors"
"""Counter {namespace, name, reason}: steps without a usable metric (exposed with the `_total` suffix)."""

desired_replicas = Gauge(DESIRED_REPLICAS, "Replicas the autoscaler wants", ["namespace", "name"])
current_replicas = Gauge(CURRENT_REPLICAS, "Replicas before the autoscaler step", ["namespace", "name"])
metric_value = Gauge(METRIC_VALUE, "Current metric value (mean per replica)", ["namespace", "name", "metric"])
metric_target = Gauge(METRIC_TARGET, "Target metric value per replica", ["namespace", "name", "metric"])
scale_events = Counter(SCALE_EVENTS_TOTAL, "Scales performed by the autoscaler", ["namespace", "name", "direction"])
metric_errors = Counter(
    METRIC_ERRORS_TOTAL, "Autoscaler steps without a usable metric", ["namespace", "name", "reason"]
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
