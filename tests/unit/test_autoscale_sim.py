"""Invariants of the autoscaling simulator (benchmarks/sim): the oracle it measures against, and the decisions it
gets from the operator's real autoscaler. If either drifts, the figures in docs/benchmarks.md mean nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from yolo_operator.api.inference_service import Autoscaling, Behavior

from benchmarks.sim import SimConfig, TraceConfig, diurnal_trace, oracle_replicas, simulate

pytestmark = pytest.mark.unit

CAPACITY = 2_500.0
TRACE = diurnal_trace(TraceConfig(hours=3, base_rps=2_000, peak_rps=40_000, peak_hour=1.5, spikes_per_day=48, seed=7))


def _spec(lo: int = 2, hi: int = 40, window: int | None = None) -> Autoscaling:
    behavior = (
        None if window is None else Behavior.model_validate({"scaleDown": {"stabilizationWindowSeconds": window}})
    )
    return Autoscaling(enabled=True, min_replicas=lo, max_replicas=hi, target=70, behavior=behavior)


def test_trace_is_seeded_and_has_spikes() -> None:
    again = diurnal_trace(
        TraceConfig(hours=3, base_rps=2_000, peak_rps=40_000, peak_hour=1.5, spikes_per_day=48, seed=7)
    )
    assert again == TRACE
    assert diurnal_trace(TraceConfig(hours=3, seed=8)) != diurnal_trace(TraceConfig(hours=3, seed=9))
    assert max(TRACE) > 40_000  # a spike on top of the peak


def test_oracle_never_below_load() -> None:
    out = simulate(TRACE, _spec(), SimConfig(capacity_rps=CAPACITY))
    assert len(out.oracle_per_second) == len(TRACE)
    for load, oracle in zip(TRACE, out.oracle_per_second, strict=True):
        assert oracle * CAPACITY * 0.70 >= load
        assert oracle >= 2
        # ...and it is the fewest: one replica less would be over the target (unless at the minimum).
        assert oracle == 2 or (oracle - 1) * CAPACITY * 0.70 < load
    assert out.oracle_gpu_seconds == sum(out.oracle_per_second)
    assert oracle_replicas(0.0, CAPACITY, 70, 1) == 1
    assert oracle_replicas(1750.0, CAPACITY, 70, 1) == 1
    assert oracle_replicas(1751.0, CAPACITY, 70, 1) == 2


def test_replicas_stay_within_min_and_max() -> None:
    spec = _spec(lo=3, hi=12)  # the trace needs more than 12 at its peak: the cap must hold
    out = simulate(TRACE, spec, SimConfig(capacity_rps=CAPACITY))
    assert out.steps, "the autoscaler never ran"
    assert all(3 <= s.desired <= 12 for s in out.steps)
    assert all(3 <= r <= 12 for r in out.replicas_per_second)
    assert max(out.replicas_per_second) == 12
    assert out.overloaded_s > 0 and out.refused_images > 0  # capped below the load: the model must show it
    assert out.gpu_seconds == sum(out.replicas_per_second)


@pytest.mark.parametrize("window", [None, 60, 600])
def test_no_scale_down_inside_the_stabilisation_window(window: int | None) -> None:
    w = 300 if window is None else window
    out = simulate(TRACE, _spec(window=window), SimConfig(capacity_rps=CAPACITY))
    downs = [s for s in out.steps if s.desired < s.current]
    assert downs, "the trace must make the autoscaler scale down"
    for d in downs:
        recent = [s.recommended for s in out.steps if d.t - w < s.t <= d.t and s.recommended is not None]
        assert max(recent) <= d.desired, f"scaled down to {d.desired} at {d.t} s though {max(recent)} was recommended"


def test_a_drop_in_load_waits_for_the_window() -> None:
    # 30 min at 20k images/s, then 2k: the first scale-down comes one full window after the drop, not before.
    trace = [20_000.0] * 1800 + [2_000.0] * 1800
    out = simulate(trace, _spec(window=600), SimConfig(capacity_rps=CAPACITY, metric_noise=0.0))
    first_down = next(s.t for s in out.steps if s.desired < s.current)
    assert 1800 + 600 - 15 <= first_down <= 1800 + 600 + 15
    assert out.replicas_per_second[-1] < out.replicas_per_second[1799]
    assert out.refused_images == 0


def test_only_gpu_utilisation_is_modelled() -> None:
    spec = Autoscaling(enabled=True, metric="queueDepth", target=4)
    with pytest.raises(ValueError, match="gpuUtilization"):
        simulate([1.0] * 60, spec)
