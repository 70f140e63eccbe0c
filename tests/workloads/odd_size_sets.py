"""A small detection data set on disk whose images have the sizes a test names (square, padded either way, smaller
and larger than imgsz), for tests that compare what Ultralytics' dataset does with what ours does."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np


def write_odd_sizes(
    root: Path,
    sizes: list[tuple[int, int]],
    seed: int,
    labels: Callable[[int, np.random.Generator], list[str]],
    suffix: Callable[[int], str] = lambda i: "png",
) -> Path:
    """Train and val splits of random images of `sizes` ((h, w) each), image i labelled with `labels(i, rng)` and
    saved as `suffix(i)`; the data set YAML (two classes) returned."""
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i, (h, w) in enumerate(sizes):
            image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            cv2.imwrite(str(root / "images" / split / f"{i}.{suffix(i)}"), image)
            (root / "labels" / split / f"{i}.txt").write_text("\n".join(labels(i, rng)) + "\n")
    (root / "data.yaml").write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames: [a, b]\n")
    return root / "data.yaml"
