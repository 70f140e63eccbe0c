"""Check a detection data set before any GPU time is spent on it.

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

IMAGE_SUFFIXES = frozenset({".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp", ".dng", ".mpo", ".pfm"})


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
    names = data.get("names")
    if isinstance(names, list) and names:
        return {i: str(n) for i, n in enumerate(names)}
    if isinstance(names, dict) and names:
        try:
            return {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError):
            raise DatasetError(f"{yaml_path}: `names` keys must be class ids (integers)") from None
    raise DatasetError(f"{yaml_path}: `names` is missing or empty (expected a list or a mapping of id: name)")


def _image_files(source: Path, key: str, yaml_path: Path) -> list[Path]:
    if source.is_dir():
        return sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if source.is_file() and source.suffix == ".txt":  # a list of image paths, relative to the list's folder
        lines = [ln.strip() for ln in source.read_text().splitlines() if ln.strip()]
        return [p if p.is_absolute() else (source.parent / p) for p in map(Path, lines)]
    raise DatasetError(f"{yaml_path}: `{key}` points to {source}, which does not exist")


def label_path(image: Path) -> Path:
    """Ultralytics' rule: the last `images` folder in the path becomes `labels`, the suffix `.txt`."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    text = str(image)
    if sa in text:
        head, _, tail = text.rpartition(sa)
        text = head + sb + tail
    return Path(text).with_suffix(".txt")


def check_label_file(path: Path, n_classes: int) -> None:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot be read ({e})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{number}"
        if len(fields) != 5:
            raise DatasetError(f"{where}: expected 5 fields `class cx cy w h`, found {len(fields)}: {line.strip()!r}")
        try:
            values = [float(f) for f in fields]
        except ValueError:
            raise DatasetError(f"{where}: fields must be numbers: {line.strip()!r}") from None
        cls = values[0]
        if cls != int(cls) or not 0 <= cls < n_classes:
            raise DatasetError(
                f"{where}: class id {fields[0]} is not in `names` (expected an integer 0..{n_classes - 1})"
            )
        for name, raw, value in zip(("cx", "cy", "w", "h"), fields[1:], values[1:], strict=True):
            if not 0.0 <= value <= 1.0:
                raise DatasetError(f"{where}: {name}={raw} is outside [0, 1] (coordinates are normalised)")


def validate_dataset(yaml_path: Path) -> DatasetInfo:
    """Raise DatasetError naming the file and line of the first problem; return a summary when all is well."""
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
    root = Path(str(data["path"])) if data.get("path") else yaml_path.parent
    if not root.is_absolute():
        root = (yaml_path.parent / root).resolve()
    counts: dict[str, int] = {}
    label_files = 0
    for key in ("train", "val"):
        entry = data.get(key)
        if not entry:
            raise DatasetError(f"{yaml_path}: `{key}` is missing (expected a folder of images)")
        images: list[Path] = []
        for item in entry if isinstance(entry, list) else [entry]:
            source = Path(str(item))
            images += _image_files(source if source.is_absolute() else root / source, key, yaml_path)
        if not images:
            raise DatasetError(f"{yaml_path}: `{key}` ({entry}) contains no images")
        labels = [p for p in (label_path(i) for i in images) if p.is_file()]
        if not labels:
            folder = label_path(images[0]).parent
            raise DatasetError(f"{folder}: no label files for the `{key}` images (expected one .txt per image)")
        for label in labels:
            check_label_file(label, len(names))
        counts[key] = len(images)
        label_files += len(labels)
    return DatasetInfo(yaml_path, names, counts["train"], counts["val"], label_files)


def split_images(yaml_path: Path, key: str = "train") -> list[Path]:
    """Image files of one split of a data set YAML (already validated)."""
    data = yaml.safe_load(yaml_path.read_text())
    root = Path(str(data["path"])) if data.get("path") else yaml_path.parent
    if not root.is_absolute():
        root = (yaml_path.parent / root).resolve()
    entry = data[key]
    images: list[Path] = []
    for item in entry if isinstance(entry, list) else [entry]:
        source = Path(str(item))
        images += _image_files(source if source.is_absolute() else root / source, key, yaml_path)
    return images
