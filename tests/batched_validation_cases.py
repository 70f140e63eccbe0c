"""Validation batches built to test the batched metric update (train/batched_validation.py) against Ultralytics'
own, shared by the CPU suite and the GPU suite: labels and predictions on a coarse grid, so that IoUs tie and
several predictions compete for one label, with images that have no labels, no predictions, or neither."""

from __future__ import annotations

import copy
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from late_checkpoints import small_trainer
from ultralytics.models.yolo.detect import DetectionValidator
from ultralytics.utils import ops


def batch(rng: np.random.Generator, images: int, nc: int, device: str, imgsz: int = 64) -> dict[str, Any]:
    """A collated validation batch as Ultralytics' loader gives it (normalised xywh labels by image)."""
    counts = rng.integers(0, 6, images)
    counts[0] = 0  # an image without labels
    image = np.repeat(np.arange(images), counts)
    grid = rng.integers(1, 7, (len(image), 4)) / 8.0  # centres and sizes on a grid: equal boxes, equal IoUs
    xywh = np.concatenate([grid[:, :2], grid[:, 2:] / 2], 1).astype(np.float32)
    return {
        "batch_idx": torch.as_tensor(image, dtype=torch.float32, device=device),
        "cls": torch.as_tensor(rng.integers(0, nc, (len(image), 1)), dtype=torch.float32, device=device),
        "bboxes": torch.as_tensor(xywh, device=device),
        "img": torch.zeros((images, 3, imgsz, imgsz), dtype=torch.uint8, device=device),
        "ori_shape": [(imgsz, imgsz)] * images,
        "ratio_pad": [((1.0, 1.0), (0.0, 0.0))] * images,
        "im_file": [f"/data/val/{i}.jpg" for i in range(images)],
    }


def predictions(
    rng: np.random.Generator, labels: dict[str, Any], nc: int, dtype: torch.dtype, imgsz: int = 64
) -> list[dict[str, torch.Tensor]]:
    """Per image what NMS returns, by descending confidence: copies of its labels moved a little (several per
    label, some of another class), and boxes anywhere; image 1 has none."""
    device = labels["bboxes"].device
    image = labels["batch_idx"].long().cpu().numpy()
    truth = (ops.xywh2xyxy(labels["bboxes"]) * imgsz).cpu().numpy()
    classes = labels["cls"][:, 0].cpu().numpy()
    out = []
    for i in range(len(labels["im_file"])):
        mine = image == i
        near = np.repeat(truth[mine], 3, 0) + rng.integers(-2, 3, (3 * int(mine.sum()), 4)) * 2.0
        near_cls = np.where(rng.random(len(near)) < 0.8, np.repeat(classes[mine], 3), rng.integers(0, nc, len(near)))
        anywhere = np.sort(rng.integers(0, imgsz, (int(rng.integers(0, 12)), 4)), 1)[:, [0, 1, 2, 3]].astype(float)
        boxes = np.concatenate([near, anywhere]) if i != 1 else np.zeros((0, 4))
        cls = np.concatenate([near_cls, rng.integers(0, nc, len(anywhere))]) if i != 1 else np.zeros(0)
        conf = np.round(rng.random(len(boxes)), 1)  # ties in confidence too
        order = np.argsort(-conf, kind="stable")
        out.append(
            {
                "bboxes": torch.as_tensor(boxes[order], dtype=dtype, device=device),
                "conf": torch.as_tensor(conf[order], dtype=dtype, device=device),
                "cls": torch.as_tensor(cls[order], dtype=dtype, device=device),
                "extra": torch.zeros((len(boxes), 0), dtype=dtype, device=device),
            }
        )
    return out


def validator(kind: type[Any], nc: int, device: str, **args: Any) -> Any:
    """A validator of `kind` ready for update_metrics, as training's validation prepares it."""
    v = kind(args={"plots": False, "save_json": False, **args})
    v.device, v.data, v.training = torch.device(device), {"val": "val.txt"}, True
    v.dataloader = SimpleNamespace(dataset=SimpleNamespace(im_files=[]), sampler=[])
    v.init_metrics(SimpleNamespace(names={c: f"c{c}" for c in range(nc)}, end2end=False))
    return v


