"""Batch norm over groups of images (train/norm_groups.py) on a real NVIDIA GPU: in half precision, channels-last
and NCHW, each group normalised as a batch of its own; and a real `yolo-workload train` at batch 32 with groups of
16 under CUDA graphs. Skipped with a reason where no GPU is visible."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("channels_last", [True, False])
def test_each_group_is_normalised_as_a_batch_of_its_own_in_half_precision(channels_last: bool) -> None:
    import torch
    from torch import nn
    from yolo_workloads.train.norm_groups import group_batch_norms

    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16, eps=1e-3, momentum=0.03)).cuda()
    grouped = nn.Sequential(nn.Conv2d(3, 16, 3), nn.BatchNorm2d(16, eps=1e-3, momentum=0.03)).cuda()
    grouped.load_state_dict(plain.state_dict())
    group_batch_norms(grouped, 16)
    x = torch.randn(64, 3, 66, 66, device="cuda") * 2 + 1
    if channels_last:
        plain, grouped = plain.to(memory_format=torch.channels_last), grouped.to(memory_format=torch.channels_last)
        x = x.to(memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=torch.float16):
        got = grouped(x)
        expected = torch.empty_like(got)
        for r in range(4):  # image i is in group i % 4
            expected[r::4] = plain(x[r::4])
    assert got.dtype == torch.float16
    assert got.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    torch.testing.assert_close(got.float(), expected.float(), atol=2e-2, rtol=1e-2)


def test_training_at_batch_32_normalises_in_groups_of_16_under_cuda_graphs(tmp_path: Path, train_verb: Any) -> None:
    from yolo_workloads.datasets.shapes import ensure_shapes

    data = ensure_shapes(tmp_path / "shapes", n=64, imgsz=256, val=16, seed=0)
    proc = train_verb(
        {
            "model": {"architecture": "yolov8n.yaml"}, "data": {"yaml": str(data)},
            "imgsz": 256, "epochs": 2, "batch": 32, "workers": 2, "norm_batch": 16,
            "extra_args": {"plots": False},
        }
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "batch norm over groups of 16 images" in proc.stderr, proc.stderr[-3000:]
    assert "captured as CUDA graphs" in proc.stderr, proc.stderr[-3000:]
    assert (tmp_path / "run" / "weights" / "best.pt").read_bytes().count(b"norm_groups") == 0
