"""Batch normalisation over groups of the defaults' batch, so a larger batch normalises its images as batch 16 does.

Why: with Ultralytics' nominal batch (nbs 64) a batch of 64 takes the same optimizer steps after warm-up as the
defaults' batch of 16 (which accumulates four batches a step), yet on the crowded set it ended 0.014 of mAP50-95
lower after 30 epochs (docs/benchmarks.md). What still differs after warm-up is batch normalisation: each image is
normalised with the mean and variance of its whole batch, and statistics over 64 images are less noisy than over 16,
a noise that regularises. Normalising each group of 16 images with its own statistics ("ghost batch norm", Hoffer
et al. 2017, "Train longer, generalize better") gives every image the statistics batch 16 would have given it, at
the larger batch's speed.

What changes, in training mode only and only in the model being trained (Ultralytics' EMA copy, which validates and
is saved, keeps plain BatchNorm2d: checkpoints load anywhere): each `nn.BatchNorm2d` of a batch of `k` groups
normalises group by group, and updates its running statistics once with the groups' mean, with the momentum of `k`
updates (`1 - (1 - m) ** k`), as `k` batches of the group's size would have in turn. A batch that is not a multiple of
the group (an epoch's last), evaluation, and batches of one group normalise as before.
"""

from __future__ import annotations

import copyreg
import sys
from typing import Any

import torch
from torch import nn
from torch.nn import functional


class GroupedBatchNorm2d(nn.BatchNorm2d):
    """`nn.BatchNorm2d` whose training statistics are taken over groups of `group` images (the module's docstring)."""

    group: int = 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        k = n // self.group
        if not self.training or k < 2 or n % self.group or x.dim() != 4 or self.momentum is None:
            return super().forward(x)  # (momentum None: a cumulative average, which no group rule here keeps)
        c, h, w = x.shape[1:]
        running_mean, running_var, weight, bias = self.running_mean, self.running_var, self.weight, self.bias
        if running_mean is None or running_var is None or weight is None or bias is None:
            return super().forward(x)  # no running statistics or no affine: not a layer Ultralytics builds
        # Image i of the batch is in group i % k: then the groups' channels side by side, (group, k * c, h, w), are
        # a view of a contiguous (NCHW) batch, and one batch_norm call normalises each group with its own statistics.
        # (Which images share a group does not matter: the loader shuffles.) A channels-last batch is copied in and
        # out, which is why `install_when_usable` trains NCHW unless the user chose (docs/benchmarks.md: yolov8n at
        # batch 64 on the H200, 1,170 images/s NCHW against 1,045 channels-last, both grouped).
        side_by_side = x.reshape(self.group, k * c, h, w)
        mean, var = running_mean.repeat(k), running_var.repeat(k)
        momentum = 1.0 - (1.0 - self.momentum) ** k
        y = functional.batch_norm(side_by_side, mean, var, weight.repeat(k), bias.repeat(k), True, momentum, self.eps)
        with torch.no_grad():
            running_mean.copy_(mean.view(k, c).mean(0))
            running_var.copy_(var.view(k, c).mean(0))
            if self.num_batches_tracked is not None:
                self.num_batches_tracked.add_(1)
        if x.is_contiguous():
            return y.view(n, c, h, w)
        out = torch.empty_like(x)  # the input's memory format
        out.copy_(y.view(n, c, h, w))
        return out

    def __reduce_ex__(self, protocol: Any) -> Any:
        # A copy or a pickle of this layer is a plain BatchNorm2d: an EMA copied from the trained model (Ultralytics
        # makes one again when it recovers from a NaN) normalises as usual, and checkpoints load without this package.
        state = {k: v for k, v in self.__dict__.items() if k != "group"}
        return copyreg._reconstructor, (nn.BatchNorm2d, object, None), state  # type: ignore[attr-defined]


def group_batch_norms(model: nn.Module, group: int) -> int:
    """Make every plain `nn.BatchNorm2d` of `model` normalise in groups of `group` images; how many it changed."""
    changed = 0
    for module in model.modules():
        if type(module) is nn.BatchNorm2d:
            module.__class__ = GroupedBatchNorm2d
            changed += 1
        if isinstance(module, GroupedBatchNorm2d):
            module.group = group
    return changed


def why_not(group: int, batch: int, gpus: int) -> str | None:
    """Why `group` cannot change how this run normalises (None: it can)."""
    if group >= batch:
        return f"the batch ({batch}) is no larger than the group"
    if batch % group:
        return f"batch {batch} is no multiple of {group}"
    if gpus > 1:
        return "several GPUs train in DDP processes, each normalising its own share of the batch"
    return None


def install_when_usable(trainer: Any, group: int | None, batch: int, gpus: int) -> bool:
    """Group the trained model's batch norms from the first batch on, unless `why_not` (said in the log).

    The model then trains in NCHW memory where the user left `channels_last` to Ultralytics (None: channels-last on
    CUDA): there the groups are views of the batch and each layer is cuDNN's own batch norm, without copies.
    """
    if group is None:
        return False
    if (why := why_not(group, batch, gpus)) is not None:
        _say(f"batch norm over the whole batch: norm_batch {group} not applied: {why}")
        return False
    if getattr(trainer.args, "channels_last", None) is None:  # an explicit extraArgs channels_last wins
        trainer.args.channels_last = False

    def on_train_start(t: Any) -> None:  # after Ultralytics made its EMA copy, which stays plain
        changed = group_batch_norms(t.model, group)
        _say(f"batch norm over groups of {group} images ({changed} layers), as at batch {group}")

    trainer.add_callback("on_train_start", on_train_start)
    return True


def _say(line: str) -> None:
    print(f"train: {line}", file=sys.stderr, flush=True)
