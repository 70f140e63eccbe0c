"""The training set's RAM-cached images kept on the GPU, for the GPU augmentation path (`augmentation: gpu`).

Why: with the augmentation on the GPU the loader's workers only letterbox, yet every batch's pixels still travel
from the workers through shared memory, the pin-memory thread and PCIe: 157 MB a batch of 128 at 640 px, while the
training process waited for its next batch in 0.5 s of a 3.2 s epoch on an H200 (docs/benchmarks.md, issue 23).
When the data set is cached in RAM (`cache: ram`, so every image is decoded and resized once already) and its
images fit in a share of the GPU's free memory, they are copied to the GPU once, each in an imgsz x imgsz slot at
its top-left corner, RGB. The workers then send each sample's labels and letterbox geometry with an empty image
(`DropPixels`), and a batch's images are gathered on the GPU by file. The augmentation reads a tile only inside its
image (never the letterbox border), so a slot's padding is never read and the pixels are the workers' own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

GPU_SHARE = 0.25
"""The most of the GPU's free memory the images may take; training needs the rest (batches, activations)."""


class DropPixels:
    """A loader transform, last in line: the sample keeps its labels and letterbox geometry, its image is empty
    (the training process takes the pixels from `DeviceImages`)."""

    def __call__(self, labels: dict[str, Any]) -> dict[str, Any]:
        labels["img"] = torch.empty((3, 0, 0), dtype=torch.uint8)
        return labels


@dataclass(frozen=True)
class DeviceImages:
    """The images of a RAM-cached training set on a device, one imgsz x imgsz slot each (RGB, top-left)."""

    slots: torch.Tensor  # (N, 3, S, S) uint8
    index: dict[str, int]  # image file -> slot

    def gather(self, files: list[str]) -> torch.Tensor:
        """A batch's images (B, 3, S, S, uint8, on the device), by image file."""
        rows = torch.as_tensor([self.index[f] for f in files], dtype=torch.long)
        if self.slots.device.type == "cuda":
            rows = rows.pin_memory()  # a queued copy: nothing waits for the GPU
        return self.slots.index_select(0, rows.to(self.slots.device, non_blocking=True))


def why_not(dataset: Any, imgsz: int, free_bytes: int) -> str | None:
    """Why this data set's images cannot live on the device (None: they can)."""
    cache: Any = getattr(dataset, "ims", None)
    if not hasattr(cache, "offsets") or not hasattr(cache, "shapes"):
        return "the training set is not cached in RAM: cache is not ram"
    shapes = np.asarray(cache.shapes)
    if shapes.ndim != 2 or shapes.shape[1] != 3 or (shapes[:, 2] != 3).any():
        return "the images are not all 3-channel"
    if (shapes[:, :2] > imgsz).any():
        return f"an image is larger than imgsz {imgsz}"
    need = len(shapes) * 3 * imgsz * imgsz
    if need > GPU_SHARE * free_bytes:
        return f"{need / 2**30:.1f} GiB of images, more than {GPU_SHARE:.0%} of the GPU's free memory"
    return None


def upload(dataset: Any, imgsz: int, device: torch.device) -> DeviceImages:
    """Copy a RAM-cached data set's images (Ultralytics' packed BGR cache) into slots on `device`: one copy of the
    packed buffer, then one on-device copy per image into its slot."""
    cache = dataset.ims
    shapes = np.asarray(cache.shapes, dtype=np.int64)
    packed = cache.buffer.to(device)
    slots = torch.zeros((len(shapes), 3, imgsz, imgsz), dtype=torch.uint8, device=device)
    for i, (h, w, c) in enumerate(shapes):
        start = int(cache.offsets[i])
        image = packed[start : start + h * w * c].view(int(h), int(w), int(c))
        slots[i, :, :h, :w] = image.permute(2, 0, 1).flip(0)  # HWC BGR -> CHW RGB, as Ultralytics' Format does
    del packed
    index = {str(f): i for i, f in enumerate(dataset.im_files)}
    return DeviceImages(slots, index)
