"""One autoscaler step: (spec, current replicas, metric reading, history, now) → desired replicas + conditions.

This is the HPA controller's reconcile loop (horizontal.go) without the API calls: clamp to min/max first, keep
the current count when the metric is unavailable (never fall to minReplicas on missing data), otherwise
stabilise the recommendation and apply the rate limits of `behavior`. The caller keeps `History` between steps
(in memory, as the HPA does) and records each scale it actually made with `record_scale`.

Pure: no I/O; `now` is seconds on a clock that only moves forward.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from yolo_operator.api.inference_service import Autoscaling
from yolo_operator.autoscale.behavior import (
    ScaleEvent,
    resolve,
    scale_down_limit,
    scale_up_limit,
    stabilize,
)
from yolo_operator.autoscale.replicas import MetricsUnavailable, Recommendation


@dataclass(frozen=True)
class History:
    """What the HPA remembers between steps: recent raw recommendations and recent scale events."""

    recommendations: tuple[tuple[float, int], ...] = ()
    up_events: tuple[ScaleEvent, ...] = ()
    down_events: tuple[ScaleEvent, ...] = ()

    @classmethod
    def starting(cls, now: float, current: int) -> History:
        """A fresh history that counts the current replicas as a recent recommendation, as the HPA does on
        start: an operator restart must not scale down before a full window has passed."""
        return cls(recommendations=((now, current),))


@dataclass(frozen=True)
class ConditionState:
    status: bool
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    """What to do now and why."""

    current_replicas: int
    desired_replicas: int
    recommendation: Recommendation | None
    """The calculator's raw answer; None when the metric was unavailable or not needed."""
    stabilized_replicas: int | None
    scaling_active: ConditionState
    scaling_limited: ConditionState
    message: str
    """One sentence with the numbers behind the decision (for Events and logs)."""

    @property
    def direction(self) -> Literal["up", "down"] | None:
        if self.desired_replicas > self.current_replicas:
            return "up"
        if self.desired_replicas < self.current_replicas:
            return "down"
        return None


def _unlimited() -> ConditionState:
    return ConditionState(False, "DesiredWithinRange", "the desired count is within the acceptable range")


def decide(
    spec: Autoscaling,
    current: int,
    reading: Recommendation | MetricsUnavailable,
    history: History,
    now: float,
) -> tuple[Decision, History]:
    """One step of the HPA. Returns the decision and the history to keep for the next step."""
    lo, hi = spec.min_replicas, spec.max_replicas
    if current == 0:
        active = ConditionState(False, "ScalingDisabled", "scaling is disabled since the replica count is 0")
        return Decision(current, 0, None, None, active, _unlimited(), active.message), history
    if current > hi or current < lo:
        bound, reason = (hi, "TooManyReplicas") if current > hi else (lo, "TooFewReplicas")
        text = f"{current} replicas is outside [{lo}, {hi}]; scaling to {bound}"
        limited = ConditionState(True, reason, text)
        active = ConditionState(True, "ValidMetricFound", "replicas brought within minReplicas..maxReplicas")
        return Decision(current, bound, None, None, active, limited, text), history
    if isinstance(reading, MetricsUnavailable):
        text = f"keeping {current} replicas: {reading.message}"
        active = ConditionState(False, reading.reason, reading.message)
        return Decision(current, current, None, None, active, _unlimited(), text), history

    behavior = resolve(spec.behavior)
    stabilized = stabilize(reading.replicas, current, history.recommendations, behavior, now)
    keep_after = now - behavior.longest_window
    recs = (*(r for r in history.recommendations if r[0] > keep_after), (now, reading.replicas))
    new_history = replace(history, recommendations=recs)

    desired, limited = stabilized, _unlimited()
    if stabilized > current:
        limit = max(scale_up_limit(current, behavior.up, history.up_events, history.down_events, now), current)
        if hi > limit:
            bound, reason = limit, "ScaleUpLimit"
        else:
            bound, reason = hi, "TooManyReplicas"
        if stabilized > bound:
            desired = bound
            limited = ConditionState(True, reason, f"the desired count {stabilized} is capped at {bound}")
    elif stabilized < current:
        limit = min(scale_down_limit(current, behavior.down, history.up_events, history.down_events, now), current)
        if lo < limit:
            bound, reason = limit, "ScaleDownLimit"
        else:
            bound, reason = lo, "TooFewReplicas"
        if stabilized < bound:
            desired = bound
            limited = ConditionState(True, reason, f"the desired count {stabilized} is held at {bound}")

    active = ConditionState(
        True, "ValidMetricFound", f"the metric {spec.metric} is {reading.metric_value:.4g} (target {spec.target:g})"
    )
    text = (
        f"{spec.metric} {reading.metric_value:.4g} vs target {spec.target:g} over {reading.ready_pods} ready pods"
        f" ({reading.missing_pods} missing, {reading.unready_pods} unready): recommended {reading.replicas},"
        f" stabilised {stabilized}, desired {desired} (from {current})"
    )
    return Decision(current, desired, reading, stabilized, active, limited, text), new_history


def record_scale(history: History, now: float, old: int, new: int, keep_seconds: float) -> History:
    """Remember a scale that was applied, for the rate limits; forget events older than `keep_seconds`."""
    cutoff = now - keep_seconds
    up = tuple(e for e in history.up_events if e.time > cutoff)
    down = tuple(e for e in history.down_events if e.time > cutoff)
    if new > old:
        up = (*up, ScaleEvent(now, new - old))
    elif new < old:
        down = (*down, ScaleEvent(now, old - new))
    return replace(history, up_events=up, down_events=down)


def events_to_keep(spec: Autoscaling) -> int:
    """How long scale events matter: the longest policy period."""
    return resolve(spec.behavior).longest_period
