"""The search space of a tuning run, bounded by what this pod actually has.

Batch sizes are powers of two that keep the optimisation trajectory of Ultralytics' defaults (tune.trajectory:
batch 16 by default, up to nbs or any when the spec says so) and that free GPU memory holds, measured by a forward
and backward pass of the model at two small batch sizes and extrapolated (on a CPU, the same probe against the
process's peak RSS and the memory budget). Workers are bounded by the container's CPU quota split among the
ranks. The RAM cache is offered only when the decoded images fit comfortably in the memory budget.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from yolo_workloads.contract import SearchSpace, Task
from yolo_workloads.tune.trajectory import trajectory_batches

MEMORY_SAFETY = 0.8  # share of free GPU memory a trial may plan to use
RAM_CACHE_SHARE = 0.5  # share of the memory budget the decoded data set may take


@dataclass
class Bounds:
    batches: list[int]
    workers: list[int]
    amp: list[bool]
    cache: list[str]
    detail: dict[str, Any] = field(default_factory=dict)
    batch_reason: str = ""
    """Why these batch sizes (the trajectory rule, or the spec's fixed batch)."""
    notes: list[str] = field(default_factory=list)
    """Why other dimensions hold fewer values than the spec offered (a CPU, a cache that does not fit)."""
    augmentation: list[str] = field(default_factory=lambda: ["cpu"])
    augmentation_note: str = ""
    """Why an offered augmentation path is not among the candidates (said in every tuning reason)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def powers_of_two(low: int, high: int) -> list[int]:
    low = max(1, low)
    start = 1 << max(0, math.ceil(math.log2(low)))
    out = []
    value = start
    while value <= high:
        out.append(value)
        value *= 2
    return out or [1 << max(0, int(math.log2(max(high, 1))))]


def worker_candidates(low: int, high: int) -> list[int]:
    """A few worker counts spanning [low, high]: the ends and the powers of two between."""
    low = min(low, high)
    values = {low, high, *[p for p in powers_of_two(max(low, 1), high) if low <= p <= high]}
    return sorted(values)


_MODEL_CLASSES = {
    "detect": "DetectionModel",
    "segment": "SegmentationModel",
    "pose": "PoseModel",
    "obb": "OBBModel",
    "classify": "ClassificationModel",
}
"""The ultralytics.nn.tasks class each task's trainer builds."""


def probe_memory_per_image(model_ref: str, nc: int, imgsz: int, device: str, task: Task = "detect") -> dict[str, float]:
    """Bytes a training step needs: fixed part and per image, from forward+backward at batch 2 and 4."""
    import resource

    import torch
    from ultralytics.nn import tasks

    model_class = getattr(tasks, _MODEL_CLASSES[task])
    model = model_class(model_ref, nc=nc, verbose=False).to(device).train()
    peaks: dict[int, float] = {}
    for batch in (2, 4):
        x = torch.rand(batch, 3, imgsz, imgsz, device=device)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            with torch.autocast("cuda"):
                out = model(x)
            _total(out).backward()
            torch.cuda.synchronize()
            peaks[batch] = torch.cuda.max_memory_allocated() - base
        else:
            with contextlib.suppress(OSError):  # reset the peak RSS so each probe reads its own high-water mark
                Path("/proc/self/clear_refs").write_text("5")
            out = model(x)
            _total(out).backward()
            peaks[batch] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0
        model.zero_grad(set_to_none=True)
        del x, out
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    per_image = max((peaks[4] - peaks[2]) / 2, 1.0)
    return {"per_image_bytes": per_image, "fixed_bytes": max(peaks[2] - 2 * per_image, 0.0)}


def _total(out: Any) -> Any:
    """A scalar depending on every output tensor (the head returns tensors, lists or dicts by version)."""
    import torch

    if isinstance(out, torch.Tensor):
        return out.float().sum()
    values = out.values() if isinstance(out, dict) else out
    return sum((_total(v) for v in values), torch.zeros(()))


def max_batch_for_memory(free_bytes: float, fixed: float, per_image: float, safety: float = MEMORY_SAFETY) -> int:
    """Largest batch whose planned training memory fits `safety` of what is free (at least 1)."""
    # Ultralytics' trainer holds an EMA copy and optimizer state next to the activations: count the fixed part twice.
    return max(1, int((free_bytes * safety - 2 * fixed) // per_image))


def decoded_dataset_bytes(image_files: list[Path], imgsz: int, sample: int = 64) -> int:
    """Bytes the RAM cache would take: images resized so their long side is `imgsz`, 3 bytes a pixel."""
    from PIL import Image

    if not image_files:
        return 0
    step = max(1, len(image_files) // sample)
    sizes = []
    for path in image_files[::step][:sample]:
        try:
            with Image.open(path) as im:
                w, h = im.size
        except Exception:  # validation refused unreadable images; one replaced since is Ultralytics' to drop
            continue
        r = imgsz / max(w, h)
        sizes.append(round(w * r) * round(h * r) * 3)
    return int(sum(sizes) / len(sizes) * len(image_files)) if sizes else 0


def make_bounds(
    search: SearchSpace,
    *,
    augmentation: str = "cpu",
    n_train: int,
    decoded_bytes: int,
    memory_budget: int | None,
    cpu_budget: float,
    ranks: int,
    on_gpu: bool,
    memory_probe: dict[str, float] | None,
    free_memory: float | None,
) -> Bounds:
    """Pure: the candidate values of each dimension."""
    detail: dict[str, Any] = {"cpu_budget": cpu_budget, "memory_budget": memory_budget, "ranks": ranks}
    if search.fixed_batch is not None:
        batches = [search.fixed_batch]
        batch_reason = f"batch {search.fixed_batch} fixed by the spec"
    else:
        high = min(search.batch.max, 1 << int(math.log2(max(n_train, 1))))
        if memory_probe is not None and free_memory is not None:
            fit = max_batch_for_memory(free_memory, memory_probe["fixed_bytes"], memory_probe["per_image_bytes"])
            detail.update(memory_probe, free_memory=free_memory, memory_max_batch=fit)
            high = min(high, fit)
        batches = powers_of_two(search.batch.min, max(high, 1))
        batches = [b for b in batches if b <= max(high, batches[0])]
        rule = trajectory_batches(batches, search.nbs, search.batch_rule, search.warmup_epochs)
        batches, batch_reason = rule.batches, rule.reason
    notes: list[str] = []
    workers = _workers(search, per_rank_cpus=max(1, math.floor(cpu_budget / max(ranks, 1))), on_gpu=on_gpu)
    if not on_gpu:
        notes.append(f"workers {workers[0]}: Ultralytics trains on a CPU without dataloader workers")
    if search.fixed_amp is not None:
        amp = [search.fixed_amp]
    else:
        amp = sorted(set(search.amp), reverse=True) if on_gpu else [False]  # AMP does nothing on a CPU
        if not on_gpu:
            notes.append("AMP off: it does nothing on a CPU")
    ram_fits = memory_budget is not None and decoded_bytes <= RAM_CACHE_SHARE * memory_budget
    detail.update(decoded_dataset_bytes=decoded_bytes, ram_cache_fits=ram_fits)
    if search.fixed_cache is not None:
        cache: list[str] = [search.fixed_cache]
    else:
        cache = [str(c) for c in search.cache if c != "ram" or ram_fits] or ["none"]
        if "ram" in search.cache and not ram_fits:
            notes.append("no RAM cache: the decoded images would not fit in half the memory budget")
    places, why = _augmentation(search, augmentation, on_gpu)
    return Bounds(batches, workers, amp or [False], cache, detail, batch_reason, notes, places, why)


def _augmentation(search: SearchSpace, own: str, on_gpu: bool) -> tuple[list[str], str]:
    """Where trials may augment, and why not elsewhere: the offered places when the search offers several, else
    the config's own (`gpu` offered is tried on a GPU only: on a CPU its pixel work would take the training step's
    cores)."""
    if search.augmentation is None:
        return [own], ""
    offered = [str(a) for a in search.augmentation]
    if "gpu" in offered and not on_gpu:
        return [a for a in offered if a != "gpu"] or ["cpu"], "augmentation cpu: gpu is tried on a GPU only"
    return offered, ""


def _workers(search: SearchSpace, *, per_rank_cpus: int, on_gpu: bool) -> list[int]:
    """Worker counts to try: on a CPU only 0, since Ultralytics' trainer sets `workers=0` for CPU training
    (BaseTrainer: data loading is cheap next to a CPU's training step), so any other count measures that again."""
    if not on_gpu:
        return [0]
    if search.fixed_workers is not None:
        return [search.fixed_workers]
    return worker_candidates(search.workers.min, min(search.workers.max, per_rank_cpus))