def compare(
    batches: list[tuple[dict[str, Any], list[dict[str, torch.Tensor]]]], nc: int, device: str, **args: Any
) -> int:
    """Runs Ultralytics' DetectionValidator and the batched one over the same batches; asserts equal statistics
    (values and dtypes), per-image metrics and results. Returns how many predictions were counted correct at 0.5."""
    from yolo_workloads.train.batched_validation import BatchedDetectionValidator

    theirs, ours = (validator(k, nc, device, **args) for k in (DetectionValidator, BatchedDetectionValidator))
    for labels, preds in batches:
        theirs.update_metrics(copy.deepcopy(preds), labels)
        ours.update_metrics(copy.deepcopy(preds), labels)
    assert ours.seen == theirs.seen
    for key, arrays in theirs.metrics.stats.items():
        mine = ours.metrics.stats[key]
        assert len(mine) == len(arrays), key
        for a, b in zip(arrays, mine, strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), key
    assert ours.metrics.box.image_metrics == theirs.metrics.box.image_metrics
    hits = int(np.concatenate(theirs.metrics.stats["tp"])[:, 0].sum())
    assert ours.get_stats() == theirs.get_stats()
    return hits


def train_and_validate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device: str, imgsz: int) -> None:
    """A real training validates every epoch with the batched validator (on a GPU its NMS too; on the CPU
    Ultralytics' NMS, the faster there); then both validators, standalone on its last.pt, give the same results."""
    from ultralytics.utils import nms
    from yolo_workloads.datasets.shapes import generate
    from yolo_workloads.train.batched_validation import BatchedDetectionValidator

    data = generate(tmp_path / "shapes", n=32, imgsz=imgsz, val=12, seed=2, processes=1)
    run = small_trainer(data, tmp_path, epochs=2, device=device, imgsz=imgsz)
    calls: list[str] = []
    callers: list[str] = []  # where each of Ultralytics' NMS calls came from, for the failure's message
    per_image, suppress = DetectionValidator.update_metrics, nms.non_max_suppression

    def counted(self: Any, preds: Any, batch: Any) -> None:
        calls.append("update_metrics")
        per_image(self, preds, batch)

    def suppressed(*args: Any, **kwargs: Any) -> Any:
        stack = traceback.extract_stack()
        if not any(frame.name == "warmup" for frame in stack):  # AutoBackend's warm-up (on a GPU) is not validation
            calls.append("non_max_suppression")
            callers.append("".join(traceback.format_list(stack[-6:-1])))
        return suppress(*args, **kwargs)

    monkeypatch.setattr(DetectionValidator, "update_metrics", counted)
    monkeypatch.setattr(nms, "non_max_suppression", suppressed)
    run.train()
    assert type(run.validator) is BatchedDetectionValidator
    assert "update_metrics" not in calls  # every epoch's validation (plots off) updated its metrics by batch
    on_gpu = device != "cpu"
    assert on_gpu or calls  # on the CPU Ultralytics' NMS
    assert not on_gpu or not calls, callers[:1]  # on a GPU the batched NMS

    results, batches = {}, 3  # 12 images, 4 a batch
    for kind in (DetectionValidator, BatchedDetectionValidator):
        calls.clear()
        args = {"data": str(data), "imgsz": imgsz, "batch": 4, "plots": False, "device": device, "conf": 0.001}
        results[kind] = kind(args=args)(model=str(run.wdir / "last.pt"))
        ours = kind is BatchedDetectionValidator
        assert calls == ([] if ours else ["non_max_suppression", "update_metrics"] * batches) or (
            ours and not on_gpu and calls == ["non_max_suppression"] * batches
        )
    assert results[BatchedDetectionValidator] == results[DetectionValidator]
