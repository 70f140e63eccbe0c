"""Which batch sizes keep the optimisation trajectory of Ultralytics' defaults, so tuning buys time, not accuracy.

Ultralytics steps the optimizer once every `accumulate = max(round(nbs / batch), 1)` batches and scales the weight
decay by `batch * accumulate / nbs` (nbs, the nominal batch size, is 64 unless the user sets it). Its `optimizer=auto`
counts iterations as `len(data) / max(batch, nbs)`. So after warm-up every batch whose effective batch
(`batch * accumulate`) equals the one of Ultralytics' default batch (16) takes the same optimizer steps per epoch with
the same learning rate and scaled weight decay: with nbs 64, every power of two up to 64. During warm-up (3 epochs by
default) Ultralytics ramps `accumulate` from 1 up to its nominal value, so batch 16 takes about twice as many,
smaller steps there as batch 64 (364 against 189 on 4,000 images): the larger batch lags by about two epochs.

Measured on one H200 (yolov8n, 10 epochs, 2026-12-02, docs/trainjob.md): batch 64 ended 0.008 under the defaults'
mAP50-95 on the `shapes` set (near saturation), but 0.095 under them on the harder `crowded` set, still learning; at
30 epochs still 0.014 under them on crowded (two seeds). What differed after warm-up was batch normalisation over 64
images instead of 16: with it taken over groups of 16 (train/norm_groups.py) batch 64 ended level with batch 16 on
crowded at 30 epochs (-0.001 and -0.004 at two seeds, 2026-12-04). Hence the rules, `auto` the default:

- `auto`: `grouped` for a detection job of at least GROUPED_MIN_EPOCHS epochs on one GPU (where it was measured to
  keep accuracy), `defaults` otherwise (shorter jobs, where warm-up's fewer steps weigh more; several GPUs; the other
  tasks, not measured).
- `grouped`: every batch with the defaults' effective batch (up to nbs), a larger one normalising in groups of
  Ultralytics' default batch (`norm_batch`): the defaults' steps after warm-up, their batch-norm statistics always.

- `defaults`: batch 16 only (Ultralytics' default): the same optimizer steps, warm-up included. Without warm-up
  (`warmup_epochs: 0`) every batch of the same effective batch is exact, and those are kept.
- `defaults_then_nbs`: batch 16 through the warm-up epochs, then any batch with the defaults' effective batch (up
  to nbs): training resumes from the warm-up's checkpoint at the larger batch (TrainConfig.warmup_batch).
- `nbs`: every batch with the defaults' effective batch (up to nbs): the same steps after warm-up, faster per epoch.
- `any`: every batch: fastest per epoch, accuracy may differ (batch 128 with nbs 64 lost 0.08 on `shapes`).

Pure: no torch, no Ultralytics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from yolo_workloads.contract import BatchRuleName, SearchSpace

ULTRALYTICS_NBS = 64
"""Ultralytics' default nominal batch size (`nbs`)."""
ULTRALYTICS_BATCH = 16
"""Ultralytics' default batch size: the trajectory the tuner keeps."""
GROUPED_MIN_EPOCHS = 30
"""The shortest job `auto` trains with `grouped`: its accuracy was measured at 30 epochs (docs/trainjob.md)."""


def accumulate(batch: int, nbs: int) -> int:
    """Batches per optimizer step, as Ultralytics' trainer computes it."""
    return max(round(nbs / batch), 1)


def effective_batch(batch: int, nbs: int) -> int:
    """Images per optimizer step."""
    return batch * accumulate(batch, nbs)


def keeps_trajectory(batch: int, nbs: int, reference: int = ULTRALYTICS_BATCH) -> bool:
    """Whether `batch` takes the same optimizer steps (and weight decay) as `reference` after warm-up."""
    return effective_batch(batch, nbs) == effective_batch(reference, nbs)


@dataclass(frozen=True)
class BatchRule:
    """The batch sizes tuning may choose from, and why (said in the tuning result and the job's status)."""

    batches: list[int]
    reason: str


