"""The Ultralytics trainers our pods run, one per task: offline, with checkpoints that survive a kill.

Importing this module makes Ultralytics offline. That matters under DDP: Ultralytics starts each rank as a new
Python process that re-imports the trainer's class by module name, so the patches in `offline.apply()` reach the
ranks through this import rather than through the parent's memory. For the same reason each task's trainer is a
class defined at module level here (DDP finds it by module and class name).

Ultralytics writes `last.pt` in place; a pod killed during that write would leave a truncated checkpoint and
lose the whole run. We write to a temporary file and rename, so `last.pt` is always a complete checkpoint.

Speed: `yolo-workload train` passes `deterministic=False` unless the spec asks otherwise (Ultralytics' default of True
restricts cuDNN and torch to deterministic kernels). cuDNN autotuning stays off: on the H100 it gained under 1% on a
YOLOv8 training step but cost seconds of search whenever a new batch shape appears (docs/benchmarks.md).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from yolo_workloads import offline
from yolo_workloads.contract import Task

offline.apply()

from ultralytics.models.yolo.classify import ClassificationTrainer  # noqa: E402  (after the offline patches)
from ultralytics.models.yolo.detect import DetectionTrainer  # noqa: E402
from ultralytics.models.yolo.obb import OBBTrainer  # noqa: E402
from ultralytics.models.yolo.pose import PoseTrainer  # noqa: E402
from ultralytics.models.yolo.segment import SegmentationTrainer  # noqa: E402


class _Offline:
    """Atomic checkpoint writes, and results.csv read without polars; mixed into each task's trainer."""

    csv: Path
    last: Path
    best: Path

    def read_results_csv(self) -> dict[str, list[Any]]:
        # Ultralytics reads this with polars for every checkpoint; the csv module does the same job and keeps
        # polars (a large native wheel) off the training path.
        try:
            with open(self.csv, newline="") as f:
                rows = list(csv.reader(f))
        except OSError:
            return {}
        if not rows:
            return {}
        header, body = [h.strip() for h in rows[0]], rows[1:]
        return {h: [_number(r[i]) for r in body if i < len(r)] for i, h in enumerate(header)}

    def save_model(self) -> Any:
        last, best = Path(self.last), Path(self.best)
        tmp_last = last.with_name(f".{last.name}.tmp")
        tmp_best = best.with_name(f".{best.name}.tmp")
        self.last, self.best = tmp_last, tmp_best
        try:
            result = super().save_model()  # type: ignore[misc]
        finally:
            self.last, self.best = last, best
        if tmp_best.exists():
            os.replace(tmp_best, best)
        if tmp_last.exists():
            os.replace(tmp_last, last)
        return result


class OfflineDetectionTrainer(_Offline, DetectionTrainer):
    """DetectionTrainer with atomic checkpoint writes, reading results.csv without polars."""


class OfflineSegmentationTrainer(_Offline, SegmentationTrainer):
    """SegmentationTrainer with atomic checkpoint writes, reading results.csv without polars."""


class OfflinePoseTrainer(_Offline, PoseTrainer):
    """PoseTrainer with atomic checkpoint writes, reading results.csv without polars."""


class OfflineOBBTrainer(_Offline, OBBTrainer):
    """OBBTrainer with atomic checkpoint writes, reading results.csv without polars."""


class OfflineClassificationTrainer(_Offline, ClassificationTrainer):
    """ClassificationTrainer with atomic checkpoint writes, reading results.csv without polars."""


TRAINERS: dict[Task, type[Any]] = {
    "detect": OfflineDetectionTrainer,
    "segment": OfflineSegmentationTrainer,
    "pose": OfflinePoseTrainer,
    "obb": OfflineOBBTrainer,
    "classify": OfflineClassificationTrainer,
}
"""Each task's trainer: the one Ultralytics itself picks for a model of that task (`YOLO(...).train`)."""


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text.strip()
