"""The synthetic `shapes` data set: coloured shapes on noise, in Ultralytics' layout (and its harder variant,
`crowded`: many small overlapping shapes of 20 classes, labelled for every task but classify, see datasets.crowded).
Detection labels are written here; masks, keypoints, rotated boxes and class folders of the `shapes` set for the
other tasks come from datasets.tasks.

Nothing can be downloaded in our pods, yet samples, tests and benchmarks need a detection data set. This one is
generated from a seed (each image from its own RNG stream, so the result does not depend on the number of worker
processes), written as JPEG images with YOLO-format labels and a `data.yaml` naming the classes.

`ensure_shapes` is what the tune and train verbs call: it generates the set once. `data.yaml` is written last and
atomically, so its presence marks a complete set; a pod killed mid-way leaves no `data.yaml`, and the next start
clears the partial folders and generates again. Generation happens in a hidden folder inside `root` and is moved
into place by rename, which also works when `root` is itself a mounted volume.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import yaml

from yolo_workloads.contract import DEFAULT_TASK, Task, default_val_images

CLASS_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "hexagon", "star")
_SPLITS = {"train": 0, "val": 1}
VARIANTS: tuple[str, ...] = ("shapes", "crowded")


def class_names(variant: str) -> tuple[str, ...]:
    if variant == "crowded":
        from yolo_workloads.datasets.crowded import CLASS_NAMES as CROWDED_NAMES

        return CROWDED_NAMES
    if variant != "shapes":
        raise ValueError(f"unknown synthetic data set {variant!r}: one of {', '.join(VARIANTS)}")
    return CLASS_NAMES


def polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """Vertices of a regular shape (circles are drawn separately)."""
    if kind == "square":
        n, radii = 4, [r]
    elif kind == "triangle":
        n, radii = 3, [r]
    elif kind == "diamond":
        n, radii, angle = 4, [r], 0.0
    elif kind == "hexagon":
        n, radii = 6, [r]
    else:  # star
        n, radii = 10, [r, r * 0.45]
    points = []
    for i in range(n):
        theta = angle + 2 * math.pi * i / n
        radius = radii[i % len(radii)]
        points.append((cx + radius * math.cos(theta), cy + radius * math.sin(theta)))
    return np.array(points, dtype=np.float64)


def render_image(index: int, split: str, imgsz: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """One image (BGR uint8) and its YOLO label lines; a pure function of its arguments."""
    import cv2

    rng = np.random.default_rng([seed, _SPLITS[split], index])
    base = rng.integers(40, 200, size=3)
    image = np.clip(base + rng.normal(0, 25, size=(imgsz, imgsz, 3)), 0, 255).astype(np.uint8)
    lines: list[str] = []
    for _ in range(int(rng.integers(1, 7))):
        cls = int(rng.integers(0, len(CLASS_NAMES)))
        r = float(rng.uniform(0.04, 0.18) * imgsz)
        cx, cy = (float(v) for v in rng.uniform(r, imgsz - r, size=2))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        if CLASS_NAMES[cls] == "circle":
            cv2.circle(image, (round(cx), round(cy)), round(r), colour, thickness=-1, lineType=cv2.LINE_AA)
            x0, y0, x1, y1 = cx - r, cy - r, cx + r, cy + r
        else:
            pts = polygon(CLASS_NAMES[cls], cx, cy, r, float(rng.uniform(0, 2 * math.pi)))
            cv2.fillPoly(image, [np.round(pts).astype(np.int32)], colour, lineType=cv2.LINE_AA)
            x0, y0 = pts.min(axis=0)
            x1, y1 = pts.max(axis=0)
        x0, y0, x1, y1 = (min(max(v / imgsz, 0.0), 1.0) for v in (x0, y0, x1, y1))
        lines.append(f"{cls} {(x0 + x1) / 2:.6f} {(y0 + y1) / 2:.6f} {x1 - x0:.6f} {y1 - y0:.6f}")
    return image, lines


def _write_chunk(
    out: str, split: str, start: int, stop: int, imgsz: int, seed: int, variant: str = "shapes", task: Task = "detect"
) -> int:
    import cv2

    from yolo_workloads.datasets.crowded import render_crowded

    cv2.setNumThreads(1)  # one process per core already
    root = Path(out)
    if task != DEFAULT_TASK and variant != "crowded":
        return _write_task_chunk(root, split, start, stop, imgsz, seed, task)
    for i in range(start, stop):
        if variant == "crowded":
            image, lines = render_crowded(i, _SPLITS[split], imgsz, seed, task)
        else:
            image, lines = render_image(i, split, imgsz, seed)
        name = f"{split}_{i:06d}"
        cv2.imwrite(str(root / "images" / split / f"{name}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        (root / "labels" / split / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return stop - start


def _write_task_chunk(root: Path, split: str, start: int, stop: int, imgsz: int, seed: int, task: Task) -> int:
    """Images and labels of a segment, pose or obb set; class folders of a classify set (datasets.tasks)."""
    import cv2

    from yolo_workloads.datasets import tasks

    quality = [cv2.IMWRITE_JPEG_QUALITY, 90]
    for i in range(start, stop):
        name = f"{split}_{i:06d}"
        if task == "classify":
            image, cls = tasks.render_class_image(i, _SPLITS[split], imgsz, seed)
            cv2.imwrite(str(root / split / CLASS_NAMES[cls] / f"{name}.jpg"), image, quality)
            continue
        image, shapes = tasks.render_shapes(i, _SPLITS[split], imgsz, seed, task)
        cv2.imwrite(str(root / "images" / split / f"{name}.jpg"), image, quality)
        lines = [tasks.label_line(shape, task, imgsz) for shape in shapes]
        (root / "labels" / split / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return stop - start


def split_folders(task: Task) -> tuple[str, ...]:
    """The top-level folders a generated set consists of: class folders by split for classify, else images/labels."""
    return tuple(_SPLITS) if task == "classify" else ("images", "labels")


def _make_folders(out: Path, task: Task, names: tuple[str, ...]) -> None:
    for split in _SPLITS:
        if task == "classify":
            for name in names:
                (out / split / name).mkdir(parents=True, exist_ok=True)
        else:
            (out / "images" / split).mkdir(parents=True, exist_ok=True)
            (out / "labels" / split).mkdir(parents=True, exist_ok=True)


def _val_count(n: int, val: int | None, task: Task, classes: int) -> int:
    """Validation images: as asked, else the contract's default (a fifth). A classify set needs every class in both
    splits (ImageFolder numbers classes by the folders it finds, so a missing one would shift the rest): at least one
    image a class."""
    n_val = default_val_images(n) if val is None else val
    if task != "classify":
        return n_val
    if n < classes:
        raise ValueError(f"a classify set needs at least {classes} training images (one per class)")
    return max(n_val, classes)


def generate(
    out: Path,
    n: int,
    imgsz: int = 640,
    val: int | None = None,
    seed: int = 0,
    processes: int | None = None,
    variant: str = "shapes",
    task: Task = DEFAULT_TASK,
) -> Path:
    """Write the set into `out` (images/, labels/ or, for classify, train/ and val/ class folders; data.yaml) and
    return the YAML path. `out` is overwritten."""
    if n < 1:
        raise ValueError("n must be at least 1")
    if task == "classify" and variant != "shapes":
        raise ValueError(f"the {variant} set has many objects an image: classify data comes from the shapes variant")
    names = class_names(variant)
    n_val = _val_count(n, val, task, len(names))
    _make_folders(out, task, names)
    if processes is None:
        from yolo_workloads.system import cpu_workers_budget

        processes = cpu_workers_budget()
    jobs = []
    for split, count in (("train", n), ("val", n_val)):
        step = max(1, math.ceil(count / (processes * 4)))
        jobs += [(str(out), split, s, min(s + step, count), imgsz, seed, variant, task) for s in range(0, count, step)]
    if processes <= 1 or len(jobs) == 1:
        for job in jobs:
            _write_chunk(*job)
    else:
        # forkserver, not fork: a caller with threads (CUDA, nvJPEG, a server) forked mid-lock deadlocks the child
        with ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("forkserver")) as pool:
            for future in [pool.submit(_write_chunk, *job) for job in jobs]:
                future.result()
    return _write_yaml(out, names, task)


def dataset_yaml(names: tuple[str, ...], task: Task = DEFAULT_TASK) -> dict[str, object]:
    """data.yaml's content. Pose adds `kpt_shape` and `flip_idx`; classify lists the classes in the order
    Ultralytics numbers them (its folders, sorted), for reading only: the classifier takes the folder."""
    if task == "classify":
        return {"train": "train", "val": "val", "names": dict(enumerate(sorted(names)))}
    data: dict[str, object] = {"train": "images/train", "val": "images/val", "names": dict(enumerate(names))}
    if task == "pose":
        from yolo_workloads.datasets.tasks import FLIP_IDX, KPT_SHAPE

        data |= {"kpt_shape": list(KPT_SHAPE), "flip_idx": list(FLIP_IDX)}
    return data


def _write_yaml(out: Path, names: tuple[str, ...] = CLASS_NAMES, task: Task = DEFAULT_TASK) -> Path:
    target = out / "data.yaml"
    tmp = out / f".data.yaml.tmp{os.getpid()}"
    note = (
        "# A classification set: Ultralytics takes this folder (train/<class>/, val/<class>/), not this file.\n"
        if task == "classify"
        else "# No `path` key: Ultralytics then resolves folders relative to this file.\n"
    )
    tmp.write_text(
        "# Synthetic data set generated by `yolo-workload dataset shapes`.\n"
        + note
        + yaml.safe_dump(dataset_yaml(names, task), sort_keys=False)
    )
    os.replace(tmp, target)
    return target


def ensure_shapes(
    root: Path,
    n: int,
    imgsz: int = 640,
    val: int | None = None,
    seed: int = 0,
    variant: str = "shapes",
    task: Task = DEFAULT_TASK,
) -> Path:
    """Generate the set under `root` unless `root/data.yaml` already exists; return the YAML path (its presence
    marks a complete set for every task, classify included)."""
    target = root / "data.yaml"
    if target.exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    # No data.yaml: anything here is a partial earlier attempt.
    for stale in [*(root / sub for sub in ("images", "labels", *_SPLITS)), *root.glob(".partial-*")]:
        shutil.rmtree(stale, ignore_errors=True)
    staging = root / f".partial-{os.getpid()}"
    generate(staging, n=n, imgsz=imgsz, val=val, seed=seed, variant=variant, task=task)
    for sub in split_folders(task):
        os.replace(staging / sub, root / sub)
    shutil.rmtree(staging, ignore_errors=True)
    return _write_yaml(root, class_names(variant), task)
