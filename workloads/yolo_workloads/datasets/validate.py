"""Check a data set before any GPU time is spent on it: label files in the task's format, or class folders.

Ultralytics skips malformed labels with a warning buried in its log and trains on what is left, or fails deep
inside a dataloader worker. An operator user needs the opposite: a refusal up front that names the file and the
line at fault, which the training pod writes to its termination message for `kubectl describe` to show.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from yolo_workloads.contract import DEFAULT_TASK, Task
from yolo_workloads.datasets.images import IMAGE_SUFFIXES, image_problem

COORDINATE_SLACK = 0.01
"""How far beyond 0..1 Ultralytics lets a label's coordinates go (`verify_image_label`: exports round, and a box
touching the border may land a hair outside); widths and heights may not be negative."""

CLASSIFY_VAL_SPLITS = ("val", "validation", "valid", "test")
"""A classify set's validation folder: the first of these there, in Ultralytics' order (`check_cls_dataset`)."""


class DatasetError(Exception):
    """A data set problem a user can fix; the message names the file (and line) at fault."""


@dataclass(frozen=True)
class DatasetInfo:
    yaml_path: Path
    names: dict[int, str]
    train_images: int
    val_images: int
    label_files: int


def _names(data: dict[str, Any], yaml_path: Path) -> dict[int, str]:
    """The classes as Ultralytics' `check_det_dataset` reads them: `names` (a list, or a mapping of ids 0..n-1),
    else `nc` classes named `class_0`, ...; both must agree."""
    names, nc = data.get("names"), data.get("nc")
    if nc is not None and (isinstance(nc, bool) or not isinstance(nc, int | float) or nc != int(nc) or nc < 1):
        raise DatasetError(f"{yaml_path}: `nc: {nc}` must be a whole number of classes")
    if names is None and nc is not None:
        return {i: f"class_{i}" for i in range(int(nc))}
    if isinstance(names, list) and names:
        found = {i: str(n) for i, n in enumerate(names)}
    elif isinstance(names, dict) and names:
        try:
            found = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError):
            raise DatasetError(f"{yaml_path}: `names` keys must be class ids (integers)") from None
        if max(found) >= len(found) or min(found) < 0:
            raise DatasetError(f"{yaml_path}: `names` ids must be 0..{len(found) - 1}, found {sorted(found)}")
    else:
        raise DatasetError(
            f"{yaml_path}: `names` is missing or empty (expected a list or a mapping of id: name, or `nc`)"
        )
    if nc is not None and int(nc) != len(found):
        raise DatasetError(f"{yaml_path}: `nc: {nc}` but `names` has {len(found)} classes (they must match)")
    return found


def _image_files(source: Path, key: str, yaml_path: Path) -> list[Path]:
    if source.is_dir():
        return sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if source.is_file():
        return _listed_images(source)
    raise DatasetError(f"{yaml_path}: `{key}` points to {source}, which does not exist")


def _listed_images(listing: Path) -> list[Path]:
    """A file listing images, a path a line, read as Ultralytics' `get_img_files` reads it: a line starting with
    `./` is relative to the list's folder, another relative one to the working directory; lines that name no image
    file are skipped. A listed image that is not there is named with its line."""
    try:
        lines = listing.read_text(encoding="utf-8-sig").strip().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{listing}: a list of images that cannot be read ({e})") from None
    images = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if Path(text).suffix.lower() not in IMAGE_SUFFIXES:
            continue
        image = listing.parent / text[2:] if text.startswith("./") else Path(text)
        if not image.is_file():
            beside = listing.parent / text
            hint = (
                f" (a relative line without ./ is read from the working directory {Path.cwd()}; ./{text} would be "
                "read from the list's folder, where it is)"
                if not text.startswith("./") and not image.is_absolute() and beside.is_file()
                else ""
            )
            raise DatasetError(f"{listing}:{number}: {text} does not exist{hint}")
        images.append(image)
    return images


def label_path(image: Path) -> Path:
    """Ultralytics' rule: the last `images` folder in the path becomes `labels`, the suffix `.txt`."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    text = str(image)
    if sa in text:
        head, _, tail = text.rpartition(sa)
        text = head + sb + tail
    return Path(text).with_suffix(".txt")


