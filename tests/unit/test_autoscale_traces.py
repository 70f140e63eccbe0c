"""Replay load traces through the autoscaler and check its decisions against the HPA's documented behaviour.

The simulated service: `load` is total GPU demand in percent of one GPU; each ready replica shows
min(100, load / replicas). New replicas become ready after `ready_after` periods (unready until then). A `None`
in a trace is a metric gap (nothing could be read).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from yolo_operator.api.inference_service import Autoscaling
from yolo_operator.autoscale import (
    History,
    MetricsUnavailable,
    PodSample,
    Recommendation,
    decide,
    events_to_keep,
    from_pod_samples,
    record_scale,
)

pytestmark = pytest.mark.unit

PERIOD = 15


@dataclass
class Step:
    time: int
    replicas: int
    """Replicas after this step's decision."""
    active: bool
    reason: str


def replay(
    spec: Autoscaling,
    trace: Sequence[float | None],
    start: int = 1,
    ready_after: int = 0,
    start_time: int = 10_000,
    cap: float = 100.0,
) -> list[Step]:
    replicas = start
    born: list[int] = [-999] * start  # step index at which each replica was created
    history = History.starting(start_time, start)
    steps = []
    for i, load in enumerate(trace):
        now = start_time + PERIOD * (i + 1)
        ready_count = sum(1 for b in born if i - b >= ready_after)
        reading: Recommendation | MetricsUnavailable
        if load is None:
            reading = MetricsUnavailable("MissingMetrics", "gap")
        else:
            per_pod = min(cap, load / max(ready_count, 1))
            samples = [
                PodSample(
                    f"p{j}", "ready" if i - b >= ready_after else "unready", per_pod if i - b >= ready_after else None
                )
                for j, b in enumerate(born)
            ]
            try:
                reading = from_pod_samples(replicas, spec.target, samples)
            except MetricsUnavailable as exc:
                reading = exc
        decision, history = decide(spec, replicas, reading, history, now)
        if decision.desired_replicas != replicas:
            history = record_scale(history, now, replicas, decision.desired_replicas, events_to_keep(spec))
            if decision.desired_replicas > replicas:
                born += [i] * (decision.desired_replicas - replicas)
            else:
                born = born[: decision.desired_replicas]
            replicas = decision.desired_replicas
        steps.append(Step(now, replicas, decision.scaling_active.status, decision.scaling_active.reason))
    return steps


def spec(**kw: object) -> Autoscaling:
    base: dict[str, object] = {"enabled": True, "min_replicas": 1, "max_replicas": 8, "target": 70}
    base.update(kw)
    return Autoscaling.model_validate(base)


def replicas(steps: list[Step]) -> list[int]:
    return [s.replicas for s in steps]


def test_sustained_step_up_scales_within_one_period() -> None:
    # queue depth is not capped: the first reading after the step scales straight to ceil(40 / 10)
    s = spec(metric="queueDepth", target=10)
    steps = replay(s, [8.0] * 4 + [40.0] * 10, cap=math.inf)
    assert replicas(steps) == [1] * 4 + [4] * 10


def test_step_up_on_saturated_gpu_utilisation_scales_every_period_until_there() -> None:
    # GPU utilisation saturates at 100%, so one reading cannot show the whole step (1 replica at 100% → 2);
    # the HPA then climbs each period, never overshooting
    steps = replay(spec(), [60.0] * 4 + [280.0] * 10)
    r = replicas(steps)
    assert r[:4] == [1, 1, 1, 1]
    assert r[4] == 2, "scaled up in the first period after the step"
    assert r == sorted(r) and r[-1] == 4
    assert r.index(4) <= 7


def test_step_down_waits_for_the_scale_down_window() -> None:
    trace: Sequence[float | None] = [280.0] * 4 + [70.0] * 30
    steps = replay(spec(), trace, start=4)
    last_high = steps[3].time
    for s in steps[4:]:
        if s.time - last_high < 300:
            assert s.replicas == 4, f"scaled down at {s.time - last_high} s, inside the 300 s window"
    assert steps[-1].replicas == 1
    first_down = next(s for s in steps[4:] if s.replicas < 4)
    assert first_down.time - last_high == 300


