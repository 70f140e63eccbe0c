"""Segment, pose, obb and classify served by the pipeline match Ultralytics `predict` on the same weights and
images (CPU, fp32), as test_serve_parity.py does for detection.

Weights are `synthetic.make_signal_weights` of each task's yolov8n YAML: random but image-dependent, so every
image has dozens of detections (or well-separated class scores). What is compared, per task:
- boxes, scores, classes as for detection (each of ours paired with a reference one; identical order where the
  letterbox does not resize, so the pixels are identical);
- segment: our mask (RLE over the input image) against Ultralytics' non-retina mask (`Results.masks.data`, at the
  letterbox size) mapped to the image by `ops.scale_masks` (> 0.5), its plotting path: IoU >= 0.95 each;
- pose: keypoints (x, y within 1 px, visibility within 2e-3);
- obb: (cx, cy, w, h) within 0.5 px, angle within 1e-3;
- classify: the top 5 classes identical, scores within 2e-3 (Ultralytics resizes with PIL, we with torch's
  antialiased bilinear: the same algorithm, rounded alike to within a level).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from serve_fixtures import images

pytestmark = pytest.mark.workloads

IMGSZ = 96
CONF = 0.5
SIZES = [(96, 96), (72, 96), (150, 200), (40, 64)]  # exact fit, padding only, downscale, upscale
SAME_PIXELS = ((96, 96), (72, 96))
ARCH = {"segment": "yolov8n-seg.yaml", "pose": "yolov8n-pose.yaml", "obb": "yolov8n-obb.yaml"}


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return tmp_path_factory.mktemp("task-weights")


def _weights(weights_dir: Any, arch: str) -> str:
    """Signal weights of `arch`; obb's 80 classes saturate at score 1.0 with the default head scale (ties would
    make the order arbitrary), so its class head is scaled less."""
    from yolo_workloads.serve.synthetic import make_signal_weights

    path = weights_dir / arch.replace(".yaml", ".pt")
    kw: dict[str, float] = {"cls_scale": 30.0} if "obb" in arch else {}
    return str(path) if path.exists() else make_signal_weights(str(path), arch, seed=1, **kw)


def _ours(weights: str, imgs: list[np.ndarray], fmt: str, imgsz: int = IMGSZ) -> list[Any]:
    import torch
    from yolo_workloads.contract import ModelSource, ServeConfig
    from yolo_workloads.serve import synthetic
    from yolo_workloads.serve.pipeline import Detector, EncodedImage

    cfg = ServeConfig(model=ModelSource(weights=weights), imgsz=imgsz, half=False, conf=CONF, device="cpu")
    det = Detector(cfg)
    if fmt == "png":  # lossless, so both sides see identical pixels
        items: list[Any] = [EncodedImage(synthetic.encode(im, "png"), "png") for im in imgs]
    else:
        items = [torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1))) for im in imgs]
    out = det.run(items)
    for o in out:
        assert not isinstance(o, Exception), o
    return out


def _predict(weights: str, imgs: list[np.ndarray], imgsz: int = IMGSZ) -> list[Any]:
    from ultralytics import YOLO

    bgr = [np.ascontiguousarray(im[..., ::-1]) for im in imgs]  # predict takes OpenCV-style BGR arrays
    return list(YOLO(weights).predict(bgr, imgsz=imgsz, conf=CONF, rect=False, device="cpu", verbose=False))


def _score_tol(size: tuple[int, ...]) -> float:
    """Scores agree to 2e-3 on identical pixels; where the letterbox resizes, torch and OpenCV may round a pixel
    one level apart, which moves the signal weights' steep scores by up to a few 1e-3."""
    return 2e-3 if tuple(size[:2]) in SAME_PIXELS else 1e-2


def _pairs(mine: Any, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, score_tol: float) -> list[int]:
    """For each of our detections, the index of a reference one of the same class, box within 0.5 px and score
    within `score_tol` (-1 when none): ranks of near-equal scores may swap when a resize rounds differently."""
    out = []
    for box, score, cls in zip(mine.boxes, mine.scores, mine.classes, strict=True):
        near = (np.abs(boxes - box).max(1) <= 0.5) & (np.abs(scores - score) <= score_tol) & (classes == cls)
        out.append(int(np.flatnonzero(near)[0]) if near.any() else -1)
    return out


