"""The synthetic set for every task: labels that agree with the pixels drawn, and that Ultralytics' own loaders read.

Geometry is checked against what was drawn, not against the generator's own numbers: each shape is rasterised again
from its label, and the result compared with the image.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from yolo_workloads.contract import DataSource, ShapesSpec
from yolo_workloads.datasets import crowded, tasks
from yolo_workloads.datasets.shapes import CLASS_NAMES, ensure_shapes, generate
from yolo_workloads.datasets.validate import DatasetError, validate_dataset

pytestmark = pytest.mark.workloads

IMGSZ = 128


def _labels(path: Path) -> list[list[float]]:
    return [[float(v) for v in line.split()] for line in path.read_text().splitlines() if line.strip()]


def _drawn(shape: tasks.Shape) -> np.ndarray:
    """The pixels the generator filled for this shape (it draws with exactly this call)."""
    mask = np.zeros((IMGSZ, IMGSZ), np.uint8)
    cv2.fillPoly(mask, [shape.outline], 1, lineType=cv2.LINE_8)
    return mask.astype(bool)


def _centres_inside(polygon: np.ndarray, inset: float = 0.0) -> np.ndarray:
    """Pixels whose centre lies inside `polygon` (image coordinates), at least `inset` from its edge."""
    contour = polygon.astype(np.float32).reshape(-1, 1, 2)
    out = np.zeros((IMGSZ, IMGSZ), bool)
    for y in range(IMGSZ):
        for x in range(IMGSZ):
            out[y, x] = cv2.pointPolygonTest(contour, (x + 0.5, y + 0.5), True) >= inset
    return out


def _samples(task: str, count: int = 6) -> list[tuple[np.ndarray, list[tasks.Shape]]]:
    return [tasks.render_shapes(i, 0, IMGSZ, seed=3, task=task) for i in range(count)]  # type: ignore[arg-type]


def test_segment_polygons_are_the_drawn_outlines() -> None:
    checked = 0
    for image, shapes in _samples("segment"):
        for shape in shapes:
            values = [float(v) for v in tasks.label_line(shape, "segment", IMGSZ).split()]
            assert int(values[0]) == shape.cls
            polygon = np.array(values[1:]).reshape(-1, 2) * IMGSZ
            drawn = _drawn(shape)
            area = abs(cv2.contourArea(polygon.astype(np.float32)))
            perimeter = cv2.arcLength(polygon.astype(np.float32), True)
            # fillPoly paints every pixel the outline touches: the polygon's area plus at most a pixel of its rim.
            assert area <= drawn.sum() <= area + perimeter + 4
            inside = _centres_inside(polygon)
            assert (inside & ~drawn).sum() == 0  # the label covers nothing that was not drawn
            core = _centres_inside(polygon, inset=1.0)
            colours = image[core]
            assert len(colours) and (colours == colours[0]).all()  # one shape's solid fill: nothing else inside
            checked += 1
    assert checked >= 10


def test_pose_keypoints_are_the_extreme_points_and_flip_idx_mirrors_them() -> None:
    for _image, shapes in _samples("pose"):
        for shape in shapes:
            values = [float(v) for v in tasks.label_line(shape, "pose", IMGSZ).split()]
            assert len(values) == 5 + tasks.KPT_SHAPE[0] * tasks.KPT_SHAPE[1]
            kpts = np.array(values[5:]).reshape(tasks.KPT_SHAPE)
            assert (kpts[:, 2] == 2).all()  # all visible: shapes never overlap
            xy = kpts[:, :2] * IMGSZ
            polygon = tasks.polygon_of(shape)
            top, right, bottom, left = xy
            assert top[1] == pytest.approx(polygon[:, 1].min(), abs=1e-3)
            assert right[0] == pytest.approx(polygon[:, 0].max(), abs=1e-3)
            assert bottom[1] == pytest.approx(polygon[:, 1].max(), abs=1e-3)
            assert left[0] == pytest.approx(polygon[:, 0].min(), abs=1e-3)
            drawn = _drawn(shape)
            for x, y in xy:  # on the shape: the pixel under each keypoint, or its neighbour, was drawn
                px, py = min(int(x), IMGSZ - 1), min(int(y), IMGSZ - 1)
                assert drawn[max(0, py - 1) : py + 2, max(0, px - 1) : px + 2].any()
            cx, cy, w, h = (v * IMGSZ for v in values[1:5])
            assert (cx - w / 2, cx + w / 2) == pytest.approx((left[0], right[0]), abs=1e-3)
            assert (cy - h / 2, cy + h / 2) == pytest.approx((top[1], bottom[1]), abs=1e-3)
            # A horizontal flip: keypoint i of the flipped shape is keypoint flip_idx[i] of the original, mirrored.
            flipped = tasks.Shape(shape.cls, np.stack([IMGSZ - 1 - shape.outline[:, 0], shape.outline[:, 1]], 1))
            mirrored = tasks.keypoints(flipped)
            for i, j in enumerate(tasks.FLIP_IDX):
                axis = 1 if i in (0, 2) else 0  # the extreme coordinate each keypoint is defined by
                expected = xy[j][axis] if axis == 1 else IMGSZ - xy[j][0]
                assert mirrored[i][axis] == pytest.approx(expected, abs=1e-3)


def test_obb_corners_enclose_every_drawn_pixel_tightly() -> None:
    for _image, shapes in _samples("obb"):
        for shape in shapes:
            values = [float(v) for v in tasks.label_line(shape, "obb", IMGSZ).split()]
            assert len(values) == 9
            corners = np.array(values[1:]).reshape(4, 2) * IMGSZ
            assert (corners >= 0).all() and (corners <= IMGSZ).all()  # inside the image
            contour = corners.astype(np.float32).reshape(-1, 1, 2)
            ys, xs = np.nonzero(_drawn(shape))
            # Every drawn pixel's centre is inside the box, or within the rasteriser's half pixel of its edge.
            worst = min(cv2.pointPolygonTest(contour, (x + 0.5, y + 0.5), True) for x, y in zip(xs, ys, strict=True))
            assert worst >= -0.75
            # The smallest rotated box: never larger than the upright box of the same outline.
            polygon = tasks.polygon_of(shape)
            upright = np.prod(polygon.max(axis=0) - polygon.min(axis=0))
            assert abs(cv2.contourArea(contour)) <= upright + 1e-3
            sides = [math.dist(corners[k], corners[(k + 1) % 4]) for k in range(4)]
            assert sides[0] == pytest.approx(sides[2], abs=1e-2) and sides[1] == pytest.approx(sides[3], abs=1e-2)


def test_task_sets_load_in_ultralytics_with_every_label(tmp_path: Path) -> None:
    from ultralytics.cfg import get_cfg
    from ultralytics.data.dataset import ClassificationDataset, YOLODataset
    from ultralytics.data.utils import check_cls_dataset, check_det_dataset

    for task in ("segment", "pose", "obb"):
        path = generate(tmp_path / task, n=8, imgsz=64, val=3, seed=1, processes=1, task=task)
        assert validate_dataset(path, task).train_images == 8
        data = check_det_dataset(str(path))
        if task == "pose":
            assert data["kpt_shape"] == [4, 3] and data["flip_idx"] == [0, 3, 2, 1]
        dataset = YOLODataset(img_path=str(data["train"]), data=data, task=task, imgsz=64, augment=False)
        lines = sum(len(_labels(f)) for f in (tmp_path / task / "labels" / "train").glob("*.txt"))
        assert sum(len(label["cls"]) for label in dataset.labels) == lines > 0
        for label in dataset.labels:
            n = len(label["cls"])
            if task == "segment":
                assert len(label["segments"]) == n
            if task == "pose":
                assert label["keypoints"].shape == (n, 4, 3)
            if task == "obb":
                assert all(segment.shape == (4, 2) for segment in label["segments"])

    root = tmp_path / "classify"
    generate(root, n=12, imgsz=64, val=2, seed=1, processes=1, task="classify")
    info = validate_dataset(root, "classify")
    assert (info.train_images, info.val_images) == (12, 6)  # a val image per class at least
    data = check_cls_dataset(str(root))
    assert data["nc"] == len(CLASS_NAMES) and list(data["names"].values()) == sorted(CLASS_NAMES)
    args = get_cfg(overrides={"task": "classify", "imgsz": 64})
    for split, count in (("train", 12), ("val", 6)):
        dataset = ClassificationDataset(root=str(root / split), args=args, augment=False)
        assert len(dataset.samples) == count
        for file, index, *_ in dataset.samples:  # each image filed under its class: the class the folder names
            assert Path(file).parent.name == sorted(CLASS_NAMES)[index]


def test_generated_set_is_reused_and_yaml_path_names_what_ultralytics_takes(tmp_path: Path) -> None:
    spec = ShapesSpec(images=8, imgsz=64, task="classify")
    source = DataSource(shapes=spec, root=str(tmp_path / "cls"))
    marker = ensure_shapes(tmp_path / "cls", n=8, imgsz=64, task="classify")
    assert marker.name == "data.yaml" and source.yaml_path() == tmp_path / "cls"  # Ultralytics takes the folder
    first = sorted(p.name for p in (tmp_path / "cls" / "train").rglob("*.jpg"))
    assert ensure_shapes(tmp_path / "cls", n=8, imgsz=64, task="classify") == marker
    assert sorted(p.name for p in (tmp_path / "cls" / "train").rglob("*.jpg")) == first
    seg = DataSource(shapes=ShapesSpec(images=8, task="segment"), root=str(tmp_path / "seg"))
    assert seg.yaml_path() == tmp_path / "seg" / "data.yaml"


def test_labels_of_another_task_are_refused_naming_file_and_line(tmp_path: Path) -> None:
    path = generate(tmp_path / "obb", n=4, imgsz=64, val=2, seed=1, processes=1, task="obb")
    label = sorted((tmp_path / "obb" / "labels" / "train").glob("*.txt"))[0]
    label.write_text("0 0.5 0.5 0.2 0.2\n")
    with pytest.raises(DatasetError, match=rf"{label.name}:1: expected 9 fields `class x1 y1 x2 y2 x3 y3 x4 y4`"):
        validate_dataset(path, "obb")
    with pytest.raises(DatasetError, match=r"a pose data set needs `kpt_shape"):
        validate_dataset(path, "pose")

    seg = generate(tmp_path / "seg", n=4, imgsz=64, val=2, seed=1, processes=1, task="segment")
    label = sorted((tmp_path / "seg" / "labels" / "val").glob("*.txt"))[0]
    label.write_text("0 0.1 0.1 0.9 0.1 0.5\n")  # an odd number of coordinates is no polygon
    with pytest.raises(DatasetError, match=rf"{label.name}:1: expected `class x1 y1 x2 y2 x3 y3 ...`"):
        validate_dataset(seg, "segment")

    pose = generate(tmp_path / "pose", n=4, imgsz=64, val=2, seed=1, processes=1, task="pose")
    label = sorted((tmp_path / "pose" / "labels" / "train").glob("*.txt"))[0]
    label.write_text("0 0.5 0.5 0.2 0.2 1.5 0.4 2 0.5 0.5 2 0.5 0.6 2 0.4 0.5 2\n")
    with pytest.raises(DatasetError, match=rf"{label.name}:1: k0x=1.5 is outside \[-0.01, 1.01\]"):
        validate_dataset(pose, "pose")

    root = tmp_path / "cls"
    generate(root, n=6, imgsz=64, val=6, seed=1, processes=1, task="classify")
    for image in (root / "val" / "star").iterdir():
        image.unlink()
    with pytest.raises(DatasetError, match=r"val/star: no images"):
        validate_dataset(root, "classify")


def test_detection_set_is_unchanged_by_tasks(tmp_path: Path) -> None:
    """The detection set draws exactly what it drew before tasks existed: the same pixels and labels (the digest
    was taken from the generator before issue 19, with the OpenCV and NumPy of requirements.lock)."""
    import hashlib

    from yolo_workloads.datasets.shapes import render_image

    image, lines = render_image(0, "train", 64, 5)
    digest = hashlib.sha256(image.tobytes() + "\n".join(lines).encode()).hexdigest()
    assert digest == "87e00d7f4cd18748d9ef12174962487254b15450f14694512e0e9bb031fb2171"
    path = generate(tmp_path / "det", n=3, imgsz=64, val=1, seed=5, processes=1)
    assert "kpt_shape" not in path.read_text() and yaml.safe_load(path.read_text())["train"] == "images/train"
    assert (tmp_path / "det" / "labels" / "train" / "train_000000.txt").read_text() == "\n".join(lines) + "\n"


def _crowded_visible(scene: crowded.Scene) -> list[int]:
    """Objects that keep a label: at least MIN_VISIBLE of their area still seen (the detection rule)."""
    return [
        k
        for k, (_cls, area, _box) in enumerate(scene.objects)
        if area and (scene.owner == k + 1).sum() >= crowded.MIN_VISIBLE * area
    ]


CROWDED_SIZE = 320


@pytest.mark.parametrize("index", [0, 1])
def test_crowded_labels_follow_what_stays_visible(index: int) -> None:
    scene = crowded.crowded_scene(index, 0, CROWDED_SIZE, seed=2)
    visible = _crowded_visible(scene)
    labels = {task: crowded.crowded_labels(scene, task, CROWDED_SIZE) for task in ("detect", "segment", "pose", "obb")}
    assert all(len(lines) == len(visible) > 10 for lines in labels.values())  # the same objects in every task
    occluded_keypoints = 0
    for n, k in enumerate(visible):
        own = scene.owner == k + 1
        values = {task: [float(v) for v in lines[n].split()] for task, lines in labels.items()}
        assert len({v[0] for v in values.values()}) == 1  # one class

        # segment: the polygon fills the largest visible piece and (holes aside) nothing another object owns
        polygon = np.array(values["segment"][1:]).reshape(-1, 2) * CROWDED_SIZE - 0.5
        raster = np.zeros(own.shape, np.uint8)
        cv2.fillPoly(raster, [np.round(polygon).astype(np.int32)], 1)
        count, pieces = cv2.connectedComponents(own.astype(np.uint8), connectivity=8)
        largest = max(range(1, count), key=lambda i: (pieces == i).sum())
        assert (raster.astype(bool) | ~(pieces == largest)).all()
        assert (raster.astype(bool) & own).sum() >= 0.95 * raster.sum()

        # pose: the box of the visible pixels; keypoints at the drawn shape's extreme pixels, 2 where seen, 1 not
        pose = values["pose"]
        ys, xs = np.nonzero(own)
        assert pose[1:5] == pytest.approx(values["detect"][1:5], abs=2e-6)
        alone = np.zeros(own.shape, np.uint8)
        form, cx, cy, r, angle = scene.shapes[k]
        crowded._draw(alone, form, cx, cy, r, angle, 1.0)
        ay, ax = np.nonzero(alone)
        kpts = np.array(pose[5:]).reshape(4, 3)
        pixels = np.floor(kpts[:, :2] * CROWDED_SIZE).astype(int)
        found = (pixels[0][1], pixels[1][0], pixels[2][1], pixels[3][0])
        for i, (got, want) in enumerate(zip(found, (ay.min(), ax.max(), ay.max(), ax.min()), strict=True)):
            assert got == want or kpts[i, 2] == 0  # 0: not labelled (the extreme fell outside the image)
        for (x, y), v in zip(pixels, kpts[:, 2], strict=True):
            assert v == 0 or (alone[y, x] == 1 and v == (2 if own[y, x] else 1))
            occluded_keypoints += v == 1

        # obb: a rectangle holding every visible pixel whole, inside the image
        corners = np.array(values["obb"][1:]).reshape(4, 2) * CROWDED_SIZE
        assert corners.min() >= -1e-3 and corners.max() <= CROWDED_SIZE + 1e-3
        contour = corners.astype(np.float32).reshape(-1, 1, 2)
        centres = [cv2.pointPolygonTest(contour, (x + 0.5, y + 0.5), True) for x, y in zip(xs, ys, strict=True)]
        assert min(centres) >= 0.49
    assert occluded_keypoints > 0  # the scenes do hide keypoints: visibility is exercised


def test_crowded_task_sets_load_in_ultralytics(tmp_path: Path) -> None:
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    for task in ("segment", "pose", "obb"):
        path = generate(tmp_path / task, n=3, imgsz=160, val=1, seed=1, processes=1, variant="crowded", task=task)
        assert validate_dataset(path, task).train_images == 3
        data = check_det_dataset(str(path))
        dataset = YOLODataset(img_path=str(data["train"]), data=data, task=task, imgsz=160, augment=False)
        lines = sum(len(_labels(f)) for f in (tmp_path / task / "labels" / "train").glob("*.txt"))
        assert sum(len(label["cls"]) for label in dataset.labels) == lines > 0
    with pytest.raises(ValueError, match="classify data comes from the shapes variant"):
        generate(tmp_path / "cls", n=20, imgsz=64, processes=1, variant="crowded", task="classify")


def test_a_pose_sets_flip_map_must_name_each_keypoint_once(tmp_path: Path) -> None:
    """Ultralytics refuses a `flip_idx` of another length when it builds the loader (every tuning trial would fail);
    one that repeats a keypoint would silently lose another at each flip."""
    path = generate(tmp_path / "pose", n=4, imgsz=64, val=2, seed=1, processes=1, task="pose")
    assert validate_dataset(path, "pose").train_images == 4
    data = yaml.safe_load(path.read_text())
    for flip in ([0, 2, 1], [0, 3, 3, 1]):
        path.write_text(yaml.safe_dump({**data, "flip_idx": flip}))
        with pytest.raises(DatasetError, match=r"`flip_idx` must list each of the 4 keypoints once"):
            validate_dataset(path, "pose")
    path.write_text(yaml.safe_dump({k: v for k, v in data.items() if k != "flip_idx"}))
    assert validate_dataset(path, "pose").train_images == 4  # Ultralytics turns flips off without one


def test_a_classify_sets_validation_split_is_found_where_ultralytics_finds_it(tmp_path: Path) -> None:
    """Roboflow's classification exports name it `valid/`; Ultralytics looks for val, validation, valid, then test
    (its `check_cls_dataset`), and reads images in nested folders of a class."""
    from ultralytics.data.utils import check_cls_dataset

    root = tmp_path / "classify"
    generate(root, n=12, imgsz=64, val=2, seed=1, processes=1, task="classify")
    (root / "val").rename(root / "valid")
    first = sorted((root / "train").iterdir())[0]
    (first / "nested").mkdir()
    next(first.glob("*.jpg")).rename(first / "nested" / "moved.jpg")
    info = validate_dataset(root, "classify")
    assert (info.train_images, info.val_images) == (12, 6)
    assert Path(check_cls_dataset(str(root))["val"]).name == "valid"
    (root / "valid").rename(root / "elsewhere")
    with pytest.raises(DatasetError, match=r"needs `train/` and a validation split \(val, validation, valid, test\)"):
        validate_dataset(root, "classify")
