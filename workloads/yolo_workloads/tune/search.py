"""The tuning search: which setting to measure next, which trial is hopeless, when to measure again, what wins.

A tuning phase affords a handful of trials (it must pay for itself: a tenth of the training it tunes), too few for a
sampler to learn the space. So the search is a hill climb from the setting that is fastest on most hardware (the
largest allowed batch, every worker (four on the GPU path with the RAM cache), AMP, the RAM cache): each trial
measures a setting not measured before, one step away from the best so far along one dimension (fewer workers, half
the batch, the other cache, AMP off; the other augmentation path first, when the spec offers both), and a step that
wins moves the climb. It ends when the best setting has no unmeasured neighbour, or the budget ends.

When the batch is pinned (the defaults' trajectory, or the spec), the climb starts from Ultralytics' own loader
settings instead and steps towards a wider loader: at a small batch the main process's step, not the loader, bounds
a small model (yolov8n at batch 16 on an H200 with 16 CPUs trained 346 images/s with 8 workers and no cache, 347
with 16 workers and the RAM cache, whose fill cost the first epoch 2 s more; docs/benchmarks.md), so a wider loader
has to win a measurement before it is chosen.

The objective is the estimated training time, not images/s: epochs x images / measured images/s, plus the one-off
cost of filling the RAM cache that the training process pays again. A trial whose running images/s falls under
`PRUNE_SHARE` of the best is stopped (hopeless). A setting is measured again only when the best two are within
`NOISE` of each other, and the result then says so.

Pure: no torch, no Ultralytics; the study (study.py) runs the trials.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field, replace

from yolo_workloads.contract import TrainConfig

NOISE = 0.05
"""Relative spread of two trials of one setting: closer than this, the order of two settings is not known."""
PRUNE_SHARE = 0.7
"""A trial running under this share of the best images/s so far is stopped."""
PRUNE_MIN_STEPS = 4
"""Measured batches (and at least one round of workers) before a trial may be pruned."""
DEFAULT_WORKERS: int = TrainConfig.model_fields["workers"].default
"""Ultralytics' own dataloader workers, where a pinned batch's climb starts."""
GPU_PATH_WORKERS = 4
"""Workers where the GPU path's climb starts with the RAM cache: they only letterbox decoded images, and more of them
compete with the training process for the CPUs (yolov8n on an H200 with 16 CPUs: batch 128 trained 1,537 images/s
with 4 workers and 1,283 with 8; batch 64 with norm groups took 2.27 s an epoch with 4 and 2.47 s with 16;
docs/benchmarks.md). Without the cache the workers may decode (where no GPU decoder is usable: 642 images/s with 4
OpenCV workers, 1,582 with 16), so the climb starts with every worker there."""


@dataclass(frozen=True)
class TrialSettings:
    batch: int
    workers: int
    amp: bool
    cache: str
    augmentation: str = "cpu"


@dataclass(frozen=True)
class Space:
    """The candidate values of each dimension (space.Bounds without its details)."""

    batches: list[int]
    workers: list[int]
    amp: list[bool]
    cache: list[str]
    augmentation: list[str] = field(default_factory=lambda: ["cpu"])

    @property
    def batch_pinned(self) -> bool:
        return len(self.batches) == 1

    def first_guess(self) -> TrialSettings:
        """Fastest on most hardware: the largest allowed batch, every worker (`workers_for`), AMP, the RAM cache;
        with the batch pinned, Ultralytics' own loader (its workers, as far as the bounds allow, and no cache)."""
        if self.batch_pinned:
            augmentation = self._first_augmentation()
            cache = "none" if "none" in self.cache else self.cache[0]
            return TrialSettings(
                batch=self.batches[0],
                workers=self.workers_for(augmentation, cache),
                amp=True if True in self.amp else self.amp[0],
                cache=cache,
                augmentation=augmentation,
            )
        augmentation = self._first_augmentation(large_batch=max(self.batches) > min(self.batches))
        cache = "ram" if "ram" in self.cache else self.cache[0]
        return TrialSettings(
            batch=max(self.batches),
            workers=self.workers_for(augmentation, cache),
            amp=True if True in self.amp else self.amp[0],
            cache=cache,
            augmentation=augmentation,
        )

    def workers_for(self, augmentation: str, cache: str) -> int:
        """Where a path's climb starts on the workers: the most allowed (up to Ultralytics' own with the batch
        pinned), and for the GPU path on the RAM cache up to GPU_PATH_WORKERS; the fewest allowed when none fits."""
        ceiling = DEFAULT_WORKERS if self.batch_pinned else max(self.workers)
        if augmentation == "gpu" and cache == "ram":
            ceiling = min(ceiling, GPU_PATH_WORKERS)
        fitting = [w for w in self.workers if w <= ceiling]
        return max(fitting) if fitting else min(self.workers)

    def _first_augmentation(self, large_batch: bool = False) -> str:
        """With the batch pinned, Ultralytics' own loader first when offered: the other path has to win a
        measurement (at batch 16 on an H200 with 16 CPUs the two trained level). At the large end of a batch range,
        the GPU path first when offered (it is offered on a GPU only): on the H200 with 16 CPUs it trained batch 128
        at 2,044 images/s on 3 cores, the loader batch 64 at 974-1,017 on 13-14 (docs/benchmarks.md), and a short
        job's budget may admit one trial only."""
        if large_batch and "gpu" in self.augmentation:
            return "gpu"
        return "cpu" if "cpu" in self.augmentation else self.augmentation[0]

    def size(self) -> int:
        return len(self.batches) * len(self.workers) * len(self.amp) * len(self.cache) * len(self.augmentation)

    def neighbours(self, s: TrialSettings) -> list[TrialSettings]:
        """One step along one dimension, most promising first (the climb starts at the large end). The other
        augmentation path comes first: a spec that offers both asked for that comparison."""
        workers, batches = sorted(self.workers), sorted(self.batches)
        other = [  # the other path with its own first workers (on the RAM cache the GPU path's only letterbox)
            replace(s, augmentation=a, workers=self.workers_for(a, s.cache))
            for a in self.augmentation
            if a != s.augmentation
        ]
        if self.batch_pinned:  # from Ultralytics' loader towards a wider one
            return [
                *other,
                *[replace(s, workers=w) for w in _step(workers, s.workers, 1)],
                *[replace(s, cache=c) for c in self.cache if c != s.cache],
                *[replace(s, workers=w) for w in _step(workers, s.workers, -1)],
                *[replace(s, amp=a) for a in self.amp if a != s.amp],
            ]
        return [
            *other,
            *[replace(s, workers=w) for w in _step(workers, s.workers, -1)],
            *[replace(s, batch=b) for b in _step(batches, s.batch, -1)],
            *[replace(s, cache=c) for c in self.cache if c != s.cache],
            *[replace(s, amp=a) for a in self.amp if a != s.amp],
            *[replace(s, workers=w) for w in _step(workers, s.workers, 1)],
            *[replace(s, batch=b) for b in _step(batches, s.batch, 1)],
        ]


