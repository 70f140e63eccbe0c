"""GPU tests run only where an NVIDIA GPU is visible; elsewhere each is skipped with the reason, never silently."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def _cuda_reason() -> str | None:
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed"
    if not torch.cuda.is_available():
        return "no NVIDIA GPU visible to PyTorch (these tests run on the lent GPU machine, an H200 lately: see docs/benchmarks.md)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _cuda_reason()
    if reason is None:
        return
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(pytest.mark.skip(reason=f"gpu suite skipped: {reason}"))


@pytest.fixture
def train_verb(tmp_path: Path) -> Callable[[dict[str, Any]], subprocess.CompletedProcess[str]]:
    """Runs `yolo-workload train` on a config (its output and termination log under tmp_path): the real verb."""

    def run(config: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "train.json"
        full = {"output_dir": str(tmp_path / "run"), "termination_log": str(tmp_path / "term"), **config}
        path.write_text(json.dumps({"metrics_port": None, **full}))
        return subprocess.run(
            [sys.executable, "-m", "yolo_workloads.cli", "train", "--config", str(path)],
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip

    return run