_FORMATS: dict[Task, str] = {
    "detect": "5 fields `class cx cy w h` (or a polygon `class x1 y1 x2 y2 x3 y3 ...`, whose box is taken)",
    "segment": "`class x1 y1 x2 y2 x3 y3 ...` (a polygon of at least 3 points)",
    "obb": "9 fields `class x1 y1 x2 y2 x3 y3 x4 y4` (a rotated box's corners)",
}


def _field_names(task: Task, count: int, kpt_dims: int) -> list[str]:
    """Names of a label line's values after the class, for messages (`k0v`: a keypoint's visibility)."""
    if task == "pose" or (task == "detect" and count == 4):
        head = ["cx", "cy", "w", "h"]
        kpts = [f"k{i // kpt_dims}{'xyv'[i % kpt_dims]}" for i in range(count - 4)] if task == "pose" else []
        return head + kpts
    return [f"{'xy'[i % 2]}{i // 2 + 1}" for i in range(count)]


def _shape_problem(task: Task, n: int, kpt_shape: tuple[int, int] | None) -> str | None:
    """Why a line of `n` fields is not a label of `task`, or None."""
    if task == "pose":
        assert kpt_shape is not None
        want = 5 + kpt_shape[0] * kpt_shape[1]
        if n != want:
            return f"expected {want} fields `class cx cy w h` and {kpt_shape[0]} keypoints of {kpt_shape[1]} values"
        return None
    polygon = n >= 7 and n % 2 == 1
    # Ultralytics takes a polygon's box for detect, and trains segment only where every box has its polygon
    ok = {"detect": n == 5 or polygon, "segment": polygon, "obb": n == 9}[task]
    return None if ok else f"expected {_FORMATS[task]}"


def check_label_file(
    path: Path, n_classes: int, task: Task = DEFAULT_TASK, kpt_shape: tuple[int, int] | None = None
) -> None:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot be read ({e})") from None
    first: dict[bool, int] = {}  # polygon line or not -> the first such line's number (detect)
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{number}"
        problem = _shape_problem(task, len(fields), kpt_shape)
        if problem is not None:
            raise DatasetError(f"{where}: {problem}, found {len(fields)}: {line.strip()!r}")
        if task == "detect":
            first.setdefault(len(fields) > 6, number)
            if len(first) == 2:
                raise DatasetError(
                    f"{where}: box lines (line {first[False]}) and polygon lines (line {first[True]}) in one file, "
                    "whose image Ultralytics drops as corrupt (`labels mix segment and detection rows`); write one "
                    "file's labels all one way"
                )
        try:
            values = [float(f) for f in fields]
        except ValueError:
            raise DatasetError(f"{where}: fields must be numbers: {line.strip()!r}") from None
        cls = values[0]
        if cls != int(cls) or not 0 <= cls < n_classes:
            raise DatasetError(
                f"{where}: class id {fields[0]} is not in `names` (expected an integer 0..{n_classes - 1})"
            )
        names = _field_names(task, len(fields) - 1, kpt_shape[1] if kpt_shape else 2)
        for name, raw, value in zip(names, fields[1:], values[1:], strict=True):
            if name.endswith("v") and name.startswith("k"):
                continue  # a keypoint's visibility (0, 1, 2), not a coordinate
            low = 0.0 if name in ("w", "h") else -COORDINATE_SLACK
            if not low <= value <= 1.0 + COORDINATE_SLACK:
                raise DatasetError(
                    f"{where}: {name}={raw} is outside [{low:g}, {1 + COORDINATE_SLACK:g}] (coordinates are "
                    "normalised to 0..1; Ultralytics allows 1% beyond, as exports round)"
                )


