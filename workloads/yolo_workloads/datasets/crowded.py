"""The synthetic `crowded` detection data set: many small, overlapping shapes of 20 classes.

The `shapes` set is learnt almost perfectly within a few epochs, so two training recipes that converge at different
speeds end at the same accuracy on it, and a tuning choice that hurts accuracy can go unnoticed. This set is harder
in the ways real detection is: 20 to 60 objects an image, most of them small (15 to 60 pixels across at 640),
overlapping one another, and 20 classes told apart by form and colour together (5 forms in 4 colours), on cluttered
noise with unlabelled grey distractors.

Objects are drawn in order, so later ones occlude earlier ones. An object map records which object owns each
pixel: an object keeps its label only when at least `MIN_VISIBLE` of its area is still visible, and its box is the
box of its visible pixels. Like `shapes`, each image is a pure function of (seed, split, index).
"""

from __future__ import annotations

import math

import numpy as np

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


def render_crowded(index: int, split_id: int, imgsz: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """One image (BGR uint8) and its YOLO label lines; a pure function of its arguments."""
    rng = np.random.default_rng([seed, split_id, index, 1])
    image = _background(rng, imgsz)
    owner = np.zeros((imgsz, imgsz), dtype=np.uint8)  # 0: background, k + 1: object k
    objects: list[tuple[int, int, tuple[int, int, int, int]]] = []
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
    lines = [line for k, obj in enumerate(objects) if (line := _label(owner, k + 1, *obj, imgsz=imgsz))]
    image = np.clip(image + rng.normal(0, 6, size=image.shape), 0, 255).astype(np.uint8)
    return image, lines


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
