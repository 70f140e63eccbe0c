"""Ultralytics' training step without the host waiting for the GPU in it: the loss values a step late, and the
targets' padding sized from a count the host already has.

Why: each time the training process reads a value off the GPU, it waits until the GPU has finished everything queued
before, so the host's work that follows (the next batch from the loader, the augmentation's launches, the loss's
Python) runs while the GPU idles. Ultralytics' step reads twice on purpose and once by the way: its progress bar
prints the running mean of the loss after every step (a read once the backward is done: the whole of the next step's
preparation then runs against an idle GPU), and its criterion pads the targets to the most labels any image has,
a count it reads back from the GPU (`unique`, `max`) after the forward.

What changes:
- The model's `loss` hands the trainer the loss items of the step before (copied to the host asynchronously, read
  once that step's event has passed: by then it has), as plain floats. The progress bar is one step behind; the
  epoch's mean losses (results.csv, metrics, logs) are exact: the items are summed on the GPU and the trainer's
  `tloss` is set from that sum once, at the end of the epoch, when `loss_items` become the device tensors again
  (the validator makes its sums like them).
- The loss's anchor points are kept from one step to the next (train/kept_anchors.py), where Ultralytics rebuilds
  them from the host each step, each copy a wait; its other small tensors from host values (the image size, the
  assigner's floor for small boxes) are copied through pinned memory without a wait (train/pinned_copies.py).
- The loader (or the GPU augmentation) counts each batch's labels per image on the host, where the labels are
  anyway, under `MAX_BOXES`; the detection criterion's padding takes that count instead of reading it back. The
  padded targets are Ultralytics' own, element for element (tests/workloads/test_host_waits.py).
- With the labels' sides (`BOX_SIDES`, also from the host) the loss's two `nonzero` lists (the assigner's candidates,
  the box loss's foreground) go into buffers sized on the host on crowded batches (train/static_lists.py).

Installed with CUDA graphs (`cuda_graphs`, one CUDA device in this process): both change how the step is launched
and waited for, never what it computes; `cuda_graphs: false` keeps Ultralytics' own step whole.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from yolo_workloads.train import grouped_assigner, kept_anchors, pinned_copies, static_lists

MAX_BOXES = "max_boxes_per_image"
"""Batch key: the most labels any image of the batch has, counted on the host (an int)."""


BOXES_PER_IMAGE = "boxes_per_image"
"""Batch key: each image's label count, counted on the host (int64, one an image): the loss's assigner runs on groups
of images padded to their own most (train/grouped_assigner.py)."""


BOX_SIDES = "box_sides"
"""Batch key: each label's width and height as fractions of the image's (float64, (N, 2), labels in the batch's
order), from the host: the loss sizes its lists by them (train/static_lists.py)."""


def boxes_per_image(batch_idx: Any, images: int) -> np.ndarray:
    """Each image's label count, from the batch's per-label image index (a host array or tensor)."""
    return np.bincount(np.asarray(batch_idx, dtype=np.int64).reshape(-1), minlength=images)


def count_labels(batch: dict[str, Any], batch_idx: Any, images: int, sides: Any = None) -> None:
    """The batch's host counts for the loss (MAX_BOXES and BOXES_PER_IMAGE), from its per-label image index, and
    its labels' sides (BOX_SIDES) where given (fractions of the image, (N, 2))."""
    counts = boxes_per_image(batch_idx, images)
    batch[BOXES_PER_IMAGE] = counts
    batch[MAX_BOXES] = int(counts.max(initial=0))
    if sides is not None:
        batch[BOX_SIDES] = np.asarray(sides, dtype=np.float64).reshape(-1, 2)


