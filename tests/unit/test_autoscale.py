"""The HPA replica calculation and behaviour rules, case by case against the HPA's documented semantics."""

from __future__ import annotations

import pytest
from yolo_operator.api.inference_service import Autoscaling, Behavior, ScalingPolicy, ScalingRules
from yolo_operator.autoscale import (
    History,
    MetricsUnavailable,
    PodSample,
    Recommendation,
    decide,
    from_mean_value,
    from_pod_samples,
    record_scale,
)
from yolo_operator.autoscale.behavior import (
    DEFAULT_SCALE_DOWN_POLICIES,
    DEFAULT_SCALE_UP_POLICIES,
    ScaleEvent,
    resolve,
    scale_down_limit,
    scale_up_limit,
    stabilize,
)

pytestmark = pytest.mark.unit


def ready(name: str, value: float | None) -> PodSample:
    return PodSample(name, "ready", value)


# --- replica calculation --------------------------------------------------------------------------------------


def test_ratio_times_ready_pods_rounded_up() -> None:
    rec = from_pod_samples(2, 50, [ready("a", 90), ready("b", 80)])
    assert rec.replicas == 4  # mean 85 / 50 = 1.7 → ceil(3.4)
    assert rec.metric_value == pytest.approx(85)


def test_within_tolerance_keeps_current() -> None:
    assert from_pod_samples(3, 50, [ready("a", 54), ready("b", 54), ready("c", 54)]).replicas == 3
    assert from_pod_samples(3, 50, [ready("a", 46), ready("b", 46), ready("c", 46)]).replicas == 3
    # just outside the 0.1 tolerance
    assert from_pod_samples(3, 50, [ready("a", 56), ready("b", 56), ready("c", 56)]).replicas == 4


def test_missing_pods_count_as_target_on_scale_down() -> None:
    samples = [ready("a", 10), ready("b", 10), ready("c", 10), ready("d", None)]
    rec = from_pod_samples(4, 50, samples)
    # (10+10+10+50)/4/50 = 0.4 → ceil(1.6) = 2, not the 1 the three reporting pods alone would give
    assert rec.replicas == 2
    assert rec.missing_pods == 1


def test_missing_pods_count_as_zero_on_scale_up() -> None:
    samples = [ready("a", 100), ready("b", 100), ready("c", None), ready("d", None)]
    # (100+100+0+0)/4/50 = 1.0 → within tolerance → keep 4
    assert from_pod_samples(4, 50, samples).replicas == 4


def test_unready_pods_count_as_zero_only_on_scale_up() -> None:
    up = [ready("a", 100), ready("b", 100), PodSample("c", "unready"), PodSample("d", "unready")]
    assert from_pod_samples(4, 50, up).replicas == 4
    up_more = [ready("a", 150), ready("b", 150), PodSample("c", "unready")]
    assert from_pod_samples(3, 50, up_more).replicas == 6  # (150+150+0)/3/50 = 2, not 3 → 6 rather than 9
    down = [ready("a", 10), ready("b", 10), PodSample("c", "unready")]
    assert from_pod_samples(3, 50, down).replicas == 1  # unready pods ignored on scale-down: 0.2 × 2 ready


def test_direction_flip_keeps_current() -> None:
    # ratio < 1 from the reporting pods, but the missing pod assumed at target pushes the mean above 1? never:
    # filling at target can only move towards 1. A flip happens with unready pods on a borderline scale-up.
    samples = [ready("a", 56), PodSample("b", "unready")]
    # 56/50 = 1.12 > 1 → unready as 0 → 28/50 = 0.56 < 1: direction flips → keep current
    assert from_pod_samples(2, 50, samples).replicas == 2


def test_gone_pods_are_ignored() -> None:
    rec = from_pod_samples(2, 50, [ready("a", 100), PodSample("b", "gone", 0)])
    assert rec.replicas == 2  # 100/50 × 1 ready


def test_no_metrics_raises_unavailable() -> None:
    with pytest.raises(MetricsUnavailable) as err:
        from_pod_samples(3, 50, [ready("a", None), PodSample("b", "unready")])
    assert err.value.reason == "MissingMetrics"
    with pytest.raises(MetricsUnavailable) as err:
        from_pod_samples(3, 50, [])
    assert err.value.reason == "NoPods"


def test_mean_value_source() -> None:
    assert from_mean_value(2, 2, 70, 140).replicas == 4
    assert from_mean_value(2, 2, 70, 75).replicas == 2  # within tolerance
    assert from_mean_value(4, 4, 70, 10).replicas == 1
    with pytest.raises(MetricsUnavailable):
        from_mean_value(2, 2, 70, float("nan"))


# --- behaviour ------------------------------------------------------------------------------------------------


def test_defaults_are_the_hpas() -> None:
    b = resolve(None)
    assert (b.up.window_seconds, b.down.window_seconds) == (0, 300)
    assert b.up.policies == DEFAULT_SCALE_UP_POLICIES and b.down.policies == DEFAULT_SCALE_DOWN_POLICIES
    partial = resolve(Behavior(scale_down=ScalingRules(stabilization_window_seconds=60)))
    assert partial.down.window_seconds == 60 and partial.down.policies == DEFAULT_SCALE_DOWN_POLICIES
    assert partial.up.window_seconds == 0