def _check_images_readable(images: list[Path], key: str) -> None:
    """Refuse a split with images Ultralytics would drop as corrupt (it trains on without them, a warning in its
    log), naming the first and counting the rest."""
    bad = [(image, problem) for image in images if (problem := image_problem(image)) is not None]
    if bad:
        more = f"; {len(bad) - 1} more of the `{key}` images too, e.g. {bad[1][0].name}" if len(bad) > 1 else ""
        fix = "remove or replace them" if len(bad) > 1 else "remove or replace it"
        raise DatasetError(f"{bad[0][0]}: {bad[0][1]}{more} ({fix})")


def _kpt_shape(data: dict[str, Any], yaml_path: Path) -> tuple[int, int]:
    """A pose set's `kpt_shape`: [keypoints, 2 or 3 values each]."""
    shape = data.get("kpt_shape")
    if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(v, int) for v in shape)) or (
        shape[0] < 1 or shape[1] not in (2, 3)
    ):
        raise DatasetError(f"{yaml_path}: a pose data set needs `kpt_shape: [keypoints, 2 or 3]`, found {shape!r}")
    flip = data.get("flip_idx")
    if flip and not (
        isinstance(flip, list) and len(flip) == shape[0] and sorted(flip) == list(range(shape[0]))
    ):  # Ultralytics refuses another length when its loader is built; a map that is no permutation loses points
        raise DatasetError(
            f"{yaml_path}: `flip_idx` must list each of the {shape[0]} keypoints once (where a horizontal flip moves "
            f"it), found {flip!r}"
        )
    return shape[0], shape[1]