def pad_targets(targets: torch.Tensor, batch_size: int, rows: int, scale: torch.Tensor) -> torch.Tensor:
    """Ultralytics' detection targets: rows [image, class, x, y, w, h (0-1)], grouped by image, as (batch_size, rows,
    5) of [class, x1, y1, x2, y2 in pixels], zero-filled; `rows` is at least the most labels one image has."""
    out = torch.zeros(batch_size, rows, targets.shape[1] - 1, device=targets.device)
    if targets.shape[0] == 0:
        return out
    image = targets[:, 0].long()
    per_image = torch.zeros(batch_size, dtype=torch.long, device=targets.device)
    per_image.scatter_add_(0, image, torch.ones_like(image))
    first_row = per_image.cumsum(0) - per_image  # each image's first label in `targets`
    row = torch.arange(targets.shape[0], device=targets.device) - first_row[image]
    out[image, row] = targets[:, 1:].to(out.dtype)
    xy, half = out[..., 1:3] * scale[:2], out[..., 3:5] * scale[2:] / 2
    out[..., 1:5] = torch.cat((xy - half, xy + half), -1)  # centre and size to corners, in pixels
    return out


class _KnownRowsPadding:
    """The criterion's `preprocess` replaced: the count from the host when the batch brought one, else its own."""

    def __init__(self, own: Callable[..., torch.Tensor]) -> None:
        self.own = own
        self.rows: int | None = None
        self.calls_with_rows = 0

    def __call__(self, targets: torch.Tensor, batch_size: int, scale_tensor: torch.Tensor) -> torch.Tensor:
        if self.rows is None:
            return self.own(targets, batch_size, scale_tensor)
        self.calls_with_rows += 1
        return pad_targets(targets, batch_size, self.rows, scale_tensor)


class LateLossItems:
    """Loss items handed out a step late as floats; the epoch's exact sum kept on the device."""

    def __init__(self) -> None:
        self.names: tuple[str, ...] = ()
        self.total: torch.Tensor | None = None
        self.steps = 0
        self.pending: tuple[Any, torch.Tensor] | None = None  # (the copy's event or None, its host tensor)
        self.last: dict[str, torch.Tensor] = {}  # the latest items as the criterion gave them (on the device)

    def push(self, items: dict[str, torch.Tensor]) -> dict[str, float]:
        self.names, self.last = tuple(items), items
        values = torch.stack([v.detach().float().reshape(()) for v in items.values()])
        self.total = values.clone() if self.total is None else self.total.add_(values)
        self.steps += 1
        previous, self.pending = self.pending, self._copy_to_host(values)
        return dict(zip(self.names, self._read(previous or self.pending), strict=True))

    def epoch_means(self) -> dict[str, float] | None:
        """The mean of the items pushed since the last call (None: none), read once; the sum starts again."""
        total, steps = self.total, self.steps
        self.total, self.steps = None, 0
        if total is None or steps == 0:
            return None
        return dict(zip(self.names, (total / steps).tolist(), strict=True))

    @staticmethod
    def _copy_to_host(values: torch.Tensor) -> tuple[Any, torch.Tensor]:
        if not values.is_cuda:
            return None, values.cpu()
        host = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
        host.copy_(values, non_blocking=True)
        done = torch.cuda.Event()  # type: ignore[no-untyped-call]
        done.record()
        return done, host

    @staticmethod
    def _read(copy: tuple[Any, torch.Tensor]) -> list[float]:
        done, host = copy
        if done is not None:
            done.synchronize()  # the step before's: long passed when this is called for the next step
        return [float(x) for x in host.tolist()]


