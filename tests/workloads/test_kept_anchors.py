"""The losses' anchor points kept from one step to the next (yolo_workloads/train/kept_anchors.py), on the CPU: the
same tensors Ultralytics' `make_anchors` makes, made once for each shape; tests/gpu/test_gpu_host_waits.py checks on
a GPU that a kept step's call waits for nothing."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.workloads


def _feats(sizes: list[tuple[int, int]], dtype: Any = None) -> list[Any]:
    import torch

    return [torch.zeros(2, 8, h, w, dtype=dtype or torch.float32) for h, w in sizes]


def test_kept_anchors_are_ultralytics_own_and_made_once_a_shape() -> None:
    import torch
    from ultralytics.utils.tal import make_anchors
    from yolo_workloads.train.kept_anchors import KeptAnchors

    calls: list[int] = []

    def counted(*args: Any) -> Any:
        calls.append(1)
        return make_anchors(*args)

    kept = KeptAnchors(counted)
    strides = torch.tensor([8.0, 16.0, 32.0])
    for sizes, dtype in [([(80, 80), (40, 40), (20, 20)], torch.float32), ([(48, 64), (24, 32), (12, 16)], None),
                         ([(80, 80), (40, 40), (20, 20)], torch.float16)]:  # fmt: skip
        feats = _feats(sizes, dtype)
        points, stride_of = kept(feats, strides, 0.5)
        own_points, own_strides = make_anchors(feats, strides, 0.5)
        assert torch.equal(points, own_points) and torch.equal(stride_of, own_strides)
        assert points.dtype == own_points.dtype and stride_of.dtype == own_strides.dtype
        again = kept(_feats(sizes, dtype), strides, 0.5)
        assert again[0] is points and again[1] is stride_of  # the next step: kept, not rebuilt
    assert len(calls) == 3

    kept(_feats([(80, 80), (40, 40), (20, 20)]), torch.tensor([8.0, 16.0, 32.0]), 0.5)  # another stride tensor
    kept(_feats([(80, 80), (40, 40), (20, 20)]), strides, 0.0)  # another offset
    assert len(calls) == 5


def test_shapes_given_as_tensors_go_to_ultralytics_own_and_the_cache_is_bounded() -> None:
    import torch
    from yolo_workloads.train import kept_anchors
    from yolo_workloads.train.kept_anchors import KeptAnchors

    calls: list[Any] = []
    kept = KeptAnchors(lambda *args: calls.append(args) or (torch.zeros(1, 2), torch.ones(1, 1)))
    kept(torch.tensor([[8, 8], [4, 4]]), torch.tensor([8.0, 16.0]), 0.5)  # an export's call: never kept
    kept(torch.tensor([[8, 8], [4, 4]]), torch.tensor([8.0, 16.0]), 0.5)
    assert len(calls) == 2 and not kept.kept

    strides = torch.tensor([8.0])
    for side in range(1, kept_anchors.KEPT_AT_MOST + 3):
        kept(_feats([(side, side)]), strides, 0.5)
    assert len(kept.kept) <= kept_anchors.KEPT_AT_MOST


def test_installed_once_in_ultralytics_loss_module(monkeypatch: pytest.MonkeyPatch) -> None:
    from ultralytics.utils import loss
    from yolo_workloads.train import kept_anchors

    monkeypatch.setattr(loss, "make_anchors", loss.make_anchors)  # Ultralytics' own again after the test

    first = kept_anchors.install()
    assert loss.make_anchors is first and kept_anchors.install() is first