def switch_epoch(warmup_epochs: float, epochs: int) -> int:
    """The first epoch after Ultralytics' warm-up (it warms up `min(warmup_epochs, epochs - 1)` epochs)."""
    return math.ceil(min(warmup_epochs, max(epochs - 1, 0)))


def warmup_batch(rule: str, batch: int, warmup_epochs: float, epochs: int, gpus: int) -> int | None:
    """The batch training runs its warm-up epochs at under `rule` (None: the tuned batch throughout)."""
    if rule != "defaults_then_nbs" or batch == ULTRALYTICS_BATCH or gpus > 1:
        return None  # several GPUs: Ultralytics trains in DDP subprocesses, which we do not stop mid-run
    return ULTRALYTICS_BATCH if switch_epoch(warmup_epochs, epochs) > 0 else None


def resolve_rule(rule: BatchRuleName | Literal["auto"], epochs: int, gpus: int, task: str) -> BatchRuleName:
    """The rule `auto` stands for in this job (see the module's docstring); any other rule is itself."""
    if rule != "auto":
        return rule
    measured = task == "detect" and epochs >= GROUPED_MIN_EPOCHS and gpus == 1
    return "grouped" if measured else "defaults"


def norm_batch(rule: str, batch: int, gpus: int) -> int | None:
    """The group size training normalises in under `rule` at `batch` (None: the whole batch, as Ultralytics)."""
    grouped = rule == "grouped" and gpus == 1 and batch > ULTRALYTICS_BATCH and batch % ULTRALYTICS_BATCH == 0
    return ULTRALYTICS_BATCH if grouped else None


def trajectory_batches(candidates: list[int], nbs: int, rule: str, warmup_epochs: float = 3.0) -> BatchRule:
    """The candidates `rule` allows (see the module's docstring), falling back to the defaults' batch."""
    if rule == "any":
        return BatchRule(list(candidates), "any batch (tuning.batchRule Any: accuracy may differ)")
    steady = [b for b in candidates if keeps_trajectory(b, nbs)]
    if rule == "defaults_then_nbs" and warmup_epochs > 0 and steady:
        return BatchRule(
            steady,
            f"batch <= {max(steady)} after warm-up, {ULTRALYTICS_BATCH} during it as the defaults: the same "
            f"optimizer steps ({effective_batch(ULTRALYTICS_BATCH, nbs)} images each, nbs {nbs})",
        )
    if rule == "defaults" and warmup_epochs > 0:
        pool = steady or candidates or [ULTRALYTICS_BATCH]
        kept = [min(pool, key=lambda b: (abs(math.log2(b / ULTRALYTICS_BATCH)), b))]  # 16, else the closest
        return BatchRule(kept, f"batch {kept[0]} as Ultralytics' default: the same optimizer steps, warm-up included")
    kept = steady or [ULTRALYTICS_BATCH]
    dropped = [b for b in candidates if b not in kept]
    target = effective_batch(ULTRALYTICS_BATCH, nbs)
    when = "after warm-up" if warmup_epochs > 0 else "(no warm-up)"
    reason = f"batch <= {max(kept)} keeps {target} images per optimizer step (nbs {nbs}) {when}"
    if rule == "grouped" and max(kept) > ULTRALYTICS_BATCH:
        reason += f", batch norm over groups of {ULTRALYTICS_BATCH} images as batch {ULTRALYTICS_BATCH} normalises"
    return BatchRule(kept, reason + (f"; not {','.join(str(b) for b in dropped)}" if dropped else ""))


def rule_norm_batch(search: SearchSpace, batch: int, gpus: int) -> int | None:
    """`norm_batch` of the search's batch rule for a tuned batch; None for the user's own (`fixed_batch`)."""
    return None if search.fixed_batch is not None else norm_batch(search.batch_rule, batch, gpus)


def rule_warmup_batch(search: SearchSpace, batch: int, epochs: int, gpus: int) -> int | None:
    """`warmup_batch` of the search's batch rule for a tuned batch; None for the user's own (`fixed_batch`)."""
    if search.fixed_batch is not None:
        return None
    return warmup_batch(search.batch_rule, batch, search.warmup_epochs, epochs, gpus)
