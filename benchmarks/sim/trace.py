"""A synthetic request trace (images/s, one value a second): a diurnal curve, short-term noise and spikes.

Why synthetic and seeded: the comparison between autoscaler behaviours must be reproducible and must contain the
shapes that hurt autoscalers in production: a slow daily swell (rewarding prompt scale-down at night), sudden
spikes of a few minutes (rewarding fast scale-up) and noise (punishing over-reaction with churn).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class TraceConfig:
    hours: float = 24.0
    base_rps: float = 3_000.0
    """Night-time trough, images/s."""
    peak_rps: float = 30_000.0
    """Daytime peak of the diurnal curve (spikes come on top)."""
    peak_hour: float = 14.0
    noise: float = 0.05
    """Relative standard deviation of minute-to-minute noise."""
    spikes_per_day: float = 8.0
    spike_factor: tuple[float, float] = (1.5, 3.0)
    """A spike multiplies the load by a factor drawn from this range."""
    spike_minutes: tuple[float, float] = (2.0, 15.0)
    spike_ramp_s: float = 30.0
    """Seconds from the start of a spike to its full height (and back down at its end)."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.hours <= 0 or self.base_rps < 0 or self.peak_rps < self.base_rps:
            raise ValueError("TraceConfig: need hours > 0 and 0 <= base_rps <= peak_rps")


def diurnal_trace(cfg: TraceConfig) -> list[float]:
    """Images/s for each second of the trace."""
    rng = random.Random(cfg.seed)
    seconds = int(cfg.hours * 3600)
    # Noise changes once a minute (a per-second white noise would average out inside one scrape anyway).
    minute_noise = [max(0.0, 1.0 + rng.gauss(0.0, cfg.noise)) for _ in range(seconds // 60 + 1)]
    spikes: list[tuple[float, float, float]] = []
    n_spikes = round(cfg.spikes_per_day * cfg.hours / 24.0)
    for _ in range(n_spikes):
        start = rng.uniform(0, seconds)
        length = rng.uniform(*cfg.spike_minutes) * 60.0
        spikes.append((start, start + length, rng.uniform(*cfg.spike_factor)))
    out = []
    amp = (cfg.peak_rps - cfg.base_rps) / 2.0
    for t in range(seconds):
        hour = (t / 3600.0) % 24.0
        # Cosine with its maximum at peak_hour, minimum twelve hours away.
        diurnal = cfg.base_rps + amp * (1.0 + math.cos(2.0 * math.pi * (hour - cfg.peak_hour) / 24.0))
        factor = 1.0
        for start, end, height in spikes:
            if start <= t < end:
                ramp = min(1.0, (t - start) / cfg.spike_ramp_s, (end - t) / cfg.spike_ramp_s)
                factor = max(factor, 1.0 + (height - 1.0) * ramp)
        out.append(diurnal * minute_noise[t // 60] * factor)
    return out