def test_ramp_scales_up_monotonically_and_tracks_the_load() -> None:
    trace: Sequence[float | None] = [30.0 + 20 * i for i in range(25)]  # 30 → 510
    steps = replay(spec(), trace)
    r = replicas(steps)
    assert r == sorted(r), "no scale-down during a rising ramp"
    assert abs(510 / r[-1] / 70 - 1) <= 0.1, "ends within the tolerance of the target"


def test_single_spike_without_up_window_scales_up_then_holds_for_the_down_window() -> None:
    trace: Sequence[float | None] = [60.0] * 3 + [400.0] + [60.0] * 25
    steps = replay(spec(), trace, start=1)
    assert steps[3].replicas == 2  # one replica saturated at 100%: 100/70 → 2 (the HPA sees clipped values)
    spike_time = steps[3].time
    for s in steps[4:]:
        if s.time - spike_time < 300:
            assert s.replicas == 2
    assert steps[-1].replicas == 1


def test_spike_shorter_than_the_up_window_is_ignored() -> None:
    s = spec(behavior={"scaleUp": {"stabilizationWindowSeconds": 60}})
    trace: Sequence[float | None] = [60.0] * 3 + [400.0, 400.0] + [60.0] * 10
    assert set(replicas(replay(s, trace))) == {1}
    sustained: Sequence[float | None] = [60.0] * 3 + [400.0] * 10
    r = replicas(replay(s, sustained))
    assert r[3] == 1 and r[-1] > 1
    assert r.index(next(x for x in r if x > 1)) <= 3 + 60 // PERIOD + 1


def test_noise_within_tolerance_never_scales() -> None:
    rng = random.Random(7)
    trace: Sequence[float | None] = [140.0 * (1 + rng.uniform(-0.09, 0.09)) for _ in range(80)]
    assert set(replicas(replay(spec(), trace, start=2))) == {2}


def test_large_noise_does_not_flap() -> None:
    rng = random.Random(11)
    trace: Sequence[float | None] = [210.0 * (1 + rng.uniform(-0.35, 0.35)) for _ in range(120)]
    steps = replay(spec(), trace, start=3)
    # after a scale-up, never scale down again within the 300 s window
    last_up: int | None = None
    for prev, cur in itertools.pairwise(steps):
        if cur.replicas > prev.replicas:
            last_up = cur.time
        elif cur.replicas < prev.replicas:
            assert last_up is None or cur.time - last_up >= 300
    changes = sum(1 for a, b in itertools.pairwise(steps) if a.replicas != b.replicas)
    assert changes <= len(steps) // 10


def test_metric_gaps_keep_replicas_and_never_drop_to_min() -> None:
    trace: Sequence[float | None] = [280.0] * 3 + [None] * 40 + [280.0] * 3
    steps = replay(spec(), trace, start=4)
    assert all(s.replicas == 4 for s in steps)
    assert not any(s.active for s in steps[3:43])
    assert all(s.reason == "MissingMetrics" for s in steps[3:43])
    assert steps[-1].active


def test_replicas_not_yet_ready_do_not_trigger_more_scale_up() -> None:
    # new replicas take 3 periods to become ready; a naive autoscaler would keep adding replicas meanwhile
    trace: Sequence[float | None] = [60.0] * 2 + [280.0] * 20
    steps = replay(spec(), trace, start=1, ready_after=3)
    assert max(replicas(steps)) <= 5
    assert replicas(steps)[-1] == 4


def test_clamped_to_min_and_max() -> None:
    up = replay(spec(max_replicas=3), [1000.0] * 10)
    assert max(replicas(up)) == 3 and replicas(up)[-1] == 3
    s = spec(min_replicas=2, behavior={"scaleDown": {"stabilizationWindowSeconds": 0}})
    down = replay(s, [5.0] * 10, start=6)
    assert replicas(down)[-1] == 2 and min(replicas(down)) == 2


def test_scale_down_policy_paces_the_descent() -> None:
    s = spec(
        behavior={
            "scaleDown": {
                "stabilizationWindowSeconds": 0,
                "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
            }
        }
    )
    steps = replay(s, [10.0] * 30, start=8)
    downs = [b.time for a, b in itertools.pairwise(steps) if b.replicas < a.replicas]
    downs = [steps[0].time, *downs] if steps[0].replicas < 8 else downs
    assert all(b - a >= 60 for a, b in itertools.pairwise(downs))
    assert replicas(steps)[-1] == 1
