"""Letterbox geometry without pixels, for the GPU path's samples whose pixels the training process takes elsewhere.

Why: with `augmentation: gpu` a worker's sample carries labels and letterbox geometry only when its pixels come from
the GPU (the RAM-cached set kept there, `device_images`) or are decoded there (`gpu_decode`), yet Ultralytics'
LetterBox still padded a full image (`cv2.copyMakeBorder`) and its Format copied it again (`np.ascontiguousarray`),
both thrown away a step later: 1.2 MB written twice per 640 px sample. Measured on the two-core development machine
(2026-12-05, shapes at 640, the transforms alone): 0.47-1.5 ms a sample with the copies, 0.21 ms without, the same
labels. Here such a sample's image is a stand-in, a zero-stride array of the right shape (no memory behind it);
LetterBox computes its geometry from the shape as always (its own `get_params` and `apply_instances`), and only the
pixel steps are skipped for a stand-in: the padded stand-in has the padded shape, Format hands on an empty image.
Every other sample (a PNG among JPEGs, say) goes through the transforms untouched.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

_ZERO = np.zeros((1, 1, 3), dtype=np.uint8)


def stand_in(height: int, width: int) -> np.ndarray:
    """An image of this shape that holds no pixels (read-only, every element the one zero)."""
    return np.broadcast_to(_ZERO, (height, width, 3))


def is_stand_in(image: Any) -> bool:
    return isinstance(image, np.ndarray) and image.ndim == 3 and image.strides[:2] == (0, 0)


class _PixelStep:
    """A transform's `apply_image` that takes a stand-in its own way (`without_pixels`) and leaves anything else
    to Ultralytics' step it wraps."""

    def __init__(self, apply_image: Any) -> None:
        self.apply_image = apply_image

    def __call__(self, labels: dict[str, Any], params: Any = None) -> dict[str, Any]:
        if not is_stand_in(labels.get("img")):
            result: dict[str, Any] = self.apply_image(labels, params)
            return result
        return self.without_pixels(labels, params)

    def without_pixels(self, labels: dict[str, Any], params: Any) -> dict[str, Any]:
        raise NotImplementedError


class _Letterbox(_PixelStep):
    """LetterBox.apply_image for a stand-in: the padded shape."""

    def without_pixels(self, labels: dict[str, Any], params: Any) -> dict[str, Any]:
        width, height = params["new_unpad"]
        padded = (height + params["top"] + params["bottom"], width + params["left"] + params["right"])
        labels["img"] = stand_in(*padded)
        labels["resized_shape"] = params["new_shape"]
        return labels


class _Format(_PixelStep):
    """Format.apply_image for a stand-in: an empty image (its random BGR draw still taken, so a worker's random
    stream is the one Ultralytics' Format leaves)."""

    def without_pixels(self, labels: dict[str, Any], params: Any) -> dict[str, Any]:
        random.uniform(0, 1)
        labels["img"] = torch.empty((3, 0, 0), dtype=torch.uint8)
        return labels


def install(dataset: Any) -> None:
    """Let the data set's LetterBox and Format pass stand-ins through without pixels (once per transform)."""
    from ultralytics.data.augment import Format, LetterBox

    for transform in getattr(dataset.transforms, "transforms", ()):
        wrapper = _Letterbox if isinstance(transform, LetterBox) else _Format if isinstance(transform, Format) else None
        if wrapper is not None and not isinstance(transform.apply_image, _PixelStep):
            transform.apply_image = wrapper(transform.apply_image)


class StandInLoads:
    """A RAM-cached data set's `load_image` for when its pixels live on the GPU: the cache's shapes, no pixels."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __call__(
        self, i: int, rect_mode: bool = True, resize_short: bool = False
    ) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
        image, original, resized = type(self.dataset).load_image(self.dataset, i, rect_mode, resize_short)
        return stand_in(*image.shape[:2]), original, resized