class NoWaitLoss:
    """Replaces a model's `loss(batch, preds=None)` in training: late loss items, padding sized on the host."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.inner: Callable[..., Any] = model.loss
        self.items = LateLossItems()
        self.padding = _padding_of(model)
        self.assigner = grouped_assigner.install(model.criterion) if self.padding is not None else None
        self.lists = static_lists.install(model.criterion) if self.assigner is not None else None
        if self.assigner is not None and self.lists is not None:
            self.assigner.on_images = self.lists.on_images

    def __call__(self, batch: dict[str, Any], preds: Any = None) -> Any:
        training = bool(self.model.training and torch.is_grad_enabled())
        rows = batch.get(MAX_BOXES) if training else None
        counts = batch.get(BOXES_PER_IMAGE) if training else None
        counts = counts if isinstance(counts, np.ndarray) else None
        if self.padding is not None:
            self.padding.rows = rows if isinstance(rows, int) else None
        if self.assigner is not None:
            self.assigner.counts = counts
        if self.lists is not None:
            self.lists.set_for(counts, _sides_in_pixels(batch) if training else None, _image_shape(batch))
        try:
            loss, items = self.inner(batch, preds)
        finally:
            if self.padding is not None:
                self.padding.rows = None
            if self.assigner is not None:
                self.assigner.counts = None
            if self.lists is not None:
                self.lists.clear()
        if not training or not isinstance(items, dict) or not items:
            return loss, items
        return loss, self.items.push(items)


def _sides_in_pixels(batch: dict[str, Any]) -> np.ndarray | None:
    """The batch's labels' sides in pixels of its images as the loss sees them (after any multi-scale resize)."""
    sides, img = batch.get(BOX_SIDES), batch.get("img")
    if not isinstance(sides, np.ndarray) or not isinstance(img, torch.Tensor) or img.ndim != 4:
        return None
    height, width = img.shape[-2:]
    return sides * np.array([width, height], dtype=np.float64)


def _image_shape(batch: dict[str, Any]) -> tuple[int, int] | None:
    """The batch's image height and width as the model sees them (None where its images are not a 4-d tensor)."""
    img = batch.get("img")
    return (int(img.shape[-2]), int(img.shape[-1])) if isinstance(img, torch.Tensor) and img.ndim == 4 else None


def _padding_of(model: Any) -> _KnownRowsPadding | None:
    """The model's criterion made to take the host's count, where it pads as Ultralytics' detection loss does."""
    from ultralytics.utils.loss import v8DetectionLoss

    if getattr(model, "criterion", None) is None:
        model.criterion = model.init_criterion()
    criterion = model.criterion
    if not isinstance(criterion, v8DetectionLoss) or type(criterion).preprocess is not v8DetectionLoss.preprocess:
        return None  # another padding (oriented boxes: five coordinates): left as it is
    padding = _KnownRowsPadding(criterion.preprocess)
    criterion.preprocess = padding  # type: ignore[method-assign]
    return padding


def install_with_graphs(trainer: Any, wanted: bool, device: str, gpus: int) -> bool:
    """CUDA graphs where the run can use them (`graphs.install_when_usable`) and this step with them: the one rule
    that training and tuning's trials both follow."""
    from yolo_workloads.train import graphs

    if not graphs.install_when_usable(trainer, wanted, device, gpus):
        return False
    install(trainer)
    return True


def install(trainer: Any) -> None:
    """Make `trainer` (an Ultralytics trainer) train without the two waits, from its first batch."""

    def on_train_start(t: Any) -> None:
        if not isinstance(t.model.loss, NoWaitLoss):
            t.model.loss = NoWaitLoss(t.model)
        kept_anchors.install()
        copies = "; its host values copied without a wait" if pinned_copies.install() else ""
        lists = "; the loss's lists sized on the host for crowded batches" if t.model.loss.lists is not None else ""
        print(
            f"train: loss values read a step late; target padding sized on the host{lists}{copies}",
            file=sys.stderr,
            flush=True,
        )

    def on_train_epoch_start(t: Any) -> None:
        if (items := _late_items(t)) is not None:
            items.epoch_means()  # an epoch restarted after an out-of-memory retry starts afresh

    def on_train_epoch_end(t: Any) -> None:
        loss = getattr(t.model, "loss", None)
        if isinstance(loss, NoWaitLoss) and loss.lists is not None:
            loss.lists.check_epoch()
        items = _late_items(t)
        means = items.epoch_means() if items is not None else None
        if items is not None and means is not None:
            t.tloss = means  # what Ultralytics' running mean would have reached, from the exact sum
            t.loss_items = items.last  # the validator sizes its own sums on them: tensors on the device

    trainer.add_callback("on_train_start", on_train_start)
    trainer.add_callback("on_train_epoch_start", on_train_epoch_start)
    trainer.callbacks["on_train_epoch_end"].insert(0, on_train_epoch_end)  # before any logger reads `tloss`


def _late_items(trainer: Any) -> LateLossItems | None:
    loss = getattr(getattr(trainer, "model", None), "loss", None)
    return loss.items if isinstance(loss, NoWaitLoss) else None
