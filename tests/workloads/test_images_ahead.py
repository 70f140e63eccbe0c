"""Images decoded ahead for the RAM cache (train/images_ahead.py): Ultralytics' cache fill takes them instead of
reading the files, holds the same arrays as without them, stays within the byte bound, and a training's set-up gives
Ultralytics its own `imread` back. Real Ultralytics datasets and trainer on generated images of odd sizes."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from odd_size_sets import write_odd_sizes
from yolo_workloads.train import images_ahead

pytestmark = pytest.mark.workloads

IMGSZ = 64
SIZES = [(64, 64), (48, 64), (64, 40), (30, 64), (90, 70), (20, 20)]
"""(h, w) on disk: square, padded either way, smaller and larger than imgsz (resized by Ultralytics on load)."""


@pytest.fixture(scope="module")
def data_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_odd_sizes(
        tmp_path_factory.mktemp("images-ahead"),
        SIZES,
        5,
        lambda i, rng: [f"{i % 2} 0.5 0.5 0.3 0.4"],
        lambda i: "jpg" if i % 2 else "png",
    )


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(images_ahead, "_started", False)  # once per process: each test is a process of its own
    yield
    images_ahead.release()


def _cached(yaml_path: Path, mode: str = "train") -> list[np.ndarray]:
    """The RAM cache Ultralytics fills for one split."""
    from yolo_workloads import offline

    offline.apply()
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    cfg = get_cfg(overrides={"imgsz": IMGSZ, "data": str(yaml_path), "cache": "ram"})
    data = check_det_dataset(str(yaml_path))
    ds = build_yolo_dataset(cfg, data[mode], 4, data, mode=mode, rect=mode == "val", stride=32)
    return [ds.ims[i] for i in range(ds.ni)]


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    assert len(a) == len(b) == len(SIZES)
    for x, y in zip(a, b, strict=True):
        assert x.shape == y.shape and x.dtype == y.dtype and np.array_equal(x, y)


def test_the_cache_fill_takes_the_decoded_images_and_holds_the_same_arrays(data_yaml: Path) -> None:
    from ultralytics.data import base
    from ultralytics.utils import patches

    plain_train, plain_val = _cached(data_yaml), _cached(data_yaml, "val")
    ahead = images_ahead.for_ram_cache(data_yaml, "detect", "cpu")
    assert ahead is not None and base.imread is not patches.imread
    _same(_cached(data_yaml), plain_train)
    _same(_cached(data_yaml, "val"), plain_val)
    assert ahead.taken == 2 * len(SIZES)  # every image of both splits came from the threads, none read again
    assert ahead.held_bytes == 0
    images_ahead.release()
    assert base.imread is patches.imread
    assert images_ahead.for_ram_cache(data_yaml, "detect", "cpu") is None  # once per process


def test_decoding_stops_at_the_byte_bound_and_the_rest_is_read_as_before(data_yaml: Path) -> None:
    from ultralytics.utils import patches

    plain = _cached(data_yaml)
    files = sorted((data_yaml.parent / "images" / "train").iterdir())
    ahead = images_ahead.start(files, images_ahead.COLOUR, limit_bytes=1, threads=1)
    _same(_cached(data_yaml), plain)
    assert ahead.taken == 1  # the first image passes the bound; the others were read by the fill
    assert ahead.read is patches.imread


def test_other_flags_and_unknown_files_are_read_by_the_caller(data_yaml: Path) -> None:
    files = sorted((data_yaml.parent / "images" / "train").iterdir())
    ahead = images_ahead.start(files[:2], images_ahead.COLOUR, limit_bytes=1 << 30, threads=2)
    assert ahead.take(files[0], cv2.IMREAD_GRAYSCALE) is None
    assert ahead.take(files[3], images_ahead.COLOUR) is None
    image = ahead.take(files[0], images_ahead.COLOUR)
    assert image is not None and image.shape == (*SIZES[0], 3)
    assert ahead.take(files[0], images_ahead.COLOUR) is None  # taken once


def _take_in_child(ahead: images_ahead.ImagesAhead, path: Path, answer: Any) -> None:
    answer.put(ahead.take(path, images_ahead.COLOUR) is None)


def test_a_forked_worker_reads_for_itself_instead_of_waiting_on_the_parents_threads(data_yaml: Path) -> None:
    files = sorted((data_yaml.parent / "images" / "train").iterdir())
    ahead = images_ahead.start(files, images_ahead.COLOUR, limit_bytes=1 << 30, threads=1)
    context = multiprocessing.get_context("fork")
    answer = context.Queue()
    child = context.Process(target=_take_in_child, args=(ahead, files[-1], answer))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0 and answer.get(timeout=5) is True
    assert ahead.take(files[-1], images_ahead.COLOUR) is not None  # still the parent's to take


def test_training_set_up_releases_them(data_yaml: Path, tmp_path: Path) -> None:
    from ultralytics.data import base
    from ultralytics.utils import DEFAULT_CFG_DICT, patches
    from yolo_workloads.train.trainer import trainer_class

    ahead = images_ahead.for_ram_cache(data_yaml, "detect", "cpu")
    assert ahead is not None
    overrides = {"model": "yolov8n.yaml", "data": str(data_yaml), "imgsz": IMGSZ, "epochs": 1, "batch": 4,
                 "cache": "ram", "workers": 0, "device": "cpu", "plots": False, "val": False, "amp": False}  # fmt: skip
    trainer = trainer_class("detect")(cfg={**DEFAULT_CFG_DICT, "save_dir": str(tmp_path / "run")}, overrides=overrides)
    trainer.train()
    assert ahead.taken == len(SIZES) + len(SIZES)  # the train and val caches, both filled in set-up
    assert images_ahead._active is None and base.imread is patches.imread


def test_not_started_where_no_cache_fill_of_this_process_would_take_them(data_yaml: Path, tmp_path: Path) -> None:
    from ultralytics.data import base
    from ultralytics.utils import patches

    grey = tmp_path / "grey.yaml"
    grey.write_text(data_yaml.read_text() + "channels: 1\n")
    assert images_ahead.for_ram_cache(data_yaml, "classify", "cpu") is None  # its dataset reads otherwise
    assert images_ahead.for_ram_cache(data_yaml, "detect", "0,1") is None  # DDP: the ranks are other processes
    assert images_ahead.for_ram_cache(data_yaml.parent, "detect", "cpu") is None  # a folder, not a data set YAML
    assert images_ahead.for_ram_cache(grey, "detect", "cpu") is None  # read with other flags
    assert base.imread is patches.imread
