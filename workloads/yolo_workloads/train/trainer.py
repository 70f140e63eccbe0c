"""The Ultralytics detection trainer our pods run: offline, with checkpoints that survive a kill.

Importing this module makes Ultralytics offline. That matters under DDP: Ultralytics starts each rank as a new
Python process that re-imports the trainer's class by module name, so the patches in `offline.apply()` reach the
ranks through this import rather than through the parent's memory.

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

offline.apply()

from ultralytics.models.yolo.detect import DetectionTrainer  # noqa: E402  (after the offline patches)


class OfflineDetectionTrainer(DetectionTrainer):
    """DetectionTrainer with atomic checkpoint writes, reading results.csv without polars."""

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
            result = super().save_model()  # type: ignore[no-untyped-call]
        finally:
            self.last, self.best = last, best
        if tmp_best.exists():
            os.replace(tmp_best, best)
        if tmp_last.exists():
            os.replace(tmp_last, last)
        return result


def _number(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text.strip()
