"""The synthetic `crowded` detection data set: many small, overlapping shapes of 20 classes.

The `shapes` set is learnt almost perfectly within a few epochs, so two training recipes that converge at different
speeds end at the same accuracy on it, and a tuning choice that hurts accuracy can go unnoticed. This set is harder
in the ways real detection is: 20 to 60 objects an image, most of them small (15 to 60 pixels across at 640),
overlapping one another, and 20 classes told apart by form and colour together (5 forms in 4 colours), on cluttered
noise with unlabelled grey distractors.

Objects are drawn in order, so later ones occlude earlier ones. An object map records which object owns each
pixel: an object keeps its label only when at least `MIN_VISIBLE` of its area is still visible, and its box is the
box of its visible pixels. Like `shapes`, each image is a pure function of (seed, split, index).

The same images carry labels for segment, pose and obb too, all read from the object map, so an occluded part is
never labelled as seen: the outline of the largest visible piece (segment); the box of the visible pixels and four
keypoints at the shape's extreme points (top, right, bottom, left), visible (2) where the object owns that pixel,
occluded (1) where another covers it, unlabelled (0) in the rare case rounding puts it outside the image (pose, the
order of datasets.tasks); the smallest rotated rectangle around the visible
pixels, or their upright box where that rectangle would leave the image (obb). Classification needs one object an
image: the `shapes` set has it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from yolo_workloads.contract import DEFAULT_TASK, Task

FORMS: tuple[str, ...] = ("circle", "square", "triangle", "hexagon", "star")
COLOURS: dict[str, tuple[int, int, int]] = {  # BGR, as OpenCV draws
    "red": (40, 40, 215),
    "green": (50, 190, 40),
    "blue": (215, 90, 30),
    "yellow": (30, 215, 225),
}
CLASS_NAMES: tuple[str, ...] = tuple(f"{colour}-{form}" for colour in COLOURS for form in FORMS)
MIN_VISIBLE = 0.4
"""Share of an object's area that must stay visible for it to be labelled."""
OBJECTS = (20, 60)
"""Fewest and most objects an image (inclusive)."""
RADIUS = (0.012, 0.048)
"""Object radius as a share of the image side."""


def _vertices(form: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    n, radii = {"square": (4, [r]), "triangle": (3, [r]), "hexagon": (6, [r]), "star": (10, [r, r * 0.45])}[form]
    points = [
        (cx + radii[i % len(radii)] * math.cos(angle + 2 * math.pi * i / n),
         cy + radii[i % len(radii)] * math.sin(angle + 2 * math.pi * i / n))
        for i in range(n)
    ]  # fmt: skip
    return np.array(points, dtype=np.float64)


def _draw(
    canvas: np.ndarray, form: str, cx: float, cy: float, r: float, angle: float, value: float | tuple[float, ...]
) -> None:
    import cv2

    if form == "circle":
        cv2.circle(canvas, (round(cx), round(cy)), max(1, round(r)), value, thickness=-1)
    else:
        pts = np.round(_vertices(form, cx, cy, r, angle)).astype(np.int32)
        cv2.fillPoly(canvas, [pts], value)


def _background(rng: np.random.Generator, imgsz: int) -> np.ndarray:
    """Cluttered noise: a coarse random colour field, fine noise, and unlabelled grey distractor blobs."""
    import cv2

    coarse = rng.integers(50, 190, size=(8, 8, 3)).astype(np.uint8)
    image = cv2.resize(coarse, (imgsz, imgsz), interpolation=cv2.INTER_CUBIC).astype(np.float64)
    image = np.clip(image + rng.normal(0, 20, size=image.shape), 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(5, 15))):
        grey = int(rng.integers(60, 200))
        r = float(rng.uniform(RADIUS[0], RADIUS[1]) * imgsz)
        cx, cy = (float(v) for v in rng.uniform(0, imgsz, size=2))
        _draw(image, FORMS[int(rng.integers(0, len(FORMS)))], cx, cy, r, float(rng.uniform(0, 6.3)), (grey,) * 3)
    return image


@dataclass(frozen=True)
class Scene:
    """A drawn image with what labels are read from."""

    image: np.ndarray
    """BGR uint8, noise included."""
    owner: np.ndarray
    """Which object owns each pixel: 0 the background, k + 1 object k (later objects cover earlier ones)."""
    objects: list[tuple[int, int, tuple[int, int, int, int]]]
    """Per object: class, area when nothing covers it, pixel box (x0, y0, x1, y1) holding it."""
    shapes: list[tuple[str, float, float, float, float]]
    """Per object: form, cx, cy, r, angle, as drawn."""


