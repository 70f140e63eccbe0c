"""The Ultralytics detection trainer our pods run: offline, with checkpoints that survive a kill.

Importing this module makes Ultralytics offline. That matters under DDP: Ultralytics starts each rank as a new
Python process that re-imports the trainer's class by module name, so the patches in `offline.apply()` reach the
ranks through this import rather than through the parent's memory.

Ultralytics writes `last.pt` in place; a pod killed during that write would leave a truncated checkpoint and
lose the whole run. We write to a temporary file and rename, so `last.pt` is always a complete checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from yolo_workloads import offline

offline.apply()

from ultralytics.models.yolo.detect import DetectionTrainer  # noqa: E402  (after the offline patches)


class OfflineDetectionTrainer(DetectionTrainer):  # type: ignore[misc]
    """DetectionTrainer with atomic checkpoint writes."""

    def save_model(self) -> Any:
        last, best = Path(self.last), Path(self.best)
        tmp_last = last.with_name(f".{last.name}.tmp")
        tmp_best = best.with_name(f".{best.name}.tmp")
        self.last, self.best = tmp_last, tmp_best
        try:
            result = super().save_model()
        finally:
            self.last, self.best = last, best
        if tmp_best.exists():
            os.replace(tmp_best, best)
        if tmp_last.exists():
            os.replace(tmp_last, last)
        return result
