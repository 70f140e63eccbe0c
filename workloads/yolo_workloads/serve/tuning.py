"""Serving tuning at start: a short sweep of max_batch_size x max_queue_delay_ms on synthetic load.

Each trial drives the real batcher and device pipeline (no HTTP) with a closed loop of 2 x batch concurrent
single-image requests for `trial_seconds`, and records images/s and p99 latency. The winner is the highest
throughput whose p99 meets the latency SLO (or, if none does, the lowest p99). HTTP adds a roughly constant
cost per request on top, which the SLO margin has to absorb.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from yolo_workloads.serve.batcher import Batcher

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trial:
    max_batch_size: int
    max_queue_delay_ms: float
    images_per_second: float
    p50_ms: float
    p99_ms: float


def candidates(max_batch_size: int, max_queue_delay_ms: float) -> list[tuple[int, float]]:
    batches = sorted({max(1, max_batch_size // 4), max(1, max_batch_size // 2), max_batch_size})
    base = max(max_queue_delay_ms, 1.0)
    delays = sorted({base / 2, base, base * 2})
    return [(b, d) for b in batches for d in delays]


async def _trial(batcher: Batcher[Any, Any], make_item: Callable[[int], Any], seconds: float) -> Trial:
    concurrency = min(2 * batcher.max_batch_size, batcher.max_queue_size)
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def client(k: int) -> None:
        i = k
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            await batcher.submit([make_item(i)])
            latencies.append(time.perf_counter() - t0)
            i += concurrency

    t0 = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(concurrency)))
    elapsed = time.perf_counter() - t0
    lat = np.array(latencies) * 1000 if latencies else np.zeros(1)
    return Trial(
        batcher.max_batch_size,
        batcher.max_queue_delay_ms,
        len(latencies) / elapsed,
        float(np.percentile(lat, 50)),
        float(np.percentile(lat, 99)),
    )


async def tune(
    batcher: Batcher[Any, Any],
    make_item: Callable[[int], Any],
    latency_slo_ms: float,
    trial_seconds: float,
) -> tuple[Trial, list[Trial]]:
    """Run the sweep, leave the batcher configured with the winner, return (winner, all trials)."""
    trials: list[Trial] = []
    for b, d in candidates(batcher.max_batch_size, batcher.max_queue_delay_ms):
        batcher.configure(b, d)
        trial = await _trial(batcher, make_item, trial_seconds)
        log.info("serving tuning trial: %s", asdict(trial))
        trials.append(trial)
    meeting = [t for t in trials if t.p99_ms <= latency_slo_ms]
    best = max(meeting, key=lambda t: t.images_per_second) if meeting else min(trials, key=lambda t: t.p99_ms)
    batcher.configure(best.max_batch_size, best.max_queue_delay_ms)
    log.info(
        "serving tuning chose max_batch_size=%d max_queue_delay_ms=%.2f (%.0f images/s, p99 %.1f ms, SLO %.0f ms%s)",
        best.max_batch_size,
        best.max_queue_delay_ms,
        best.images_per_second,
        best.p99_ms,
        latency_slo_ms,
        "" if meeting else ", none met it: lowest p99 taken",
    )
    return best, trials
