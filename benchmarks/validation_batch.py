"""One validation's NMS and metric update: Ultralytics' per-image ones against the batched ones
(train/validation_nms.py, train/batched_validation.py), on the same batches, on a CPU or a GPU (issue 16).

NMS: raw head outputs (8,400 anchors at 640) where each image has `--candidates` (anchor, class) scores above
validation's conf 0.001, in clusters, so that NMS keeps up to max_det (300). Metric update: batches that stand for a
trained detector's validation: each image has 1-8 labels and `--preds` predictions (by default max_det's 300), a few
near each label, the rest anywhere at low confidence. Reported, as medians of `--repeats`, for all `--images` in
batches of `--batch` (training validates at twice its batch): seconds of NMS, seconds of the metric updates,
seconds of the statistics (Ultralytics' `get_stats`, the same code for both), and whether both gave the same rows
and the same mAP50-95.

    python3 benchmarks/validation_batch.py [--device cuda] [--images 300] [--batch 128] [--classes 6] [--preds 300]
        [--candidates 1000]

`--candidates 30000` stands for a young model's first epochs (every anchor's every class above 0.001, cut to
max_nms). Ultralytics' NMS gives up on a batch after 2 s + 50 ms an image (a warning, the batch's remaining images
left empty); where it does, the rows differ (`same_rows` false): on a CPU keep such batches small.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch


def batches(args: argparse.Namespace) -> list[tuple[dict[str, Any], list[dict[str, torch.Tensor]]]]:
    from ultralytics.utils import ops

    g = torch.Generator().manual_seed(0)
    size, device, out = args.imgsz, torch.device(args.device), []
    for start in range(0, args.images, args.batch):
        images = min(args.batch, args.images - start)
        counts = torch.randint(1, 9, (images,), generator=g)
        image = torch.repeat_interleave(torch.arange(images), counts)
        xywh = torch.cat(
            [torch.rand(len(image), 2, generator=g) * 0.8 + 0.1, torch.rand(len(image), 2, generator=g) * 0.2 + 0.05], 1
        )
        cls = torch.randint(0, args.classes, (len(image), 1), generator=g).float()
        labels = {"batch_idx": image.float(), "cls": cls, "bboxes": xywh, "ori_shape": [(size, size)] * images,
                  "ratio_pad": [((1.0, 1.0), (0.0, 0.0))] * images, "img": torch.zeros(images, 3, size, size, dtype=torch.uint8),
                  "im_file": [f"{start + i}.jpg" for i in range(images)]}  # fmt: skip
        truth = ops.xywh2xyxy(xywh) * size
        preds = []
        for i in range(images):
            mine = truth[image == i]
            near = mine.repeat(4, 1) + torch.randn(4 * len(mine), 4, generator=g) * 6
            anywhere = ops.xywh2xyxy(
                torch.cat(
                    [torch.rand(args.preds, 2, generator=g) * size, torch.rand(args.preds, 2, generator=g) * 150 + 8], 1
                )
            )
            boxes = torch.cat([near, anywhere])[: args.preds]
            conf = torch.cat(
                [torch.rand(len(near), generator=g) * 0.5 + 0.5, torch.rand(args.preds, generator=g) * 0.05]
            )[: args.preds]
            pcls = torch.cat(
                [cls[image == i, 0].repeat(4), torch.randint(0, args.classes, (args.preds,), generator=g).float()]
            )[: args.preds]
            order = conf.argsort(descending=True)
            preds.append(
                {"bboxes": boxes[order], "conf": conf[order], "cls": pcls[order], "extra": torch.zeros(len(order), 0)}
            )
        on = lambda t: t.to(device) if isinstance(t, torch.Tensor) else t  # noqa: E731
        out.append(({k: on(v) for k, v in labels.items()}, [{k: on(v) for k, v in p.items()} for p in preds]))
    return out


def validation(kind: type[Any], data: list[Any], args: argparse.Namespace) -> tuple[float, float, float]:
    """Seconds of one validation's metric updates, then of its statistics (Ultralytics' own for both), and its
    mAP50-95."""
    v = kind(save_dir=Path(tempfile.mkdtemp(prefix="validation-batch-")), args={"plots": False, "save_json": False})
    v.device, v.data, v.training = torch.device(args.device), {"val": "val.txt"}, True
    v.dataloader = SimpleNamespace(dataset=SimpleNamespace(im_files=[]), sampler=[])
    v.init_metrics(SimpleNamespace(names={c: str(c) for c in range(args.classes)}, end2end=False))
    inputs = [(labels, copy.deepcopy(preds)) for labels, preds in data]  # _prepare_pred may change them in place
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    sync()
    start = time.perf_counter()
    for labels, preds in inputs:
        v.update_metrics(preds, labels)
    sync()
    updated = time.perf_counter()
    stats = v.get_stats()
    return updated - start, time.perf_counter() - updated, float(stats["metrics/mAP50-95(B)"])


def raw_outputs(args: argparse.Namespace) -> list[torch.Tensor]:
    """Per batch (images, 4 + classes, 8400): clustered boxes; `--candidates` scores a image above 0.001."""
    g, size, anchors, out = torch.Generator().manual_seed(1), args.imgsz, 8400, []
    for start in range(0, args.images, args.batch):
        images = min(args.batch, args.images - start)
        centres = (
            torch.rand(images, 1, 40, 2, generator=g) * size
            + torch.randn(images, anchors // 40, 40, 2, generator=g) * 10
        )
        wh = torch.rand(images, anchors, 2, generator=g) * 150 + 8
        scores = torch.rand(images, anchors * args.classes, generator=g) * 0.0009
        chosen = torch.rand(images, anchors * args.classes, generator=g).argsort(1)[:, : args.candidates]
        scores.scatter_(1, chosen, torch.rand(images, args.candidates, generator=g) ** 4 * 0.9 + 0.0011)
        head = torch.cat([centres.reshape(images, anchors, 2), wh, scores.view(images, anchors, args.classes)], 2)
        out.append(head.transpose(1, 2).contiguous().to(args.device))
    return out


def suppression(batched: bool, heads: list[torch.Tensor], args: argparse.Namespace) -> tuple[float, list[Any]]:
    """Seconds of one validation's NMS (Ultralytics' or the batched), and its rows."""
    from ultralytics.utils import nms
    from yolo_workloads.train import validation_nms

    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    sync()
    start, rows = time.perf_counter(), []
    for head in heads:
        if batched:
            rows.append(validation_nms.batched(head, 0.001, 0.7, False, 300))
        else:
            rows.append(nms.non_max_suppression(head, 0.001, 0.7, multi_label=True, max_det=300))
    sync()
    return time.perf_counter() - start, rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--images", type=int, default=300)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--classes", type=int, default=6)
    p.add_argument("--candidates", type=int, default=1000)
    p.add_argument("--preds", type=int, default=300)
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args()

    from ultralytics.models.yolo.detect import DetectionValidator
    from yolo_workloads.train.batched_validation import BatchedDetectionValidator

    heads = raw_outputs(args)
    report: dict[str, Any] = {"args": vars(args)}
    for name, batched in (("nms_ultralytics_s", False), ("nms_batched_s", True)):
        runs = [suppression(batched, heads, args) for _ in range(args.repeats)]
        report[name] = round(statistics.median(s for s, _ in runs), 4)
        report.setdefault("rows", []).append(runs[0][1])
    theirs, ours = report.pop("rows")
    report["nms_kept_per_image"] = round(sum(len(x) for rows in theirs for x in rows) / args.images, 1)
    report["same_rows"] = all(
        torch.equal(a, b) for t, o in zip(theirs, ours, strict=True) for a, b in zip(t, o or [], strict=True)
    ) and all(o is not None for o in ours)
    data = batches(args)
    for kind in (DetectionValidator, BatchedDetectionValidator):
        runs = [validation(kind, data, args) for _ in range(args.repeats)]
        report[kind.__name__] = {
            "update_s": round(statistics.median(r[0] for r in runs), 4),
            "stats_s": round(statistics.median(r[1] for r in runs), 4),
            "map": runs[0][2],
        }
    report["same_map"] = report["DetectionValidator"]["map"] == report["BatchedDetectionValidator"]["map"]
    print(json.dumps(report))


if __name__ == "__main__":
    main()
