"""The model's forward and backward in training replayed as CUDA graphs: the same kernels, launched at once.

Why: at Ultralytics' default batch (16: the defaults' optimisation trajectory, which tuning keeps so accuracy stays
the defaults') a small model's training step is bound by the main process launching kernels, not by the GPU or the
loader (docs/benchmarks.md, issue 16: on an H200 the forward with the loss took 33 ms and the backward 14 ms a
step while the GPU was 27% busy). A CUDA graph replays a captured forward and backward with one launch each and
computes the same thing, so it speeds the step without touching the trajectory. The loss stays eager: its shapes
follow each batch's labels.

How: at the first training batch the model's training forward is captured (torch.cuda.make_graphed_callables, under
the trainer's mixed precision) with that batch's images as the sample; from then on the model's `loss` feeds the
graph's outputs to Ultralytics' own criterion whenever a batch has the captured shape (a data set's last, shorter
batch runs eagerly). The capture's warm-up passes would move BatchNorm's running statistics: they are put back, so
training starts from where it would have. One GPU only (Ultralytics' DDP ranks are separate processes); a capture
that fails leaves the eager forward in place and says why.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn


def _say(line: str) -> None:
    print(f"train: {line}", file=sys.stderr, flush=True)  # the workload verbs' log is stderr


class _TrainingForward(nn.Module):
    """The model's forward on images, as a module whose parameters are the model's (what the capture needs)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model: Any = model  # an Ultralytics model: `predict` is its forward on images

    def forward(self, img: torch.Tensor) -> Any:
        return self.model.predict(img)  # what Ultralytics' BaseModel.forward does for a tensor


class GraphedLoss:
    """Replaces a model's `loss(batch, preds=None)`: predictions from the graph when the batch fits it."""

    def __init__(self, model: Any, amp: bool, dtype: torch.dtype = torch.float16) -> None:
        self.model = model
        self.amp = amp
        self.dtype = dtype
        self.eager = model.loss
        self.graphed: Any = None  # the captured forward (a module whose forward replays the graph)
        self.shape: torch.Size | None = None
        self.failed: str | None = None
        self.replays = 0

    def __call__(self, batch: dict[str, Any], preds: Any = None) -> Any:
        img = batch["img"]
        if preds is None and self.model.training and torch.is_grad_enabled() and img.is_cuda:
            if self.graphed is None and self.failed is None:
                self._capture(img)
            if self.graphed is not None and img.shape == self.shape:
                preds = self.graphed(img)
                self.replays += 1
        return self.eager(batch, preds)

    def _capture(self, img: torch.Tensor) -> None:
        buffers = {name: b.detach().clone() for name, b in self.model.named_buffers()}
        try:
            with (
                torch.autocast("cuda", dtype=self.dtype, enabled=self.amp, cache_enabled=False),
                _capture_in_this_thread_only(),
            ):
                self.graphed = torch.cuda.make_graphed_callables(
                    _TrainingForward(self.model), (img.detach().clone(),), allow_unused_input=True
                )
            self.shape = img.shape
            _keep_gradients(self.model)
            _say(f"forward and backward captured as CUDA graphs at batch shape {tuple(img.shape)}")
        except (RuntimeError, AssertionError, TypeError) as e:  # an op the capture refuses: stay eager
            self.failed = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            self.graphed = None
            _say(f"CUDA graphs not used ({self.failed}); the step stays eager")
        finally:
            with torch.no_grad():
                for name, b in self.model.named_buffers():
                    b.copy_(buffers[name])


@contextlib.contextmanager
def _capture_in_this_thread_only() -> Iterator[None]:
    """make_graphed_callables captures in CUDA's global mode, where any thread's unsafe CUDA call during the capture
    fails it. The training loader's pin-memory thread allocates pinned memory all along, so at batch 64 with 16
    workers a capture failed every time ("operation not permitted when stream is capturing", on the H200); only
    this thread's calls belong in the graph, so the capture runs in thread-local mode."""
    graph = torch.cuda.graph
    torch.cuda.graph = functools.partial(graph, capture_error_mode="thread_local")  # type: ignore[misc,assignment]
    try:
        yield
    finally:
        torch.cuda.graph = graph  # type: ignore[misc]


def _keep_gradients(model: nn.Module) -> None:
    """Give every trainable parameter a gradient tensor that stays. The graph's backward hands autograd gradients
    that live in the graph's own memory; a parameter without a gradient would adopt that memory as its `.grad`, and
    the next replay would overwrite it in place, so accumulating over batches (Ultralytics steps once every
    nbs / batch batches) would keep only the last batch, doubled. With a gradient present, autograd adds into it."""
    for p in model.parameters():
        if p.requires_grad and p.grad is None:
            p.grad = torch.zeros_like(p)


def _zero_without_freeing(optimizer: Any) -> None:
    """The optimizer's zero_grad keeps gradient tensors (zeroed) instead of dropping them (see _keep_gradients)."""
    zero_grad = optimizer.zero_grad
    optimizer.zero_grad = lambda set_to_none=False: zero_grad(set_to_none=False)


def unusable(device: str, gpus: int) -> str | None:
    """Why CUDA graphs cannot serve this run (None: they can): they need one CUDA device in this process."""
    if gpus > 1 or "," in device:
        return "several GPUs train in DDP processes"
    if device.strip().lower() in {"cpu", "mps"}:
        return f"device {device}"
    if not torch.cuda.is_available():
        return "no CUDA device"
    return None


def install_when_usable(trainer: Any, wanted: bool, device: str, gpus: int) -> bool:
    """`install` unless the config turns graphs off or the run cannot use them (said in the log)."""
    why = "turned off (cuda_graphs: false)" if not wanted else unusable(device, gpus)
    if why is not None:
        if not why.startswith("device"):  # a CPU run has nothing to capture and says how it trains elsewhere
            _say(f"CUDA graphs not used: {why}")
        return False
    install(trainer)
    return True


def install(trainer: Any) -> None:
    """Make `trainer` (an Ultralytics trainer) capture its model's training forward at its first batch."""

    def on_train_start(t: Any) -> None:
        model = t.model
        if isinstance(getattr(model, "loss", None), GraphedLoss):
            return
        dtype = torch.bfloat16 if getattr(t.args, "amp", None) == "bf16" else torch.float16  # as the trainer's
        model.loss = GraphedLoss(model, bool(t.amp), dtype)
        _zero_without_freeing(t.optimizer)

    trainer.add_callback("on_train_start", on_train_start)