def crowded_scene(index: int, split_id: int, imgsz: int, seed: int) -> Scene:
    """The image and its object map; a pure function of its arguments."""
    rng = np.random.default_rng([seed, split_id, index, 1])
    image = _background(rng, imgsz)
    owner = np.zeros((imgsz, imgsz), dtype=np.uint8)  # 0: background, k + 1: object k
    objects: list[tuple[int, int, tuple[int, int, int, int]]] = []
    shapes: list[tuple[str, float, float, float, float]] = []
    for k in range(int(rng.integers(OBJECTS[0], OBJECTS[1] + 1))):
        cls = int(rng.integers(0, len(CLASS_NAMES)))
        form, colour = FORMS[cls % len(FORMS)], list(COLOURS.values())[cls // len(FORMS)]
        r = float(rng.uniform(*RADIUS) * imgsz)
        cx, cy = (float(v) for v in rng.uniform(r, imgsz - r, size=2))
        angle = float(rng.uniform(0, 2 * math.pi))
        shade = tuple(int(c) for c in np.clip(np.array(colour) + rng.integers(-25, 26, size=3), 0, 255))
        _draw(image, form, cx, cy, r, angle, shade)
        _draw(owner, form, cx, cy, r, angle, float(k + 1))
        box = (max(0, math.floor(cx - r)), max(0, math.floor(cy - r)), min(imgsz, math.ceil(cx + r) + 1),
               min(imgsz, math.ceil(cy + r) + 1))  # fmt: skip
        objects.append((cls, _area(form, cx, cy, r, angle, box), box))
        shapes.append((form, cx, cy, r, angle))
    image = np.clip(image + rng.normal(0, 6, size=image.shape), 0, 255).astype(np.uint8)
    return Scene(image, owner, objects, shapes)


def render_crowded(
    index: int, split_id: int, imgsz: int, seed: int, task: Task = DEFAULT_TASK
) -> tuple[np.ndarray, list[str]]:
    """One image (BGR uint8) and its label lines for `task` (detect, segment, pose, obb); a pure function of its
    arguments, the image the same for every task."""
    scene = crowded_scene(index, split_id, imgsz, seed)
    return scene.image, crowded_labels(scene, task, imgsz)


def crowded_labels(scene: Scene, task: Task, imgsz: int) -> list[str]:
    """The label lines of a scene's objects that stay visible enough, in `task`'s format."""
    owner = scene.owner
    if task == DEFAULT_TASK:
        return [line for k, obj in enumerate(scene.objects) if (line := _label(owner, k + 1, *obj, imgsz=imgsz))]
    return [
        line
        for k, (obj, shape) in enumerate(zip(scene.objects, scene.shapes, strict=True))
        if (line := _task_label(owner, k + 1, obj, shape, task, imgsz))
    ]


def _area(form: str, cx: float, cy: float, r: float, angle: float, box: tuple[int, int, int, int]) -> int:
    """Pixels the object covers when nothing occludes it (drawn alone into its own box)."""
    x0, y0, x1, y1 = box
    alone = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    _draw(alone, form, cx - x0, cy - y0, r, angle, 1.0)
    return int(alone.sum())


def _label(
    owner: np.ndarray, value: int, cls: int, area: int, box: tuple[int, int, int, int], *, imgsz: int
) -> str | None:
    """The YOLO line for the visible part of object `value`, or None when too little of it is visible."""
    x0, y0, x1, y1 = box
    ys, xs = np.nonzero(owner[y0:y1, x0:x1] == value)
    if area == 0 or len(xs) < MIN_VISIBLE * area:
        return None
    left, right = (x0 + xs.min()) / imgsz, (x0 + xs.max() + 1) / imgsz
    top, bottom = (y0 + ys.min()) / imgsz, (y0 + ys.max() + 1) / imgsz
    return f"{cls} {(left + right) / 2:.6f} {(top + bottom) / 2:.6f} {right - left:.6f} {bottom - top:.6f}"


def _visible(
    owner: np.ndarray, value: int, area: int, box: tuple[int, int, int, int]
) -> tuple[np.ndarray, np.ndarray] | None:
    """Pixel x and y (image indices) of object `value`'s visible part, or None when too little of it is visible."""
    x0, y0, x1, y1 = box
    ys, xs = np.nonzero(owner[y0:y1, x0:x1] == value)
    if area == 0 or len(xs) < MIN_VISIBLE * area:
        return None
    return xs + x0, ys + y0


def extremes(form: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """(4, 2) pixel indices of the drawn shape's topmost, rightmost, bottommost and leftmost pixels (`_draw`'s
    geometry: circles by their rounded centre and radius, polygons by their rounded vertices)."""
    if form == "circle":
        x, y, radius = round(cx), round(cy), max(1, round(r))
        return np.array([(x, y - radius), (x + radius, y), (x, y + radius), (x - radius, y)])
    pts = np.round(_vertices(form, cx, cy, r, angle)).astype(np.int64)
    order = [np.argmin(pts[:, 1]), np.argmax(pts[:, 0]), np.argmax(pts[:, 1]), np.argmin(pts[:, 0])]
    return pts[order]


def _norm(points: np.ndarray, imgsz: int) -> str:
    return " ".join(f"{v / imgsz:.6f}" for v in np.asarray(points, dtype=np.float64).reshape(-1))


def _task_label(
    owner: np.ndarray,
    value: int,
    obj: tuple[int, int, tuple[int, int, int, int]],
    shape: tuple[str, float, float, float, float],
    task: Task,
    imgsz: int,
) -> str | None:
    """The segment, pose or obb line for the visible part of object `value`, or None when too little is visible."""
    cls, area, box = obj
    visible = _visible(owner, value, area, box)
    if visible is None:
        return None
    xs, ys = visible
    if task == "segment":
        polygon = _largest_piece(owner == value, box)
        return None if polygon is None else f"{cls} {_norm(polygon, imgsz)}"
    if task == "pose":
        left, right, top, bottom = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        upright = _norm(np.array([(left + right) / 2, (top + bottom) / 2, right - left, bottom - top]), imgsz)
        kpts = " ".join(_keypoint(owner, value, point, imgsz) for point in extremes(*shape))
        return f"{cls} {upright} {kpts}"
    if task == "obb":
        return f"{cls} {_norm(_enclosing_box(xs, ys, imgsz), imgsz)}"
    raise ValueError(f"the crowded set has no {task} labels")


def _keypoint(owner: np.ndarray, value: int, point: np.ndarray, imgsz: int) -> str:
    """`x y v` of a keypoint at pixel `point`: 2 where object `value` shows there, 1 where another covers it, and
    `0 0 0` (not labelled, Ultralytics' convention) where a circle's rounding puts it just outside the image."""
    x, y = int(point[0]), int(point[1])
    if not (0 <= x < imgsz and 0 <= y < imgsz):
        return "0.000000 0.000000 0"
    return f"{_norm(point + 0.5, imgsz)} {2 if owner[y, x] == value else 1}"


def _largest_piece(mask: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray | None:
    """The outline (image coordinates, through the boundary pixels' centres) of the largest visible piece."""
    import cv2

    x0, y0, x1, y1 = box
    contours, _ = cv2.findContours(mask[y0:y1, x0:x1].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    pieces = [c.reshape(-1, 2) for c in contours if len(c) >= 3]
    if not pieces:
        return None
    largest = max(pieces, key=lambda c: cv2.contourArea(c.astype(np.float32)))
    return np.asarray(largest + np.array([x0, y0]), dtype=np.float64) + 0.5


def _enclosing_box(xs: np.ndarray, ys: np.ndarray, imgsz: int) -> np.ndarray:
    """(4, 2) corners of the smallest rotated rectangle holding every visible pixel whole (pixel (x, y) spans
    [x, x + 1) x [y, y + 1)); their upright box when that rectangle would reach outside the image."""
    import cv2

    corners = np.concatenate([np.stack([xs + dx, ys + dy], axis=1) for dx in (0, 1) for dy in (0, 1)])
    rotated = np.asarray(cv2.boxPoints(cv2.minAreaRect(corners.astype(np.float32))), dtype=np.float64)
    if rotated.min() >= 0 and rotated.max() <= imgsz:
        return rotated
    left, right, top, bottom = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    return np.array([(left, top), (right, top), (right, bottom), (left, bottom)], dtype=np.float64)
