"""The operator's own Prometheus metrics: names as constants (dashboards and alerts use them), the collectors in
one registry, and the HTTP endpoint that serves them.

Collectors are created once per process (a second registration would raise), so an operator restarted in the same
process (tests) keeps counting where it left off.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

RECONCILES_TOTAL = "yolo_operator_reconciles_total"  # labels: kind, result (ok | error)
RECONCILE_ERRORS_TOTAL = "yolo_operator_reconcile_errors_total"  # labels: kind
RECONCILE_RETRIES_TOTAL = "yolo_operator_reconcile_retries_total"  # labels: kind, cause (Invalid, Forbidden, ...)
PHASE_TRANSITIONS_TOTAL = "yolo_operator_phase_transitions_total"  # labels: kind, from, to
TUNING_DURATION_SECONDS = "yolo_operator_tuning_duration_seconds"  # histogram of measured tuning phases
PROGRESS_SCRAPE_ERRORS_TOTAL = "yolo_operator_progress_scrape_errors_total"  # labels: kind
CHILD_WRITES_TOTAL = "yolo_operator_child_writes_total"  # labels: kind, child, outcome (applied | skipped)

REGISTRY = CollectorRegistry(auto_describe=True)

# prometheus_client appends `_total` to counter names itself: give it the base name.
reconciles = Counter(
    RECONCILES_TOTAL.removesuffix("_total"), "Reconciliations run", ["kind", "result"], registry=REGISTRY
)
reconcile_errors = Counter(
    RECONCILE_ERRORS_TOTAL.removesuffix("_total"), "Reconciliations that raised", ["kind"], registry=REGISTRY
)
reconcile_retries = Counter(
    RECONCILE_RETRIES_TOTAL.removesuffix("_total"),
    "Failed reconciles scheduled for a retry (with backoff), by the failure's cause",
    ["kind", "cause"],
    registry=REGISTRY,
)
phase_transitions = Counter(
    PHASE_TRANSITIONS_TOTAL.removesuffix("_total"),
    "Phase changes of custom resources",
    ["kind", "from", "to"],
    registry=REGISTRY,
)
tuning_duration = Histogram(
    TUNING_DURATION_SECONDS,
    "Wall-clock duration of measured tuning phases",
    buckets=(10, 30, 60, 120, 240, 480, 900, 1800, 3600),
    registry=REGISTRY,
)
progress_scrape_errors = Counter(
    PROGRESS_SCRAPE_ERRORS_TOTAL.removesuffix("_total"),
    "Failed reads of a workload pod's metrics",
    ["kind"],
    registry=REGISTRY,
)

child_writes = Counter(
    CHILD_WRITES_TOTAL.removesuffix("_total"),
    "Rendered children applied, or skipped because their watched copy already holds what would be applied",
    ["kind", "child", "outcome"],
    registry=REGISTRY,
)


def serve(port: int, addr: str = "0.0.0.0") -> object:
    """Start the /metrics endpoint in a daemon thread; returns the server (call `.shutdown()` to stop it)."""
    server, _thread = start_http_server(port, addr=addr, registry=REGISTRY)
    return server
