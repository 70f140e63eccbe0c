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
                {"class_id": int(c), "class_name": names.get(int(c), str(int(c))), "score": round(float(s), 4)}
                for c, s in zip(out.classes.tolist(), out.scores.tolist(), strict=True)
            ]
        }
    rows: list[DetectionAnswer] = [
        {
            "box": [round(float(v), 2) for v in box],
            "score": round(float(s), 4),
            "class_id": int(c),
            "class_name": names.get(int(c), str(int(c))),
        }
        for box, s, c in zip(out.boxes.tolist(), out.scores.tolist(), out.classes.tolist(), strict=True)
    ]
    _add_extras(rows, out, masks)
    return {"detections": rows}


def _add_extras(rows: list[DetectionAnswer], out: Detections, masks: str) -> None:
    """The task's fields beside each detection's box (nothing for detect: its answer stays as it was)."""
    h, w = out.size
    for j, row in enumerate(rows):
        if out.obb is not None:
            cx, cy, bw, bh, angle = out.obb[j].tolist()
            row["obb"] = [round(cx, 2), round(cy, 2), round(bw, 2), round(bh, 2), round(angle, 4)]
        if out.keypoints is not None:
            row["keypoints"] = [[round(float(v), 2 if i < 2 else 4) for i, v in enumerate(k)] for k in out.keypoints[j]]
        if out.masks is not None:
            counts = out.masks[j]
            if masks == "polygon":
                row["polygons"] = tasks.mask_polygons(counts, h, w, out.boxes[j])
            else:
                row["mask"] = {"size": [h, w], "counts": counts.tolist()}