def _check_pairs(i: int, size: tuple[int, int], mine: Any, pairs: list[int], n_ref: int) -> None:
    assert n_ref >= 5, f"image {i}: reference has too few detections for a meaningful check"
    slack = max(1, n_ref // 50)  # a detection at the conf edge may differ where a resize rounds differently
    assert abs(len(mine.scores) - n_ref) <= slack, (i, len(mine.scores), n_ref)
    assert sum(p < 0 for p in pairs) <= slack, f"image {i}: {sum(p < 0 for p in pairs)} unmatched"
    if size in SAME_PIXELS:
        assert pairs == list(range(n_ref)), f"image {i}: same pixels, yet another order"


@pytest.mark.parametrize("fmt", ["png", "tensor"])
def test_segment_masks_match_ultralytics(weights_dir: Any, fmt: str) -> None:
    from ultralytics.utils import ops
    from yolo_workloads.serve.tasks import rle_decode

    w = _weights(weights_dir, ARCH["segment"])
    imgs = images(4, seed=3, sizes=SIZES)
    for i, (mine, ref) in enumerate(zip(_ours(w, imgs, fmt), _predict(w, imgs), strict=True)):
        h, wd = imgs[i].shape[:2]
        b = ref.boxes
        pairs = _pairs(mine, b.xyxy.numpy(), b.conf.numpy(), b.cls.numpy().astype(int), _score_tol((h, wd)))
        _check_pairs(i, (h, wd), mine, pairs, len(b))
        assert mine.masks is not None and len(mine.masks) == len(mine.scores) and mine.size == (h, wd)
        ref_masks = (ops.scale_masks(ref.masks.data[None].float(), (h, wd))[0] > 0.5).numpy()
        for j, p in enumerate(pairs):
            if p < 0:
                continue
            ours = rle_decode(mine.masks[j], h, wd).astype(bool)
            union = (ours | ref_masks[p]).sum()
            iou = (ours & ref_masks[p]).sum() / union if union else 1.0  # both empty: a box cut to a line
            assert iou >= 0.95, f"image {i} detection {j}: mask IoU {iou:.3f}"
            if (h, wd) in SAME_PIXELS:  # identical logits: identical masks
                np.testing.assert_array_equal(ours, ref_masks[p], err_msg=f"image {i} detection {j}")


@pytest.mark.parametrize("fmt", ["png", "tensor"])
def test_pose_keypoints_match_ultralytics(weights_dir: Any, fmt: str) -> None:
    w = _weights(weights_dir, ARCH["pose"])
    imgs = images(4, seed=3, sizes=SIZES)
    for i, (mine, ref) in enumerate(zip(_ours(w, imgs, fmt), _predict(w, imgs), strict=True)):
        b = ref.boxes
        tol = _score_tol(imgs[i].shape)
        pairs = _pairs(mine, b.xyxy.numpy(), b.conf.numpy(), b.cls.numpy().astype(int), tol)
        _check_pairs(i, imgs[i].shape[:2], mine, pairs, len(b))
        kref = ref.keypoints.data.numpy()
        assert mine.keypoints is not None and mine.keypoints.shape == (len(mine.scores), *kref.shape[1:])
        for j, p in enumerate(pairs):
            if p >= 0:
                np.testing.assert_allclose(mine.keypoints[j, :, :2], kref[p, :, :2], atol=1.0, err_msg=f"{i}/{j}")
                np.testing.assert_allclose(mine.keypoints[j, :, 2], kref[p, :, 2], atol=tol, err_msg=f"{i}/{j}")


@pytest.mark.parametrize("fmt", ["png", "tensor"])
def test_obb_rotated_boxes_match_ultralytics(weights_dir: Any, fmt: str) -> None:
    w = _weights(weights_dir, ARCH["obb"])
    imgs = images(4, seed=3, sizes=SIZES)
    for i, (mine, ref) in enumerate(zip(_ours(w, imgs, fmt), _predict(w, imgs), strict=True)):
        o = ref.obb
        xywhr = o.xywhr.numpy()
        pairs = _pairs(
            _Rotated(mine), np.concatenate([xywhr[:, :4], xywhr[:, 4:] * 100], 1), o.conf.numpy(),
            o.cls.numpy().astype(int), _score_tol(imgs[i].shape),
        )  # fmt: skip
        _check_pairs(i, imgs[i].shape[:2], mine, pairs, len(o))
        for j, p in enumerate(pairs):
            if p >= 0:
                np.testing.assert_allclose(mine.obb[j, :4], xywhr[p, :4], atol=0.5, err_msg=f"{i}/{j}")
                np.testing.assert_allclose(mine.obb[j, 4], xywhr[p, 4], atol=1e-3, err_msg=f"{i}/{j}")
                np.testing.assert_allclose(mine.boxes[j], o.xyxy.numpy()[p], atol=0.5, err_msg=f"{i}/{j} box")


class _Rotated:
    def __init__(self, d: Any) -> None:
        self.boxes = np.concatenate([d.obb[:, :4], d.obb[:, 4:] * 100], 1)  # angle in centiradians: 0.5 = 5e-3 rad
        self.scores, self.classes = d.scores, d.classes


@pytest.mark.parametrize("fmt", ["png", "tensor"])
def test_classify_top5_matches_ultralytics(weights_dir: Any, fmt: str) -> None:
    from yolo_workloads.serve.synthetic import make_signal_weights

    w = make_signal_weights(str(weights_dir / "yolov8n-cls.pt"), "yolov8n-cls.yaml", seed=1)
    imgs = images(6, seed=4, sizes=[(64, 64), (48, 64), (150, 200), (40, 30), (64, 100), (33, 64)])
    for i, (mine, ref) in enumerate(zip(_ours(w, imgs, fmt, 64), _predict(w, imgs, 64), strict=True)):
        probs = ref.probs.data.numpy()
        top5 = list(ref.probs.top5)
        assert probs[top5[0]] - probs[top5[4]] > 0.01, f"image {i}: classes too close to rank"
        assert mine.classes.tolist() == top5, (i, mine.classes.tolist(), top5)
        np.testing.assert_allclose(mine.scores, probs[top5], atol=2e-3, err_msg=f"image {i}")


def test_segment_masks_are_the_same_whatever_the_rle_grouping(
    weights_dir: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Images run-length encoded together (one host sync) or one by one answer alike, empty images included."""
    from yolo_workloads.serve import tasks

    w = _weights(weights_dir, ARCH["segment"])
    imgs = images(4, seed=3, sizes=SIZES)
    imgs.insert(2, np.full((50, 70, 3), 114, np.uint8))  # a flat grey image: no detections
    together = _ours(w, imgs, "tensor")
    monkeypatch.setattr(tasks, "RLE_GROUP_PIXELS", 1)
    alone = _ours(w, imgs, "tensor")
    assert len(together[2].scores) == 0 and together[2].masks == []
    for a, b in zip(together, alone, strict=True):
        assert len(a.masks) == len(b.masks) == len(a.scores)
        for x, y in zip(a.masks, b.masks, strict=True):
            np.testing.assert_array_equal(x, y)
