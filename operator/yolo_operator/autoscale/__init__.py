"""PURE: the HPA algorithm over metric samples and history → desired replicas.

replicas.py computes a raw recommendation from one reading; behavior.py holds stabilisation and rate limits;
autoscaler.py runs one full step of the loop.
"""

from yolo_operator.autoscale.autoscaler import Decision, History, decide, events_to_keep, record_scale
from yolo_operator.autoscale.replicas import (
    DEFAULT_TOLERANCE,
    MetricsUnavailable,
    PodSample,
    Recommendation,
    from_mean_value,
    from_pod_samples,
)

__all__ = [
    "DEFAULT_TOLERANCE",
    "Decision",
    "History",
    "MetricsUnavailable",
    "PodSample",
    "Recommendation",
    "decide",
    "events_to_keep",
    "from_mean_value",
    "from_pod_samples",
    "record_scale",
]
