"""Samples whose pixels the GPU path takes elsewhere go through Ultralytics' LetterBox and Format as stand-ins
(train/pixel_free.py): the same labels and letterbox geometry as Ultralytics' own transforms give the real image,
the same random draws, no pixels. Odd sizes included (padding on either side, a resize inside the letterbox)."""

from __future__ import annotations

import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from odd_size_sets import write_odd_sizes
from yolo_workloads.train import pixel_free

pytestmark = pytest.mark.workloads

IMGSZ = 160
SIZES = [(160, 160), (120, 160), (160, 100), (37, 160), (160, 12), (90, 90), (200, 120)]
"""(h, w) of the images on disk: square, either side padded, thin, smaller than imgsz, larger (resized on load)."""


@pytest.fixture(scope="module")
def odd_sizes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    def boxes(i: int, rng: np.random.Generator) -> list[str]:
        return [f"{i % 2} {x:.4f} {y:.4f} 0.2 0.3" for x, y in rng.uniform(0.2, 0.8, (3, 2))]

    return write_odd_sizes(tmp_path_factory.mktemp("pixel-free"), SIZES, 3, boxes)


def _dataset(yaml_path: Path, cache: str | bool) -> Any:
    """The training set as the GPU path's loader reads it (trainer._GpuAugmented.build_dataset)."""
    from yolo_workloads import offline

    offline.apply()
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    cfg = get_cfg(overrides={"imgsz": IMGSZ, "data": str(yaml_path), "cache": cache})
    data = check_det_dataset(str(yaml_path))
    ds = build_yolo_dataset(cfg, data["train"], 4, data, mode="train", rect=False, stride=32)
    ds.augment = False
    ds.transforms = ds.build_transforms(hyp=cfg)
    ds.augment = True
    return ds


def _without_pixels(sample: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in sample.items() if k != "img"}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return bool(a == b)


def test_a_stand_in_has_the_shape_and_no_pixels() -> None:
    image = pixel_free.stand_in(480, 640)
    assert image.shape == (480, 640, 3) and image.dtype == np.uint8 and image.base is not None
    assert pixel_free.is_stand_in(image)
    assert not pixel_free.is_stand_in(np.zeros((480, 640, 3), dtype=np.uint8))
    assert not pixel_free.is_stand_in(None) and not pixel_free.is_stand_in(torch.zeros(3, 4, 4))


def test_ram_cached_samples_as_stand_ins_carry_ultralytics_own_labels(odd_sizes: Path) -> None:
    """As the RAM-cached set kept on the GPU reads it: every key but the image equal to Ultralytics' transforms'
    on the real cached image, the random stream left where theirs leaves it, and an empty image."""
    theirs, ours = _dataset(odd_sizes, "ram"), _dataset(odd_sizes, "ram")
    ours.load_image = pixel_free.StandInLoads(ours)
    pixel_free.install(ours)
    pixel_free.install(ours)  # once is enough: a second install wraps nothing twice
    for i in range(len(SIZES)):
        random.seed(i)
        expected = theirs[i]
        after_theirs = random.getstate()
        random.seed(i)
        got = ours[i]
        assert random.getstate() == after_theirs
        assert expected["img"].shape[1:] == (IMGSZ, IMGSZ) and got["img"].numel() == 0
        want, have = _without_pixels(expected), _without_pixels(got)
        assert want.keys() == have.keys()
        assert all(_same(want[k], have[k]) for k in want), (i, want, have)


def test_uncached_images_keep_their_pixels_and_the_wrapped_transforms_pickle(odd_sizes: Path) -> None:
    """A real image (the PNG a worker decodes among JPEGs) passes the wrapped transforms as Ultralytics' own; a
    data set with them pickles, as a spawned loader worker receives it."""
    theirs, ours = _dataset(odd_sizes, False), _dataset(odd_sizes, False)
    pixel_free.install(ours)
    for i in range(len(SIZES)):
        random.seed(i)
        expected = theirs[i]
        random.seed(i)
        got = ours[i]
        assert torch.equal(expected["img"], got["img"]) and torch.equal(expected["bboxes"], got["bboxes"])
    clone = pickle.loads(pickle.dumps(ours))
    assert torch.equal(clone[0]["img"], ours[0]["img"])
