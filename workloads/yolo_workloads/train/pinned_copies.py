"""The losses' small tensors made from host values each step, copied to the GPU without a wait.

Why: with the anchors kept (train/kept_anchors.py) and the lists sized on the host (train/static_lists.py), CUDA's
sync debug mode still found four waits in the detection loss on an H100 (2026-12-06): the image size
(`torch.tensor(feats' shape, device=...) * stride`), its [w, h, w, h] (a Python list as an index: PyTorch makes it a
tensor on the device) and the assigner's floor for small boxes (`torch.tensor(stride_val, device=...)`, once a group).
PyTorch copies a tensor made in pageable host memory and then waits until the GPU has run everything queued before
it: the first such copy stops the training thread until the forward pass has finished, and the loss's Python then
runs against an idle GPU.

What: Ultralytics' loss and assigner modules see a `torch` whose `tensor`, for a CUDA device and data of plain
numbers, makes the tensor in pinned memory and copies it without waiting (PyTorch's pinned allocator keeps the block
until the copy has run). The tensor it gives (`HostValues`) takes a list of indices the same way, and so do the small
tensors computed from it (the image size times the stride). The values are Ultralytics' own, element for element.
Installed with the step without host waits (train/host_waits.py; `ENABLED`, on since timed); everything else in
those modules is torch's own.
"""

from __future__ import annotations

import types
from typing import Any

import torch

ENABLED = True
"""Installed with the step without host waits. Timed on an H100 (2026-12-06, docs/benchmarks.md, "The loss's last
waits"): crowded 1,743 against 1,682-1,695 images/s, shapes 1,839 against 1,799; tests/gpu/test_gpu_host_waits.py
finds no wait left in the crowded loss. False keeps Ultralytics' copies (train_throughput.py --pinned-copies false)."""

DEVICE_TYPES = frozenset({"cuda"})
"""Devices whose copies from pageable memory wait for the stream (a CPU test adds "cpu" to run a loss through
`HostValues`; a CPU tensor is then made as torch makes it)."""

SMALL = 16
"""Results of at most this many elements computed from `HostValues` stay `HostValues` (the image size and its
[w, h, w, h]); larger ones, the loss's own tensors, are plain tensors."""

MODULES = ("ultralytics.utils.loss", "ultralytics.utils.tal")
"""The modules whose `torch` is replaced: the detection loss and its assigner."""


def _plain_numbers(data: Any) -> bool:
    """Whether `data` is a number or a flat sequence of numbers (a shape included)."""
    if isinstance(data, (bool, int, float)):
        return True
    return isinstance(data, (list, tuple)) and all(isinstance(x, (bool, int, float)) for x in data)


def _to_device(data: Any, dtype: torch.dtype | None, device: torch.device) -> torch.Tensor:
    """`data` on `device`, through pinned memory and without a wait where the device is a GPU."""
    if device.type != "cuda":
        return torch.tensor(data, dtype=dtype, device=device)
    return torch.tensor(data, dtype=dtype, pin_memory=True).to(device, non_blocking=True)


class HostValues(torch.Tensor):
    """A small tensor made from host values: indexed by a list of ints without a wait (see the module)."""

    @classmethod
    def __torch_function__(
        cls, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        if func is torch.Tensor.__getitem__ and len(args) == 2 and _is_int_list(args[1]):
            args = (args[0], _to_device(args[1], torch.long, args[0].device))
        with torch._C.DisableTorchFunctionSubclass():
            out = func(*args, **(kwargs or {}))
        if type(out) is torch.Tensor and out.numel() <= SMALL and not out.requires_grad:
            return out.as_subclass(cls)
        return out


def _is_int_list(index: Any) -> bool:
    return isinstance(index, list) and bool(index) and all(type(i) is int for i in index)


def tensor(data: Any, *, dtype: torch.dtype | None = None, device: Any = None, **kwargs: Any) -> torch.Tensor:
    """`torch.tensor` as the loss calls it: without a wait for a CUDA device and plain numbers, else torch's own."""
    where = torch.device(device) if isinstance(device, (str, torch.device)) else None
    if where is None or where.type not in DEVICE_TYPES or kwargs or not _plain_numbers(data):
        return torch.tensor(data, dtype=dtype, device=device, **kwargs)
    return _to_device(list(data) if isinstance(data, tuple) else data, dtype, where).as_subclass(HostValues)


class TorchWithPinnedCopies(types.ModuleType):
    """`torch` as the replaced modules see it: its own attributes, `tensor` excepted."""

    def __init__(self) -> None:
        super().__init__("torch")
        self.tensor = tensor

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)


def install() -> bool:
    """Ultralytics' loss and assigner modules given a `TorchWithPinnedCopies` (once a process); False when off."""
    import importlib

    if not ENABLED:
        return False
    for name in MODULES:
        module: Any = importlib.import_module(name)
        if not isinstance(module.torch, TorchWithPinnedCopies):
            module.torch = TorchWithPinnedCopies()
    return True


def uninstall() -> None:
    """The modules' own `torch` back (tests, and a process that trains again without the step)."""
    import importlib

    for name in MODULES:
        module: Any = importlib.import_module(name)
        if isinstance(module.torch, TorchWithPinnedCopies):
            module.torch = torch
