"""The harder synthetic set, `crowded`: many small, overlapping objects of 20 classes, generated offline."""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import pytest
import yaml
from yolo_workloads.contract import DataSource
from yolo_workloads.datasets.crowded import CLASS_NAMES, MIN_VISIBLE, OBJECTS, _label
from yolo_workloads.datasets.validate import validate_dataset
from yolo_workloads.train.runtime import prepare_data

pytestmark = pytest.mark.workloads


def _boxes(root: Path) -> list[list[tuple[int, float, float, float, float]]]:
    out = []
    for path in sorted((root / "labels" / "train").glob("*.txt")):
        rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
        out.append([(int(r[0]), *(float(v) for v in r[1:])) for r in rows])
    return out


def _overlap(a: tuple[int, float, float, float, float], b: tuple[int, float, float, float, float]) -> bool:
    return abs(a[1] - b[1]) * 2 < a[3] + b[3] and abs(a[2] - b[2]) * 2 < a[4] + b[4]


def test_crowded_set_is_generated_where_shapes_is_and_is_harder(tmp_path: Path) -> None:
    source = DataSource.model_validate(
        {"shapes": {"images": 6, "val_images": 2, "imgsz": 320, "variant": "crowded"}, "root": str(tmp_path / "c")}
    )
    path = prepare_data(source)  # what `yolo-workload tune` and `train` call
    info = validate_dataset(path)
    assert (info.train_images, info.val_images) == (6, 2)
    names = yaml.safe_load(path.read_text())["names"]
    assert len(names) == 20 == len(set(names.values())) and names[0] == CLASS_NAMES[0] == "red-circle"

    images = _boxes(path.parent)
    counts = [len(boxes) for boxes in images]
    assert min(counts) >= 10 and statistics.mean(counts) >= 20  # shapes has 1 to 6 an image
    assert max(counts) <= OBJECTS[1]
    widths = [b[3] for boxes in images for b in boxes]
    assert statistics.median(widths) < 0.1  # small: under a tenth of the image across
    assert len({b[0] for boxes in images for b in boxes}) >= 15  # the classes are used
    overlapping = sum(_overlap(a, b) for boxes in images for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    assert overlapping >= len(images)  # occlusion: objects overlap in every image on average


def test_an_object_hidden_behind_others_loses_its_label_and_a_partly_hidden_one_keeps_its_visible_box() -> None:
    owner = np.zeros((100, 100), dtype=np.uint8)
    owner[10:30, 10:30] = 1  # object 1: 400 pixels drawn, all still visible
    owner[50:60, 50:60] = 2  # object 2 drew 400 pixels at [50:70, 50:70]; a later object covers all but 100
    box = (10, 10, 30, 30)
    assert _label(owner, 1, 3, 400, box, imgsz=100) == "3 0.200000 0.200000 0.200000 0.200000"
    assert MIN_VISIBLE * 400 > 100
    assert _label(owner, 2, 5, 400, (50, 50, 70, 70), imgsz=100) is None
    owner[50:70, 50:58] = 2  # uncovered more: 180 pixels visible, over 40% of 400
    line = _label(owner, 2, 5, 400, (50, 50, 70, 70), imgsz=100)
    assert line is not None and line.split()[3:] == ["0.100000", "0.200000"]  # the visible part's box
