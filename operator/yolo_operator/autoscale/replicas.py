"""Desired replicas from one metric reading, as kube-controller-manager's HPA replica calculator does it.

Why a re-implementation: users know the HPA's behaviour (ratio, tolerance, how missing and unready pods are
treated); the operator runs the same algorithm itself because its metrics (NVML utilisation, queue depth from
each replica's /metrics, or a PromQL query) need no custom-metrics adapter that way.

Two shapes of reading, like the HPA's two families of metrics:

- per-pod samples (source `pods`): the HPA's "Pods" metric path. Pods are grouped into ready pods with a value,
  ready pods without one ("missing"), and unready pods (Pending, or Running but not Ready: the operator scrapes only
  ready pods). Missing pods count as the target on scale-down and 0 on scale-up; unready pods count as 0 on
  scale-up and are left out otherwise; a result that would flip the scaling direction keeps the current count.
- one value already averaged over the replicas (source `prometheus`): the HPA's object-metric "Value" path,
  ratio × ready pods.

Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

DEFAULT_TOLERANCE = 0.1
"""kube-controller-manager's --horizontal-pod-autoscaler-tolerance."""

PodState = Literal["ready", "unready", "gone"]


class MetricsUnavailable(Exception):
    """No usable metric: the autoscaler must keep the current replicas (the HPA's ScalingActive=False)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class PodSample:
    """One pod of the service and, when it was read, its metric value."""

    name: str
    state: PodState
    """ready: Running and Ready. unready: Pending or not Ready. gone: terminating or Failed (ignored)."""
    value: float | None = None


@dataclass(frozen=True)
class Recommendation:
    """The calculator's answer before stabilisation and rate limits."""

    replicas: int
    metric_value: float
    """The metric's mean over the pods that reported it (what status shows)."""
    ready_pods: int
    missing_pods: int = 0
    unready_pods: int = 0


def _within_tolerance(ratio: float, tolerance: float) -> bool:
    return abs(1.0 - ratio) <= tolerance


def from_pod_samples(
    current_replicas: int, target: float, samples: Sequence[PodSample], tolerance: float = DEFAULT_TOLERANCE
) -> Recommendation:
    """The HPA's plain (per-pod) metric calculation. Raises MetricsUnavailable when no ready pod reported."""
    if target <= 0:
        raise ValueError("target must be positive")
    live = [s for s in samples if s.state != "gone"]
    if not live:
        raise MetricsUnavailable("NoPods", "no pods of the service exist to read the metric from")
    unready = [s for s in live if s.state == "unready"]
    missing = [s for s in live if s.state == "ready" and s.value is None]
    values = {s.name: float(s.value) for s in live if s.state == "ready" and s.value is not None}
    if not values:
        raise MetricsUnavailable(
            "MissingMetrics",
            f"none of the {len(live)} pods reported the metric ({len(missing)} ready without it, "
            f"{len(unready)} not ready)",
        )
    mean = sum(values.values()) / len(values)
    ratio = mean / target

    rebalance_unready = bool(unready) and ratio > 1.0
    if not rebalance_unready and not missing:
        if _within_tolerance(ratio, tolerance):
            return Recommendation(current_replicas, mean, len(values), 0, len(unready))
        return Recommendation(math.ceil(ratio * len(values)), mean, len(values), 0, len(unready))

    # Fill the gaps pessimistically for the direction we are heading in, so a gap never exaggerates a change.
    filled = dict(values)
    fill_missing = target if ratio < 1.0 else 0.0
    for s in missing:
        filled[s.name] = fill_missing
    if rebalance_unready:
        for s in unready:
            filled[s.name] = 0.0
    new_ratio = sum(filled.values()) / len(filled) / target
    flipped = (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio)
    if _within_tolerance(new_ratio, tolerance) or flipped:
        replicas = current_replicas
    else:
        replicas = math.ceil(new_ratio * len(filled))
        if (new_ratio < 1.0 and replicas > current_replicas) or (new_ratio > 1.0 and replicas < current_replicas):
            replicas = current_replicas
    return Recommendation(replicas, mean, len(values) + len(missing), len(missing), len(unready))


def from_mean_value(
    current_replicas: int, ready_pods: int, target: float, value: float, tolerance: float = DEFAULT_TOLERANCE
) -> Recommendation:
    """The HPA's object-metric "Value" calculation: one value for the whole service, ratio × ready pods."""
    if target <= 0:
        raise ValueError("target must be positive")
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise MetricsUnavailable("InvalidMetricValue", f"the query returned {value}, not a non-negative number")
    ratio = value / target
    if current_replicas == 0:
        return Recommendation(math.ceil(ratio), value, ready_pods)
    if _within_tolerance(ratio, tolerance):
        return Recommendation(current_replicas, value, ready_pods)
    if ready_pods == 0:
        raise MetricsUnavailable("NoReadyPods", "no ready pods to scale the query's value by")
    return Recommendation(math.ceil(ratio * ready_pods), value, ready_pods)
