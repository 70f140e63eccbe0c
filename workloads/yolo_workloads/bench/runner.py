"""Measurements behind `yolo-workload bench`: images/s, batch latency percentiles and peak device memory.

Three modes over the same model and batch sizes, so users see where time goes on their hardware:
- `forward`: the fused model alone on a ready tensor (the ceiling);
- `pipeline`: the serving pipeline from JPEG bytes (decode, letterbox, forward, NMS, boxes to pixels);
- `predict`: Ultralytics' `YOLO.predict` on the same JPEGs as files (the usual baseline).
Each point runs for a fixed time after warm-up; device time is synchronised before every clock read.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolo_workloads.contract import ServeConfig
from yolo_workloads.serve import synthetic
from yolo_workloads.serve.pipeline import Detector, EncodedImage

MODES = ("forward", "pipeline", "predict")


@dataclass(frozen=True)
class Point:
    mode: str
    batch: int
    images_per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    peak_memory_bytes: int | None
    iterations: int


def _measure(
    mode: str, batch: int, step: Callable[[], Any], device: torch.device, seconds: float, warmup: int
) -> Point:
    cuda = device.type == "cuda"
    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    lat: list[float] = []
    t_end = time.perf_counter() + seconds
    t_start = time.perf_counter()
    while time.perf_counter() < t_end or len(lat) < 3:
        t0 = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize(device)
        lat.append(time.perf_counter() - t0)
    total = time.perf_counter() - t_start
    ms = np.array(lat) * 1000
    return Point(
        mode,
        batch,
        batch * len(lat) / total,
        float(np.percentile(ms, 50)),
        float(np.percentile(ms, 90)),
        float(np.percentile(ms, 99)),
        int(torch.cuda.max_memory_allocated(device)) if cuda else None,
        len(lat),
    )


def run_bench(
    cfg: ServeConfig, batch_sizes: list[int], modes: list[str], seconds: float, warmup: int, image_hw: tuple[int, int]
) -> list[Point]:
    det = Detector(cfg)
    rng = np.random.default_rng(0)
    jpegs = [synthetic.encode(synthetic.scene(*image_hw, rng)) for _ in range(max(batch_sizes))]
    points: list[Point] = []
    for mode in modes:
        for b in batch_sizes:
            step: Callable[[], Any]
            if mode == "forward":
                x = torch.rand(b, 3, cfg.imgsz, cfg.imgsz, device=det.device, dtype=det.dtype)
                x = x.contiguous(memory_format=torch.channels_last)

                def forward_step(x: torch.Tensor = x) -> Any:
                    with torch.inference_mode():
                        return det.forward(x)

                step = forward_step

            elif mode == "pipeline":
                items = [EncodedImage(j, "jpeg") for j in jpegs[:b]]

                def pipeline_step(items: list[Any] = items) -> Any:
                    return det.run(items)

                step = pipeline_step

            else:
                step = _predict_step(cfg, det.device, jpegs[:b], b)
            points.append(_measure(mode, b, step, det.device, seconds, warmup))
    return points


def _predict_step(cfg: ServeConfig, device: torch.device, jpegs: list[bytes], batch: int) -> Callable[[], Any]:
    from ultralytics.models import YOLO  # the top level exports it only through a lazy __getattr__

    folder = Path(tempfile.mkdtemp(prefix="yolo-bench-"))
    files = []
    for i, data in enumerate(jpegs):
        (folder / f"{i}.jpg").write_bytes(data)
        files.append(str(folder / f"{i}.jpg"))
    yolo = YOLO(cfg.model.ref, task="detect")
    kw: dict[str, Any] = dict(
        imgsz=cfg.imgsz,
        conf=cfg.conf,
        iou=cfg.iou,
        half=cfg.half and device.type == "cuda",
        device=str(device),
        batch=batch,
        verbose=False,
        save=False,
    )

    def step() -> Any:
        return yolo.predict(files, **kw)

    return step


def table(points: list[Point]) -> str:
    head = f"{'mode':<9} {'batch':>5} {'images/s':>10} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'peak MiB':>9}"
    rows = [head, "-" * len(head)]
    for p in points:
        mem = f"{p.peak_memory_bytes / 2**20:9.0f}" if p.peak_memory_bytes is not None else f"{'-':>9}"
        rows.append(
            f"{p.mode:<9} {p.batch:>5} {p.images_per_second:>10.1f} "
            f"{p.p50_ms:>8.2f} {p.p90_ms:>8.2f} {p.p99_ms:>8.2f} {mem}"
        )
    return "\n".join(rows)
