"""Ultralytics' losses' anchor points kept from one step to the next, where they are rebuilt on the host every step.

Why: the detection loss (and the segment, pose and oriented-box losses built on it) calls `make_anchors` each step,
which makes each level's grid with `torch.arange(w).type_as(feats)` and fills its strides from the model's stride
tensor: nine copies between the host and the GPU a step (three levels: x, y and the stride), each of which waits
until the GPU has finished everything queued before it, which is the whole forward pass. The training thread then
runs the loss's Python against an idle GPU instead of while the forward runs: py-spy on an H100 (crowded set, GPU
augmentation, batch 128, 2026-12-05) found the training thread waiting inside `make_anchors` for 16% of its steady
time.

What: Ultralytics' own `make_anchors`, called once for each feature shapes, dtype, device and stride tensor, its
result kept and handed back on later steps (the same tensors, element for element; the losses only read them). An
export's call with shapes given as tensors goes to Ultralytics' own. Installed with the step without host waits
(train/host_waits.py).
"""

from __future__ import annotations

from typing import Any

import torch

KEPT_AT_MOST = 16
"""Shapes kept before the cache starts afresh (training at one size keeps one; multi-scale training a few dozen)."""


class KeptAnchors:
    """Stands in for `make_anchors` in Ultralytics' loss module: its results kept per shape (see the module)."""

    def __init__(self, own: Any) -> None:
        self.own = own
        # per key: the stride object the anchors were made with (its id is in the key), and the anchors
        self.kept: dict[tuple[Any, ...], tuple[Any, tuple[torch.Tensor, torch.Tensor]]] = {}

    def __call__(self, feats: Any, strides: Any, grid_cell_offset: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(feats, list) or not feats:
            return self.own(feats, strides, grid_cell_offset)  # type: ignore[no-any-return]
        first = feats[0]
        key = (tuple(tuple(f.shape[2:]) for f in feats), first.dtype, first.device, grid_cell_offset, id(strides))
        found = self.kept.get(key)
        if found is not None and found[0] is strides:
            return found[1]
        if len(self.kept) >= KEPT_AT_MOST:
            self.kept.clear()
        made: tuple[torch.Tensor, torch.Tensor] = self.own(feats, strides, grid_cell_offset)
        self.kept[key] = (strides, made)
        return made


def install() -> KeptAnchors:
    """Ultralytics' loss module's `make_anchors` replaced by a `KeptAnchors` over it (once a process)."""
    from ultralytics.utils import loss

    current = loss.make_anchors  # type: ignore[attr-defined]
    if isinstance(current, KeptAnchors):
        return current
    loss.make_anchors = kept = KeptAnchors(current)  # type: ignore[attr-defined]
    return kept
