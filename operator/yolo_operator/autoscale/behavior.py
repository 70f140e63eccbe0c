"""The HPA's `behavior`: stabilisation windows and per-period rate limits, with the HPA's defaults.

Why: a raw recommendation follows every wiggle of the metric. The HPA damps it twice, and users tune both knobs
with the same fields they know from autoscaling/v2:

- stabilisation: scale up only to the lowest recommendation of the scale-up window, down only to the highest of
  the scale-down window (defaults 0 s and 300 s), so a short dip does not remove replicas;
- policies: in any `periodSeconds`, add or remove at most `value` pods (or percent of the replicas at the start
  of the period); `selectPolicy` Max takes the policy allowing the largest change, Min the smallest, Disabled
  forbids that direction.

Pure: times are seconds on any clock that only moves forward.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from yolo_operator.api.inference_service import Behavior, ScalingRules

DEFAULT_SCALE_UP_WINDOW_S = 0
DEFAULT_SCALE_DOWN_WINDOW_S = 300


@dataclass(frozen=True)
class Policy:
    type: Literal["Pods", "Percent"]
    value: int
    period_seconds: int


@dataclass(frozen=True)
class Rules:
    """One direction's rules with every default filled in."""

    window_seconds: int
    select_policy: Literal["Max", "Min", "Disabled"]
    policies: tuple[Policy, ...]


# The HPA's defaults: up by 100% or 4 pods per 15 s, whichever is more; down by 100% per 15 s.
DEFAULT_SCALE_UP_POLICIES = (Policy("Pods", 4, 15), Policy("Percent", 100, 15))
DEFAULT_SCALE_DOWN_POLICIES = (Policy("Percent", 100, 15),)


@dataclass(frozen=True)
class ScaleEvent:
    """A change the autoscaler made: when, and by how many replicas (always positive)."""

    time: float
    change: int


@dataclass(frozen=True)
class ResolvedBehavior:
    up: Rules
    down: Rules

    @property
    def longest_window(self) -> int:
        return max(self.up.window_seconds, self.down.window_seconds)

    @property
    def longest_period(self) -> int:
        return max((p.period_seconds for p in (*self.up.policies, *self.down.policies)), default=0)


def _resolve(rules: ScalingRules | None, window: int, policies: tuple[Policy, ...]) -> Rules:
    if rules is None:
        return Rules(window, "Max", policies)
    given = tuple(Policy(p.type, p.value, p.period_seconds) for p in rules.policies or ())
    return Rules(
        rules.stabilization_window_seconds if rules.stabilization_window_seconds is not None else window,
        rules.select_policy,
        given or policies,
    )


def resolve(behavior: Behavior | None) -> ResolvedBehavior:
    """Fill in the HPA's defaults for everything the spec leaves out."""
    b = behavior or Behavior()
    return ResolvedBehavior(
        up=_resolve(b.scale_up, DEFAULT_SCALE_UP_WINDOW_S, DEFAULT_SCALE_UP_POLICIES),
        down=_resolve(b.scale_down, DEFAULT_SCALE_DOWN_WINDOW_S, DEFAULT_SCALE_DOWN_POLICIES),
    )


def stabilize(
    recommendation: int,
    current: int,
    history: Sequence[tuple[float, int]],
    behavior: ResolvedBehavior,
    now: float,
) -> int:
    """The HPA's stabilisation: the current count moved towards `recommendation` only as far as every
    recommendation inside the respective window agrees."""
    up = down = recommendation
    up_cutoff = now - behavior.up.window_seconds
    down_cutoff = now - behavior.down.window_seconds
    for when, replicas in history:
        if when > up_cutoff:
            up = min(up, replicas)
        if when > down_cutoff:
            down = max(down, replicas)
    result = current
    result = max(result, up)
    return min(result, down)


def _changed_within(period: int, events: Sequence[ScaleEvent], now: float) -> int:
    cutoff = now - period
    return sum(e.change for e in events if e.time > cutoff)


def _period_start(
    current: int, period: int, up_events: Sequence[ScaleEvent], down_events: Sequence[ScaleEvent], now: float
) -> int:
    """Replicas at the start of a policy's period: the count its limit is measured from."""
    return current - _changed_within(period, up_events, now) + _changed_within(period, down_events, now)


def scale_up_limit(
    current: int, rules: Rules, up_events: Sequence[ScaleEvent], down_events: Sequence[ScaleEvent], now: float
) -> int:
    """Most replicas the scale-up policies allow now."""
    if rules.select_policy == "Disabled" or not rules.policies:
        return current
    proposals = []
    for p in rules.policies:
        start = _period_start(current, p.period_seconds, up_events, down_events, now)
        if p.type == "Pods":
            proposals.append(start + p.value)
        else:
            proposals.append(math.ceil(start * (1 + p.value / 100)))
    return max(proposals) if rules.select_policy == "Max" else min(proposals)


def scale_down_limit(
    current: int, rules: Rules, up_events: Sequence[ScaleEvent], down_events: Sequence[ScaleEvent], now: float
) -> int:
    """Fewest replicas the scale-down policies allow now."""
    if rules.select_policy == "Disabled" or not rules.policies:
        return current
    proposals = []
    for p in rules.policies:
        start = _period_start(current, p.period_seconds, up_events, down_events, now)
        if p.type == "Pods":
            proposals.append(start - p.value)
        else:
            proposals.append(int(start * (1 - p.value / 100)))  # the HPA truncates here
    # Max means "the policy allowing the biggest change", i.e. the lowest floor.
    return min(proposals) if rules.select_policy == "Max" else max(proposals)