def validate_class_folders(root: Path) -> DatasetInfo:
    """A classification set: `train/<class>/` and a validation split (`val/`, `validation/`, `valid/` or `test/`,
    the first Ultralytics finds) with the same class folders, none empty. Ultralytics numbers classes by the sorted
    folder names of each split separately, so the splits must agree."""
    if not root.is_dir():
        raise DatasetError(f"{root}: a classify data set is a folder (train/<class>/, val/<class>/), not found")
    val_dir = next((root / s for s in CLASSIFY_VAL_SPLITS if (root / s).is_dir()), None)
    if not (root / "train").is_dir() or val_dir is None:
        raise DatasetError(
            f"{root}: a classify data set needs `train/` and a validation split ({', '.join(CLASSIFY_VAL_SPLITS)}) "
            "of class folders"
        )
    counts: dict[str, int] = {}
    classes: list[str] = []
    for split in (root / "train", val_dir):
        found = sorted(d.name for d in split.iterdir() if d.is_dir())
        if not found:
            raise DatasetError(f"{split}: no class folders (expected {split.name}/<class>/<image>)")
        if classes and found != classes:
            raise DatasetError(f"{split}: class folders {found} differ from train's {classes}")
        classes = found
        total = 0
        for name in found:
            images = sorted(p for p in (split / name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                raise DatasetError(f"{split / name}: no images (every class needs some in every split)")
            _check_images_readable(images, f"{split.name}/{name}")
            total += len(images)
        counts[split.name] = total
    names = dict(enumerate(classes))
    return DatasetInfo(root, names, counts["train"], counts[val_dir.name], 0)


def validate_dataset(yaml_path: Path, task: Task = DEFAULT_TASK) -> DatasetInfo:
    """Raise DatasetError naming the file and line of the first problem; return a summary when all is well. A
    classify set is a folder rather than a YAML."""
    if task == "classify":
        return validate_class_folders(yaml_path)
    if yaml_path.is_dir():
        found = sorted(p.name for p in yaml_path.glob("*.y*ml"))
        inside = f" (in it: {', '.join(found[:5])})" if found else ""
        raise DatasetError(f"{yaml_path}: a folder; a {task} data set is named by its YAML{inside}")
    if not yaml_path.is_file():
        raise DatasetError(f"{yaml_path}: data set YAML not found")
    try:
        data = yaml.safe_load(yaml_path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise DatasetError(f"{yaml_path}{line}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{yaml_path}: expected a mapping with `train`, `val` and `names`")
    names = _names(data, yaml_path)
    kpt_shape = _kpt_shape(data, yaml_path) if task == "pose" else None
    counts: dict[str, int] = {}
    label_files = 0
    for key in ("train", "val"):
        entry = _entry(data, key)
        if not entry:
            raise DatasetError(f"{yaml_path}: `{key}` is missing (expected a folder of images)")
        images = _split_images(data, key, yaml_path)
        if not images:
            raise DatasetError(f"{yaml_path}: `{key}` ({entry}) contains no images")
        _check_images_readable(images, key)
        labels = [p for p in (label_path(i) for i in images) if p.is_file()]
        if not labels:
            folder = label_path(images[0]).parent
            raise DatasetError(f"{folder}: no label files for the `{key}` images (expected one .txt per image)")
        for label in labels:
            check_label_file(label, len(names), task, kpt_shape)
        counts[key] = len(images)
        label_files += len(labels)
    return DatasetInfo(yaml_path, names, counts["train"], counts["val"], label_files)


def split_images(yaml_path: Path, key: str = "train") -> list[Path]:
    """Image files of one split of a data set YAML, or of a classify set's folder (already validated)."""
    if yaml_path.is_dir():
        return sorted(p for p in (yaml_path / key).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return _split_images(yaml.safe_load(yaml_path.read_text()), key, yaml_path)


def _split_images(data: dict[str, Any], key: str, yaml_path: Path) -> list[Path]:
    """The image files of one split, its folders found as Ultralytics' `check_det_dataset` finds them."""
    root = _dataset_root(data, yaml_path)
    entry = _entry(data, key)
    images: list[Path] = []
    for item in entry if isinstance(entry, list) else [entry]:
        source = root / str(item)  # an absolute entry stays itself
        if not source.exists() and isinstance(entry, str) and entry.startswith("../"):
            source = root / entry[3:]  # Ultralytics' second try (a Roboflow export's `train: ../train/images`)
        try:
            images += _image_files(source.resolve(), key, yaml_path)
        except DatasetError as e:
            raise DatasetError(f"{e}{_path_hint(data, entry, yaml_path)}") from None
    return images


def _entry(data: dict[str, Any], key: str) -> Any:
    """A split's entry in a data set YAML; `validation:` stands for `val:`, as Ultralytics renames it."""
    return data.get(key) or (data.get("validation") if key == "val" else None)


def _dataset_root(data: dict[str, Any], yaml_path: Path) -> Path:
    """Where Ultralytics roots the splits: the YAML's folder without `path`; a relative `path` that exists from the
    working directory is taken from there, any other from Ultralytics' datasets folder (never the YAML's)."""
    given = data.get("path")
    if not given:
        return yaml_path.parent
    path = Path(str(given))
    if path.is_absolute() or path.exists():
        return path.resolve()
    from ultralytics.utils import DATASETS_DIR

    return (Path(DATASETS_DIR) / path).resolve()


def _path_hint(data: dict[str, Any], entry: Any, yaml_path: Path) -> str:
    """What to change when `path` hides a split that is there beside the YAML: a relative `path` (Ultralytics reads
    it from the working directory or its datasets folder) or an absolute one from another machine."""
    given = data.get("path")
    if not given or not isinstance(entry, str):
        return ""
    relative = not Path(str(given)).is_absolute()
    beside = (yaml_path.parent / str(given) / entry) if relative else (yaml_path.parent / entry)
    if not beside.exists():
        return ""
    why = (
        "is resolved by Ultralytics against the working directory or its datasets folder, not the YAML's folder"
        if relative
        else "is not where the data set is on this machine"
    )
    return f" (`path: {given}` {why}; {beside} is there: leave `path` out of {yaml_path.name})"


def class_count(yaml_path: Path) -> int:
    """Classes of a data set YAML's `names`, or of a classify set's train folders (already validated)."""
    if yaml_path.is_dir():
        return sum(1 for d in (yaml_path / "train").iterdir() if d.is_dir())
    return len(_names(yaml.safe_load(yaml_path.read_text()), yaml_path))
