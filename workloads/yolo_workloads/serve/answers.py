"""The `/v1/detect` (alias `/v1/predict`) JSON of one image, per task: yolo_workloads.contract's `ImageAnswer`.

Detection keeps its historical shape (`{"detections": [{"box", "score", "class_id", "class_name"}]}`); the other
tasks add fields to each detection or, for classify, answer `{"classifications": [...]}` instead:
- segment: `"mask": {"size": [h, w], "counts": [...]}`, COCO's uncompressed RLE (column-major runs, zeros first;
  `pycocotools.mask.frPyObjects` reads it), or with `?masks=polygon`, `"polygons": [[x1, y1, x2, y2, ...], ...]`
  (outer contours, image pixels);
- pose: `"keypoints": [[x, y, visibility], ...]` in image pixels;
- obb: `"obb": [cx, cy, w, h, angle]` (radians), `box` being the axis-aligned box around it;
- classify: `"classifications": [{"class_id", "class_name", "score"}]`, the top 5, best first.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from yolo_workloads.contract import DetectionAnswer, ImageAnswer
from yolo_workloads.serve import tasks
from yolo_workloads.serve.imagecheck import ImageError
from yolo_workloads.serve.pipeline import Classification, Detections

MASK_FORMATS = ("rle", "polygon")
DEFAULT_MASK_FORMAT = "rle"


def mask_format(value: str | None) -> str:
    """The `masks` query parameter, checked (400 naming it otherwise)."""
    if value is None:
        return DEFAULT_MASK_FORMAT
    if value not in MASK_FORMATS:
        raise ImageError(f"query parameter `masks` must be one of {', '.join(MASK_FORMATS)}, got {value!r:.40}")
    return value


def image_answer(out: Detections | Classification, names: dict[int, str], masks: str) -> ImageAnswer:
    if isinstance(out, Classification):
        return {
            "classifications": [
                {"class_id": c, "class_name": names[c] if c in names else str(c), "score": s}
                for c, s in zip(out.classes.tolist(), rounded(out.scores, 4), strict=True)
            ]
        }
    rows: list[DetectionAnswer] = [
        {"box": b, "score": s, "class_id": c, "class_name": names[c] if c in names else str(c)}
        for b, s, c in zip(rounded(out.boxes, 2), rounded(out.scores, 4), out.classes.tolist(), strict=True)
    ]
    _add_extras(rows, out, masks)
    return {"detections": rows}


def rounded(values: np.ndarray, decimals: int) -> Any:
    """`values` as (nested) lists of Python floats rounded to `decimals`, in one vectorised pass: the same numbers
    as `round(float(v), decimals)` element by element (a test compares them), about 8x faster for a busy image's
    detections, which the event loop builds for every answer."""
    return np.round(values.astype(np.float64), decimals).tolist()


def _pixels_then_fine(values: np.ndarray, pixels: int) -> Any:
    """`values` as nested lists, the first `pixels` entries of the last axis rounded as pixels (2 decimals), the
    rest as scores and angles (4), like `rounded`."""
    out = values.astype(np.float64)
    out[..., :pixels] = np.round(out[..., :pixels], 2)
    out[..., pixels:] = np.round(out[..., pixels:], 4)
    return out.tolist()


def _add_extras(rows: list[DetectionAnswer], out: Detections, masks: str) -> None:
    """The task's fields beside each detection's box (nothing for detect: its answer stays as it was)."""
    h, w = out.size
    if out.obb is not None:  # cx, cy, w, h in pixels; the angle in radians
        for row, rbox in zip(rows, _pixels_then_fine(out.obb, 4), strict=True):
            row["obb"] = rbox
    if out.keypoints is not None:  # x, y in pixels; the visibility is a score
        for row, points in zip(rows, _pixels_then_fine(out.keypoints, 2), strict=True):
            row["keypoints"] = points
    if out.masks is not None:
        for j, (row, counts) in enumerate(zip(rows, out.masks, strict=True)):
            if masks == "polygon":
                row["polygons"] = tasks.mask_polygons(counts, h, w, out.boxes[j])
            else:
                row["mask"] = {"size": [h, w], "counts": counts.tolist()}
