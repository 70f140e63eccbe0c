"""Simulated inference replicas under a request trace, scaled by the operator's real HPA step.

Why: autoscaler behaviour (stabilisation windows, rate limits) trades GPU-seconds against time spent short of
capacity, and that trade can only be judged over a day of traffic, not in a cluster test. The loop here mirrors
`controllers/inference_service.py`'s autoscale step exactly: every `period_s`, per-pod samples (ready pods report
their GPU utilisation, starting pods are unready) → `from_pod_samples` → `decide` → on a change, scale and
`record_scale`. Only the Kubernetes API calls are replaced by a list of pods.

Replica model (a fluid queue, one second a step): the service has `capacity_rps` images/s per ready replica.
Arrivals join a shared backlog; ready replicas serve up to their capacity; a replica's GPU utilisation over the
scrape period is its busy fraction (served / capacity), as NVML reports a time average. The backlog is bounded by
`max_queue` images per ready replica; beyond it requests are refused (the server answers 503). A new replica holds
its GPU from creation but serves only after `startup_s` (image cached, weights loaded, engine warmed).

The oracle knows the trace: at each second it runs ceil(load / (capacity × target)) replicas, ready at once.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

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


@dataclass(frozen=True)
class SimConfig:
    capacity_rps: float = 2_500.0
    """Images/s one replica (one H100) serves at saturation."""
    period_s: int = 15
    """The operator's autoscaler_period_seconds (the HPA's sync period)."""
    startup_s: int = 60
    """Seconds from a replica's creation to Ready."""
    max_queue: int = 512
    """Images waiting per ready replica before requests are refused (serving.maxQueueSize)."""
    metric_noise: float = 0.02
    """Relative per-pod noise on the reported utilisation (replicas are never perfectly balanced)."""
    seed: int = 0


@dataclass(frozen=True)
class Step:
    """One autoscaler period as the controller saw it."""

    t: int
    load_rps: float
    current: int
    ready: int
    recommended: int | None
    desired: int


@dataclass
class Outcome:
    seconds: int
    gpu_seconds: float = 0.0
    oracle_gpu_seconds: float = 0.0
    below_target_s: int = 0
    """Seconds during which ready replicas × capacity × target < load."""
    overloaded_s: int = 0
    """Seconds during which ready replicas × capacity < load (a backlog builds up)."""
    offered_images: float = 0.0
    refused_images: float = 0.0
    scale_ups: int = 0
    scale_downs: int = 0
    steps: list[Step] = field(default_factory=list)
    replicas_per_second: list[int] = field(default_factory=list)
    oracle_per_second: list[int] = field(default_factory=list)

    @property
    def hours(self) -> float:
        return self.seconds / 3600.0

    @property
    def scale_events_per_hour(self) -> float:
        return (self.scale_ups + self.scale_downs) / self.hours

    @property
    def gpu_overhead(self) -> float:
        """GPU-seconds used over the oracle's, minus one (0.25 = 25 % more than the oracle)."""
        return self.gpu_seconds / self.oracle_gpu_seconds - 1.0


def oracle_replicas(load_rps: float, capacity_rps: float, target_percent: float, minimum: int) -> int:
    """Fewest replicas that keep utilisation at or under the target for this load (never below `minimum`)."""
    return max(minimum, math.ceil(load_rps / (capacity_rps * target_percent / 100.0) - 1e-9))


def _samples(
    ready_since: Sequence[int], now: int, utilisation: float, rng: random.Random, noise: float
) -> list[PodSample]:
    out = []
    for i, since in enumerate(ready_since):
        if since <= now:
            value = max(0.0, min(100.0, utilisation * (1.0 + rng.gauss(0.0, noise))))
            out.append(PodSample(f"pod-{i}", "ready", value))
        else:
            out.append(PodSample(f"pod-{i}", "unready"))
    return out


def simulate(trace: Sequence[float], spec: Autoscaling, cfg: SimConfig = SimConfig()) -> Outcome:
    """Replay `trace` (images/s per second) against one autoscaled service."""
    if spec.metric != "gpuUtilization":
        raise ValueError("simulate: only metric gpuUtilization is modelled (spec.autoscaling.metric)")
    rng = random.Random(cfg.seed)
    target = spec.target
    start = max(spec.min_replicas, min(spec.max_replicas, oracle_replicas(trace[0], cfg.capacity_rps, target, 1)))
    pods: list[int] = [0] * start  # the second each pod becomes (became) ready
    history: History | None = None
    backlog = 0.0
    busy_in_period = 0.0  # sum over the period of served / (ready × capacity)
    out = Outcome(seconds=len(trace))
    for t, load in enumerate(trace):
        if t > 0 and t % cfg.period_s == 0:
            utilisation = 100.0 * busy_in_period / cfg.period_s
            busy_in_period = 0.0
            current = len(pods)
            history = history or History.starting(float(t), current)
            reading: Recommendation | MetricsUnavailable
            try:
                reading = from_pod_samples(current, target, _samples(pods, t, utilisation, rng, cfg.metric_noise))
            except MetricsUnavailable as exc:
                reading = exc
            decision, history = decide(spec, current, reading, history, float(t))
            desired = decision.desired_replicas
            ready_now = sum(1 for s in pods if s <= t)
            rec = decision.recommendation.replicas if decision.recommendation is not None else None
            out.steps.append(Step(t, load, current, ready_now, rec, desired))
            if decision.direction is not None:
                history = record_scale(history, float(t), current, desired, events_to_keep(spec))
                if desired > current:
                    out.scale_ups += 1
                    pods.extend([t + cfg.startup_s] * (desired - current))
                else:
                    out.scale_downs += 1
                    # A ReplicaSet removes not-ready pods first, then the youngest.
                    pods.sort()
                    del pods[desired:]
        ready = sum(1 for s in pods if s <= t)
        capacity = ready * cfg.capacity_rps
        backlog += load
        served = min(backlog, capacity)
        backlog -= served
        limit = ready * cfg.max_queue
        if backlog > limit:
            out.refused_images += backlog - limit
            backlog = limit
        busy_in_period += served / capacity if capacity > 0 else 0.0
        out.offered_images += load
        out.gpu_seconds += len(pods)
        oracle = oracle_replicas(load, cfg.capacity_rps, target, spec.min_replicas)
        out.oracle_gpu_seconds += oracle
        out.replicas_per_second.append(len(pods))
        out.oracle_per_second.append(oracle)
        if capacity * target / 100.0 < load:
            out.below_target_s += 1
        if capacity < load:
            out.overloaded_s += 1
    return out
