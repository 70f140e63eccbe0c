"""The `shapes` set for every task but detection: outlines, keypoints, rotated boxes and class folders.

Detection labels only need a box, so the detection set (datasets.shapes) lets shapes overlap. A mask, keypoints or a
rotated box must describe what is visible, so here shapes never touch one another: each label is the exact outline
drawn, and nothing hides any part of it. Every shape is drawn as the polygon its label gives (a circle as a 32-gon)
with integer vertices, so label and pixels agree to the rasteriser's half pixel.

- segment: the outline itself, `class x1 y1 x2 y2 ...`.
- pose: four keypoints at the shape's extreme points, in the order top, right, bottom, left (all visible). A
  horizontal flip swaps right and left: `flip_idx` is [0, 3, 2, 1].
- obb: the smallest rotated rectangle around the outline, `class x1 y1 ... x4 y4` (Ultralytics' OBB format). Shapes
  stay far enough from the edges that its corners lie inside the image.
- classify: one large shape an image, filed as `train/<class>/`, `val/<class>/` (Ultralytics' classifier reads
  folders, not a YAML). Classes take turns, so every class appears in every split of at least six images.

Each image is a pure function of (seed, split, index, task), as in datasets.shapes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from yolo_workloads.contract import Task
from yolo_workloads.datasets.shapes import CLASS_NAMES, polygon

KEYPOINTS = ("top", "right", "bottom", "left")
KPT_SHAPE = (len(KEYPOINTS), 3)
"""Ultralytics' `kpt_shape`: keypoints per object, and (x, y, visibility)."""
FLIP_IDX = (0, 3, 2, 1)
"""Where each keypoint goes under a horizontal flip: top and bottom stay, right and left swap."""
CIRCLE_VERTICES = 32
_TASK_IDS: dict[Task, int] = {"detect": 0, "segment": 1, "pose": 2, "obb": 3, "classify": 4}


@dataclass(frozen=True)
class Shape:
    """One drawn shape: its class and the integer polygon filled into the image."""

    cls: int
    outline: np.ndarray
    """(N, 2) int32 pixel vertices, exactly what cv2.fillPoly drew."""


def outline(kind: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """The integer polygon of a shape (circles as a regular 32-gon)."""
    if kind == "circle":
        theta = angle + 2 * math.pi * np.arange(CIRCLE_VERTICES) / CIRCLE_VERTICES
        points = np.stack([cx + r * np.cos(theta), cy + r * np.sin(theta)], axis=1)
    else:
        points = polygon(kind, cx, cy, r, angle)
    return np.round(points).astype(np.int32)


def _background(rng: np.random.Generator, imgsz: int) -> np.ndarray:
    base = rng.integers(40, 200, size=3)
    return np.clip(base + rng.normal(0, 25, size=(imgsz, imgsz, 3)), 0, 255).astype(np.uint8)


def _draw(image: np.ndarray, shape: Shape, rng: np.random.Generator) -> None:
    import cv2

    colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
    cv2.fillPoly(image, [shape.outline], colour, lineType=cv2.LINE_8)


def render_shapes(index: int, split_id: int, imgsz: int, seed: int, task: Task) -> tuple[np.ndarray, list[Shape]]:
    """An image (BGR uint8) of one to six shapes that do not touch, and the shapes; pure."""
    rng = np.random.default_rng([seed, split_id, index, 2, _TASK_IDS[task]])
    image = _background(rng, imgsz)
    placed: list[tuple[float, float, float]] = []
    shapes: list[Shape] = []
    for _ in range(int(rng.integers(1, 7))):
        cls = int(rng.integers(0, len(CLASS_NAMES)))
        r = float(rng.uniform(0.05, 0.16) * imgsz)
        margin = r * math.sqrt(2) + 1  # a rotated box around the shape stays inside the image
        for _attempt in range(20):
            cx, cy = (float(v) for v in rng.uniform(margin, imgsz - margin, size=2))
            if all(math.hypot(cx - x, cy - y) > r + q + 3 for x, y, q in placed):
                break
        else:
            continue  # no room left for this one
        placed.append((cx, cy, r))
        shape = Shape(cls, outline(CLASS_NAMES[cls], cx, cy, r, float(rng.uniform(0, 2 * math.pi))))
        _draw(image, shape, rng)
        shapes.append(shape)
    return image, shapes


def render_class_image(index: int, split_id: int, imgsz: int, seed: int) -> tuple[np.ndarray, int]:
    """An image of one large shape and its class (classes take turns by index); pure."""
    rng = np.random.default_rng([seed, split_id, index, 2, _TASK_IDS["classify"]])
    image = _background(rng, imgsz)
    cls = index % len(CLASS_NAMES)
    r = float(rng.uniform(0.22, 0.4) * imgsz)
    cx, cy = (float(v) for v in rng.uniform(r, imgsz - r, size=2))
    _draw(image, Shape(cls, outline(CLASS_NAMES[cls], cx, cy, r, float(rng.uniform(0, 2 * math.pi)))), rng)
    return image, cls


def polygon_of(shape: Shape) -> np.ndarray:
    """The outline in image coordinates, where pixel (i, j) spans [i, i + 1) x [j, j + 1): OpenCV fills the pixels
    whose centres (i + 0.5) the integer polygon covers, so the drawn shape's outline is the vertices + 0.5."""
    return shape.outline.astype(np.float64) + 0.5


def keypoints(shape: Shape) -> np.ndarray:
    """(4, 2) keypoints in image coordinates: the outline's topmost, rightmost, bottommost and leftmost vertices."""
    pts = polygon_of(shape)
    order = (np.argmin(pts[:, 1]), np.argmax(pts[:, 0]), np.argmax(pts[:, 1]), np.argmin(pts[:, 0]))
    return pts[list(order)]


def rotated_box(shape: Shape) -> np.ndarray:
    """(4, 2) corners, in image coordinates, of the smallest rotated rectangle around the outline."""
    import cv2

    return np.asarray(cv2.boxPoints(cv2.minAreaRect(polygon_of(shape).astype(np.float32))), dtype=np.float64)


def _coords(points: np.ndarray, imgsz: int) -> str:
    return " ".join(f"{min(max(v / imgsz, 0.0), 1.0):.6f}" for v in points.reshape(-1))


def _box(points: np.ndarray, imgsz: int) -> str:
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    return _coords(np.array([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0]), imgsz)


def label_line(shape: Shape, task: Task, imgsz: int) -> str:
    """The shape's label line in Ultralytics' format for `task` (segment, pose or obb), coordinates normalised."""
    if task == "segment":
        return f"{shape.cls} {_coords(polygon_of(shape), imgsz)}"
    if task == "pose":
        kpts = " ".join(f"{_coords(p, imgsz)} 2" for p in keypoints(shape))
        return f"{shape.cls} {_box(polygon_of(shape), imgsz)} {kpts}"
    if task == "obb":
        return f"{shape.cls} {_coords(rotated_box(shape), imgsz)}"
    raise ValueError(f"no label lines for task {task}")