def test_stabilize_takes_max_of_down_window_and_min_of_up_window() -> None:
    b = resolve(Behavior(scale_up=ScalingRules(stabilization_window_seconds=60)))
    hist = [(100.0, 5), (250.0, 3), (380.0, 8)]
    # at 400: down window (300 s) holds 5, 3, 8 → never below 8; up window (60 s) holds 8 → up to min(10, 8)
    assert stabilize(10, 4, hist, b, 400) == 8
    # a low recommendation never lowers below the window's highest, and stabilising never raises on its own
    assert stabilize(2, 6, hist, b, 400) == 6
    assert stabilize(2, 9, hist, b, 400) == 8
    # much later only the new recommendation counts
    assert stabilize(2, 6, hist, b, 2000) == 2


def test_default_scale_up_limit_is_max_of_4_pods_and_100_percent() -> None:
    up = resolve(None).up
    assert scale_up_limit(1, up, [], [], 0) == 5
    assert scale_up_limit(10, up, [], [], 0) == 20
    # events inside the period reduce what is left: started the period at 10, already went to 20
    assert scale_up_limit(20, up, [ScaleEvent(5, 10)], [], 10) == 20
    assert scale_up_limit(20, up, [ScaleEvent(5, 10)], [], 21) == 40  # event left the 15 s period


def test_select_policy_min_and_disabled() -> None:
    rules = ScalingRules(
        select_policy="Min",
        policies=[
            ScalingPolicy(type="Pods", value=1, period_seconds=60),
            ScalingPolicy(type="Percent", value=50, period_seconds=60),
        ],
    )
    b = resolve(Behavior(scale_up=rules, scale_down=rules))
    assert scale_up_limit(10, b.up, [], [], 0) == 11
    assert scale_down_limit(10, b.down, [], [], 0) == 9
    off = resolve(Behavior(scale_down=ScalingRules(select_policy="Disabled")))
    assert scale_down_limit(10, off.down, [], [], 0) == 10


def test_percent_scale_down_truncates_like_the_hpa() -> None:
    b = resolve(
        Behavior(scale_down=ScalingRules(policies=[ScalingPolicy(type="Percent", value=50, period_seconds=60)]))
    )
    assert scale_down_limit(5, b.down, [], [], 0) == 2  # int(5 × 0.5)


# --- a full step ----------------------------------------------------------------------------------------------


def spec(**kw: object) -> Autoscaling:
    base: dict[str, object] = {"enabled": True, "min_replicas": 1, "max_replicas": 10, "target": 50}
    base.update(kw)
    return Autoscaling.model_validate(base)


def test_clamped_to_max_with_too_many_replicas_reason() -> None:
    d, _ = decide(spec(max_replicas=3), 2, Recommendation(9, 200, 2), History(), 0)
    assert d.desired_replicas == 3
    assert d.scaling_limited.status and d.scaling_limited.reason == "TooManyReplicas"


def test_current_outside_bounds_is_brought_back_without_metrics() -> None:
    unavailable = MetricsUnavailable("MissingMetrics", "none")
    d, _ = decide(spec(max_replicas=3), 6, unavailable, History(), 0)
    assert d.desired_replicas == 3
    d, _ = decide(spec(min_replicas=2), 1, unavailable, History(), 0)
    assert d.desired_replicas == 2 and d.scaling_limited.reason == "TooFewReplicas"


def test_unavailable_metric_keeps_current_and_sets_scaling_active_false() -> None:
    d, hist = decide(spec(), 4, MetricsUnavailable("PrometheusUnreachable", "connection refused"), History(), 0)
    assert d.desired_replicas == 4 and d.direction is None
    assert not d.scaling_active.status and d.scaling_active.reason == "PrometheusUnreachable"
    assert hist == History()  # nothing recorded from a failed read


def test_restart_does_not_scale_down_before_the_window() -> None:
    hist = History.starting(1000, 5)
    d, hist = decide(spec(), 5, Recommendation(1, 5, 5), hist, 1015)
    assert d.desired_replicas == 5 and d.stabilized_replicas == 5
    d, _ = decide(spec(), 5, Recommendation(1, 5, 5), hist, 1301)
    assert d.desired_replicas == 1


def test_record_scale_feeds_the_rate_limit() -> None:
    s = spec(behavior={"scaleUp": {"policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}]}})
    d, hist = decide(s, 1, Recommendation(9, 400, 1), History(), 0)
    assert d.desired_replicas == 3 and d.scaling_limited.reason == "ScaleUpLimit"
    hist = record_scale(hist, 0, 1, 3, 60)
    d, hist = decide(s, 3, Recommendation(9, 150, 3), hist, 30)
    assert d.desired_replicas == 3  # the 60 s period already spent its 2 pods
    d, _ = decide(s, 3, Recommendation(9, 150, 3), hist, 61)
    assert d.desired_replicas == 5
