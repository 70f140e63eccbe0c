"""The augmentation benchmarks (issue 23) run on the CPU at toy sizes: `gpu_augment_bench.py` once broke unnoticed
when a helper it used moved, and `train_profile.py gpu` measures the step at several box counts an image (what
bounds the crowded set). The figures are the GPU machine's; here only that they run and report what they say."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.workloads

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _run(script: str, *args: str) -> list[dict[str, object]]:
    env = {**os.environ, "YOLO_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def test_the_augmentation_benchmark_times_both_pipelines_and_draws_their_grids(tmp_path: Path) -> None:
    rows = _run("gpu_augment_bench.py", "--out", str(tmp_path), "--imgsz", "64", "--batches", "4", "--rounds", "1")
    assert [r["batch"] for r in rows] == [4]
    assert float(rows[0]["images_per_second"]) > 0 and float(rows[0]["reference_ms"]) > 0  # type: ignore[arg-type]
    assert (tmp_path / "grid-ultralytics.jpg").stat().st_size > 0 and (tmp_path / "grid-gpu.jpg").stat().st_size > 0


def test_the_step_profile_reports_each_box_count(tmp_path: Path) -> None:
    args = ["gpu", "--out", str(tmp_path), "--imgsz", "64", "--batches", "2", "--boxes", "4", "40"]
    rows = _run("train_profile.py", *args, "--modes", "nondeterministic", "--steps", "1", "--warmup", "1")
    steps = rows[-1]["steps"]
    assert isinstance(steps, list)
    assert [(s["batch"], s["boxes_per_image"], s["mode"]) for s in steps] == [
        (2, 4, "nondeterministic"),
        (2, 40, "nondeterministic"),
    ]
    assert all(s["step_ms"] > 0 for s in steps)