def _step(values: list[int], current: int, direction: int) -> list[int]:
    """The value next to `current` in sorted `values` (none past either end, or when `current` is not there)."""
    if current not in values:
        return []
    index = values.index(current) + direction
    return [values[index]] if 0 <= index < len(values) else []


@dataclass
class Search:
    """The climb's state: every measurement so far, and the objective that ranks settings."""

    space: Space
    images_per_run: float
    """Images the training will process (epochs x training images): seconds = this / images/s."""
    one_off_seconds: dict[str, float] = field(default_factory=dict)
    """Extra seconds the training pays once for a cache value (the RAM cache's fill)."""
    figures: dict[TrialSettings, list[float]] = field(default_factory=dict)
    tried: list[TrialSettings] = field(default_factory=list)

    def record(self, settings: TrialSettings, ips: float | None) -> None:
        """One trial's outcome: its images/s, or None when it failed or was pruned."""
        if settings not in self.tried:
            self.tried.append(settings)
        if ips is not None and ips > 0:
            self.figures.setdefault(settings, []).append(ips)

    def seconds(self, settings: TrialSettings) -> float:
        """Estimated training time of a measured setting (the median of its trials)."""
        ips = statistics.median(self.figures[settings])
        return self.images_per_run / ips + self.one_off_seconds.get(settings.cache, 0.0)

    def ranked(self) -> list[TrialSettings]:
        return sorted(self.figures, key=self.seconds)

    def best(self) -> TrialSettings | None:
        ranked = self.ranked()
        return ranked[0] if ranked else None

    def best_ips(self) -> float | None:
        return max((statistics.median(v) for v in self.figures.values()), default=None)

    def next(self) -> TrialSettings | None:
        """The next setting to measure: never one measured before; None when the climb has converged."""
        if not self.tried:
            return self.space.first_guess()
        anchor = self.best()
        if anchor is None:  # nothing worked yet (out of memory, say): step away from the last failure
            anchor = self.tried[-1]
        for candidate in self.space.neighbours(anchor):
            if candidate not in self.tried:
                return candidate
        return None

    def should_prune(self, running_ips: float, step: int, workers: int) -> bool:
        """Hopeless: after a round of workers, still under PRUNE_SHARE of the best images/s so far."""
        best = self.best_ips()
        if best is None or step < max(PRUNE_MIN_STEPS, workers):
            return False
        return running_ips < PRUNE_SHARE * best

    def to_repeat(self) -> TrialSettings | None:
        """A setting to measure again: only when the best two are within NOISE and one was measured once."""
        ranked = self.ranked()[:2]
        if len(ranked) < 2:
            return None
        first, second = (self.seconds(s) for s in ranked)
        if second - first > NOISE * first:
            return None
        once = [s for s in ranked if len(self.figures[s]) < 2]
        return once[0] if once else None


def tuning_budget(cap: float, share: float, floor: float, estimated_training: float | None) -> float:
    """Seconds the phase may take: `share` of the estimated training, at least `floor`, at most `cap`."""
    if estimated_training is None:
        return cap
    return min(cap, max(share * estimated_training, floor))
