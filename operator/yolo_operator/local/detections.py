"""The picture a person looks at first: a few validation images with the served model's boxes and labels drawn.

A mAP figure says little to someone trying the operator for the first time; a grid of images with a labelled box
on each shape shows at a glance that the trained model works (or that it does not). The boxes come from the real
server (`/v1/detect`, the path a client takes), not from an in-process model, so the picture also proves serving.

Each image's caption counts the labelled shapes the model found (a detection of the same class overlapping the
label by IoU >= 0.5, each detection used once): a plain-words figure beside the mAP. Reading labels and counting
are separated from drawing, so they are unit-tested without matplotlib.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError
from yolo_workloads.contract import DetectAnswer, DetectionAnswer, ImageAnswer

MATCH_IOU = 0.5
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Detection:
    box: Box
    """x1, y1, x2, y2 in image pixels."""
    score: float
    class_id: int
    label: str


@dataclass(frozen=True)
class Labelled:
    box: Box
    class_id: int


@dataclass(frozen=True)
class ImageResult:
    image: Path
    detections: list[Detection]
    labelled: list[Labelled]

    @property
    def found(self) -> int:
        return count_found(self.labelled, self.detections)


_ROW: TypeAdapter[DetectionAnswer] = TypeAdapter(DetectionAnswer)


def parse_detections(answer: DetectAnswer) -> list[list[Detection]]:
    """The detections of each image of a `/v1/detect` answer (the contract's DetectAnswer), in upload order; rows
    that are no DetectionAnswer are skipped."""
    images = answer.get("images")
    if not isinstance(images, list):
        return []
    return [image_detections(item) if isinstance(item, dict) else [] for item in images]


def image_detections(image: ImageAnswer) -> list[Detection]:
    """The detections of one image's answer; rows that are no DetectionAnswer are skipped."""
    rows: Any = image.get("detections")
    return [d for row in rows if (d := _detection(row)) is not None] if isinstance(rows, list) else []


def _detection(row: object) -> Detection | None:
    try:
        checked = _ROW.validate_python(row)
    except ValidationError:
        return None
    if len(checked["box"]) != 4:
        return None
    x1, y1, x2, y2 = checked["box"]
    return Detection((x1, y1, x2, y2), checked["score"], checked["class_id"], checked["class_name"])


def read_labels(label_file: Path, width: int, height: int) -> list[Labelled]:
    """YOLO label lines (class, centre x, centre y, width, height; normalised) as pixel boxes; none if absent."""
    try:
        lines = label_file.read_text().splitlines()
    except OSError:
        return []
    boxes: list[Labelled] = []
    for line in lines:
        parts = line.split()
        if len(parts) != 5:
            continue
        cls, cx, cy, w, h = int(parts[0]), *(float(v) for v in parts[1:])
        box = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
        boxes.append(Labelled(box, cls))
    return boxes


def label_file_for(image: Path) -> Path:
    """Ultralytics' layout: `.../images/val/x.jpg` is labelled by `.../labels/val/x.txt`."""
    parts = list(image.parts)
    if "images" not in parts:
        return image.with_suffix(".txt")
    index = len(parts) - 1 - parts[::-1].index("images")
    parts[index] = "labels"
    return Path(*parts).with_suffix(".txt")


def iou(a: Box, b: Box) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def count_found(labelled: Sequence[Labelled], detections: Sequence[Detection]) -> int:
    """Labelled shapes matched by a detection of their class at IoU >= 0.5, highest scores first, each used once."""
    unused = sorted(detections, key=lambda d: -d.score)
    found = 0
    for truth in labelled:
        best = max(
            (d for d in unused if d.class_id == truth.class_id),
            key=lambda d: iou(d.box, truth.box),
            default=None,
        )
        if best is not None and iou(best.box, truth.box) >= MATCH_IOU:
            unused.remove(best)
            found += 1
    return found


def draw(results: Sequence[ImageResult], out: Path, title: str) -> Path | None:
    """A grid of the images with each detection's box and `label score` drawn over the labelled boxes (dashed
    white); None when there is no image."""
    if not results:
        return None
    from yolo_operator.local.plots import pyplot

    plt = pyplot()
    from matplotlib.patches import Rectangle

    columns = min(3, len(results))
    rows = math.ceil(len(results) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 4.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, result in zip(axes.flat, results, strict=False):
        ax.imshow(plt.imread(result.image))
        for truth in result.labelled:  # what should be found: thin dashed white, under the detections
            x1, y1, x2, y2 = truth.box
            ax.add_patch(
                Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="white", linewidth=1, linestyle="--")
            )
        for d in result.detections:
            colour = f"C{d.class_id % 10}"
            x1, y1, x2, y2 = d.box
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour, linewidth=2))
            ax.text(
                x1,
                y1,
                f"{d.label} {d.score:.2f}",
                fontsize=8,
                color="white",
                verticalalignment="bottom",
                bbox={"facecolor": colour, "edgecolor": "none", "pad": 1},
            )
        ax.set_title(f"{result.image.name}: {result.found} of {len(result.labelled)} shapes found", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
