"""`yolo-workload bench` on the CPU: a table and JSON with one point per mode and batch size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.workloads


def test_bench_writes_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from yolo_workloads.cli import main

    out = tmp_path / "bench.json"
    argv = [
        "bench",
        "--architecture",
        "yolov8n.yaml",
        "--device",
        "cpu",
        "--imgsz",
        "64",
        "--batch-sizes",
        "1,2",
        "--modes",
        "forward,pipeline",
        "--seconds",
        "0.2",
        "--warmup",
        "1",
        "--image-size",
        "48x64",
        "--json",
        str(out),
    ]
    assert main(argv) == 0
    doc = json.loads(out.read_text())
    points = doc["points"]
    assert [(p["mode"], p["batch"]) for p in points] == [
        ("forward", 1),
        ("forward", 2),
        ("pipeline", 1),
        ("pipeline", 2),
    ]
    for p in points:
        assert p["images_per_second"] > 0 and p["p50_ms"] <= p["p99_ms"] and p["iterations"] >= 3
        assert p["peak_memory_bytes"] is None  # CPU
    table = capsys.readouterr().out
    assert "images/s" in table and "pipeline" in table


def test_bench_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    from yolo_workloads.cli import main

    with pytest.raises(SystemExit):
        main(["bench", "--architecture", "yolov8n.yaml", "--batch-sizes", "0,x"])
    assert "expected comma-separated integers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["bench", "--architecture", "yolov8n.yaml", "--modes", "train"])
    assert "modes must be among" in capsys.readouterr().err
