"""Segment, pose, obb and classify on a real NVIDIA GPU in fp16 against Ultralytics `predict` (half=True) on the
same signal weights and images, as test_gpu_workloads.py does for detection; plus the task pipeline at a
realistic batch (each image's answer equals its answer alone).

Tolerances are fp16's (boxes within 2 px at 320, scores within 1e-2, 95% of detections matched) and, per task:
mask IoU >= 0.9 for 95% of matched detections, keypoints within 2 px, rotated boxes within 2 px and 1e-2 rad,
classify top-1 identical and at least 4 of the top 5 shared. Skipped with a reason where no GPU is visible.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from test_gpu_workloads import _images

pytestmark = pytest.mark.gpu
IMGSZ = 320
CONF = 0.5
# (architecture, cls_scale): image-dependent weights with distinct scores and well below max_det per image here
ARCH = {
    "segment": ("yolov8n-seg.yaml", 100.0),
    "pose": ("yolov8n-pose.yaml", 30.0),
    "obb": ("yolov8n-obb.yaml", 30.0),
    "classify": ("yolov8n-cls.yaml", 1000.0),
}


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from yolo_workloads.serve.synthetic import make_signal_weights

    tmp = tmp_path_factory.mktemp("tasks")
    return {t: make_signal_weights(str(tmp / f"{t}.pt"), a, seed=1, cls_scale=s) for t, (a, s) in ARCH.items()}


def _run_both(weights: str, imgs: list[np.ndarray], imgsz: int) -> tuple[list[Any], list[Any]]:
    import torch
    from ultralytics import YOLO
    from yolo_workloads.contract import ModelSource, ServeConfig
    from yolo_workloads.serve.pipeline import Detector

    det = Detector(ServeConfig(model=ModelSource(weights=weights), imgsz=imgsz, half=True, conf=CONF, device="cuda:0"))
    ours = det.run([torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1))) for im in imgs])
    ref = YOLO(weights).predict(
        [np.ascontiguousarray(im[..., ::-1]) for im in imgs],
        imgsz=imgsz, conf=CONF, rect=False, half=True, device="cuda:0", verbose=False, save=False,
    )  # fmt: skip
    for o in ours:
        assert not isinstance(o, Exception), o
    return ours, list(ref)


def _match(mine: Any, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> list[int]:
    out = []
    for box, score, cls in zip(mine.boxes, mine.scores, mine.classes, strict=True):
        near = (np.abs(boxes - box).max(1) <= 2.0) & (np.abs(scores - score) <= 1e-2) & (classes == cls)
        out.append(int(np.flatnonzero(near)[0]) if near.any() else -1)
    return out


def _check(pairs: list[int], n_mine: int, n_ref: int) -> None:
    assert n_ref >= 3, "the reference must detect something for the comparison to mean anything"
    assert abs(n_mine - n_ref) <= max(2, n_ref // 20), (n_mine, n_ref)
    assert sum(p >= 0 for p in pairs) >= 0.95 * n_ref, f"{sum(p >= 0 for p in pairs)} of {n_ref} matched"


def test_fp16_segment_masks_match_ultralytics_on_cuda(weights: dict[str, str]) -> None:
    from ultralytics.utils import ops
    from yolo_workloads.serve.tasks import rle_decode

    imgs = _images(8, seed=2)
    ours, ref = _run_both(weights["segment"], imgs, IMGSZ)
    ious: list[float] = []
    for im, mine, r in zip(imgs, ours, ref, strict=True):
        h, w = im.shape[:2]
        b = r.boxes
        pairs = _match(mine, b.xyxy.cpu().numpy(), b.conf.cpu().numpy(), b.cls.cpu().numpy())
        _check(pairs, len(mine.scores), len(b))
        masks = (ops.scale_masks(r.masks.data[None].float(), (h, w))[0] > 0.5).cpu().numpy()
        for j, p in enumerate(pairs):
            if p >= 0:
                m = rle_decode(mine.masks[j], h, w).astype(bool)
                union = (m | masks[p]).sum()
                ious.append(float((m & masks[p]).sum() / union) if union else 1.0)
    assert np.mean(np.array(ious) >= 0.9) >= 0.95, f"mask IoU quantiles {np.quantile(ious, [0, 0.05, 0.5])}"


def test_fp16_pose_keypoints_match_ultralytics_on_cuda(weights: dict[str, str]) -> None:
    imgs = _images(8, seed=2)
    ours, ref = _run_both(weights["pose"], imgs, IMGSZ)
    for mine, r in zip(ours, ref, strict=True):
        b = r.boxes
        pairs = _match(mine, b.xyxy.cpu().numpy(), b.conf.cpu().numpy(), b.cls.cpu().numpy())
        _check(pairs, len(mine.scores), len(b))
        k = r.keypoints.data.cpu().numpy()
        for j, p in enumerate(pairs):
            if p >= 0:
                np.testing.assert_allclose(mine.keypoints[j, :, :2], k[p, :, :2], atol=2.0)
                np.testing.assert_allclose(mine.keypoints[j, :, 2], k[p, :, 2], atol=1e-2)


def test_fp16_obb_match_ultralytics_on_cuda(weights: dict[str, str]) -> None:
    imgs = _images(8, seed=2)
    ours, ref = _run_both(weights["obb"], imgs, IMGSZ)
    for mine, r in zip(ours, ref, strict=True):
        o = r.obb
        xywhr = o.xywhr.cpu().numpy()
        pairs = _match(mine, o.xyxy.cpu().numpy(), o.conf.cpu().numpy(), o.cls.cpu().numpy())
        _check(pairs, len(mine.scores), len(o))
        for j, p in enumerate(pairs):
            if p >= 0:
                np.testing.assert_allclose(mine.obb[j, :4], xywhr[p, :4], atol=2.0)
                np.testing.assert_allclose(mine.obb[j, 4], xywhr[p, 4], atol=1e-2)


def test_fp16_classify_top5_match_ultralytics_on_cuda(weights: dict[str, str]) -> None:
    imgs = _images(8, seed=2)
    ours, ref = _run_both(weights["classify"], imgs, 96)
    for mine, r in zip(ours, ref, strict=True):
        top5 = list(r.probs.top5)
        assert mine.classes[0] == top5[0]
        assert len(set(mine.classes.tolist()) & set(top5)) >= 4, (mine.classes.tolist(), top5)
        probs = r.probs.data.float().cpu().numpy()
        np.testing.assert_allclose(mine.scores, probs[mine.classes], atol=1e-2)


@pytest.mark.parametrize("task", list(ARCH))
def test_a_large_batch_answers_each_image_as_alone(weights: dict[str, str], task: str) -> None:
    """128 images of four sizes in one batch on two CUDA streams' worth of work: each answer equals the image's
    answer alone (fp16 rounding aside), so per-image indexing of masks, keypoints and rotated boxes holds."""
    import torch
    from yolo_workloads.contract import ModelSource, ServeConfig
    from yolo_workloads.serve.pipeline import Detector

    imgsz = 96 if task == "classify" else IMGSZ
    cfg = ServeConfig(model=ModelSource(weights=weights[task]), imgsz=imgsz, half=True, conf=CONF, device="cuda:0")
    det = Detector(cfg)
    imgs = [torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1))) for im in _images(8, seed=5)]
    batch = det.run([imgs[i % 8] for i in range(128)])
    for i in range(8):
        alone = det.run([imgs[i]])[0]
        for j in (i, i + 64, i + 120):
            got: Any = batch[j]
            # another batch size may pick other kernels: scores move by fp16 rounding, near-ties may swap
            assert abs(len(got.scores) - len(alone.scores)) <= 1, (task, i, j)
            found = [
                bool(((np.abs(alone.scores - s) <= 5e-3) & (alone.classes == c)).any())
                for s, c in zip(got.scores, got.classes, strict=True)
            ]
            # one near-tie may swap whatever the count (the H200 run of 2026-12-02: 15 of 16 pose detections matched)
            assert found.count(False) <= max(1, round(0.05 * len(found))), (task, i, j, found)
            if task == "segment":
                assert len(got.masks) == len(got.scores)
            if task == "pose":
                assert got.keypoints.shape[0] == len(got.scores)
