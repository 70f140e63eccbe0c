"""Batch norm over groups of images (train/norm_groups.py): each group normalised as a batch of its own, running
statistics as that many batches would leave them, copies and checkpoints plain, and a real Ultralytics training
that groups only the model it trains."""

from __future__ import annotations

import copy
import io
from pathlib import Path

import pytest
import torch
from torch import nn
from yolo_workloads.train.norm_groups import (
    GroupedBatchNorm2d,
    group_batch_norms,
    install_when_usable,
    why_not,
)

pytestmark = pytest.mark.workloads


def _layer() -> nn.Sequential:
    torch.manual_seed(0)
    layer = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8, eps=1e-3, momentum=0.03))
    with torch.no_grad():  # not the identity: weight, bias and running statistics all matter
        layer[1].weight.uniform_(0.5, 1.5)
        layer[1].bias.uniform_(-0.5, 0.5)
        layer[1].running_mean.uniform_(-0.2, 0.2)
        layer[1].running_var.uniform_(0.8, 1.2)
    return layer


def test_each_group_is_normalised_as_a_batch_of_its_own_forward_and_backward() -> None:
    plain, grouped = _layer(), _layer()
    assert group_batch_norms(grouped, 4) == 1
    x = torch.randn(16, 3, 12, 12) * 3 + 1
    x_plain, x_grouped = x.clone().requires_grad_(), x.clone().requires_grad_()
    target = torch.randn(16, 8, 10, 10)
    expected = torch.empty(16, 8, 10, 10)
    for r in range(4):  # image i is in group i % 4
        expected[r::4] = plain(x_plain[r::4])
    got = grouped(x_grouped)
    torch.testing.assert_close(got, expected)
    ((expected - target) ** 2).sum().backward()
    ((got - target) ** 2).sum().backward()
    torch.testing.assert_close(x_grouped.grad, x_plain.grad, atol=1e-3, rtol=1e-4)  # summed in another order
    torch.testing.assert_close(grouped[1].weight.grad, plain[1].weight.grad, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(grouped[0].weight.grad, plain[0].weight.grad, atol=1e-3, rtol=1e-4)
    # and not what the whole batch gives: the test would pass on a layer that ignored the groups otherwise
    whole = _layer()
    assert (whole(x) - got).abs().max() > 1e-2


def test_running_statistics_move_as_the_groups_in_turn_would() -> None:
    sequential, grouped = _layer(), _layer()
    group_batch_norms(grouped, 4)
    before = grouped[1].running_mean.clone(), grouped[1].running_var.clone()
    x = torch.randn(16, 3, 12, 12) * 2 + 0.5
    with torch.no_grad():
        for r in range(4):
            sequential(x[r::4])
        features = grouped[0](x).view(4, 4, 8, 10, 10)  # (image // 4, group, channel, h, w)
        grouped(x)
    m = 1 - (1 - 0.03) ** 4
    means = features.mean(dim=(0, 3, 4))
    variances = features.var(dim=(0, 3, 4), unbiased=True)
    torch.testing.assert_close(grouped[1].running_mean, (1 - m) * before[0] + m * means.mean(0))
    torch.testing.assert_close(grouped[1].running_var, (1 - m) * before[1] + m * variances.mean(0))
    # the same weight on the past as four updates in turn; the groups weighted alike instead of by age
    torch.testing.assert_close(grouped[1].running_mean, sequential[1].running_mean, atol=2e-3, rtol=0)
    torch.testing.assert_close(grouped[1].running_var, sequential[1].running_var, atol=2e-2, rtol=0)
    assert int(grouped[1].num_batches_tracked) == 1


@pytest.mark.parametrize("batch", [4, 10])
def test_one_group_an_uneven_batch_and_evaluation_normalise_as_before(batch: int) -> None:
    plain, grouped = _layer(), _layer()
    group_batch_norms(grouped, 4)
    x = torch.randn(batch, 3, 12, 12)
    torch.testing.assert_close(grouped(x), plain(x))
    torch.testing.assert_close(grouped[1].running_mean, plain[1].running_mean)
    plain.eval()
    grouped.eval()
    x = torch.randn(16, 3, 12, 12)
    torch.testing.assert_close(grouped(x), plain(x))


def test_a_channels_last_batch_normalises_alike_and_keeps_its_memory_format() -> None:
    nchw, nhwc = _layer(), _layer().to(memory_format=torch.channels_last)
    group_batch_norms(nchw, 4)
    group_batch_norms(nhwc, 4)
    x = torch.randn(8, 3, 12, 12)
    x_nhwc = x.to(memory_format=torch.channels_last).requires_grad_()
    x_nchw = x.clone().requires_grad_()
    out, expected = nhwc(x_nhwc), nchw(x_nchw)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(nhwc[1].running_var, nchw[1].running_var)
    target = torch.randn(8, 8, 10, 10)
    ((out - target) ** 2).sum().backward()
    ((expected - target) ** 2).sum().backward()
    torch.testing.assert_close(x_nhwc.grad, x_nchw.grad, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(nhwc[1].weight.grad, nchw[1].weight.grad, atol=1e-3, rtol=1e-4)


def test_copies_and_pickles_are_plain_batch_norms() -> None:
    grouped = _layer()
    group_batch_norms(grouped, 4)
    copied = copy.deepcopy(grouped)
    assert type(copied[1]) is nn.BatchNorm2d and "group" not in vars(copied[1])
    torch.testing.assert_close(copied[1].running_var, grouped[1].running_var)
    buffer = io.BytesIO()
    torch.save(grouped, buffer)
    assert b"norm_groups" not in buffer.getvalue()  # loads where this package is not installed
    buffer.seek(0)
    assert type(torch.load(buffer, weights_only=False)[1]) is nn.BatchNorm2d
    assert isinstance(grouped[1], GroupedBatchNorm2d)  # the trained model itself keeps grouping


@pytest.mark.parametrize(
    ("group", "batch", "gpus", "why"),
    [
        (16, 64, 1, None),
        (16, 16, 1, "no larger than the group"),
        (16, 40, 1, "no multiple of 16"),
        (16, 64, 2, "DDP"),
    ],
)
def test_where_groups_cannot_apply_the_reason_is_named(group: int, batch: int, gpus: int, why: str | None) -> None:
    reason = why_not(group, batch, gpus)
    assert reason == why if why is None else why in (reason or "")


def test_a_real_training_groups_the_trained_model_only_and_saves_plain_checkpoints(
    shapes_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ultralytics.utils import DEFAULT_CFG_DICT
    from yolo_workloads.train.trainer import trainer_class

    out = tmp_path / "run"
    overrides = {
        "model": "yolov8n.yaml", "data": str(shapes_data), "imgsz": 64, "epochs": 1, "batch": 8, "workers": 0,
        "device": "cpu", "seed": 0, "amp": False, "plots": False, "val": False,
        "project": str(tmp_path), "name": "run", "exist_ok": True, "save_dir": str(out),
    }  # fmt: skip
    trainer = trainer_class("detect")(cfg={**DEFAULT_CFG_DICT, "save_dir": str(out)}, overrides=overrides)
    assert install_when_usable(trainer, 4, 8, 1)
    assert trainer.args.channels_last is False  # NCHW, where the groups are views of the batch
    trainer.train()
    layers = [m for m in trainer.model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert layers and all(type(m) is GroupedBatchNorm2d and m.group == 4 for m in layers)
    assert all(type(m) is nn.BatchNorm2d for m in trainer.ema.ema.modules() if isinstance(m, nn.BatchNorm2d))
    assert int(layers[0].num_batches_tracked) == 3  # 24 images, batch 8: one update per batch
    saved = (out / "weights" / "last.pt").read_bytes()
    assert b"norm_groups" not in saved
    assert f"batch norm over groups of 4 images ({len(layers)} layers)" in capsys.readouterr().err


def test_a_batch_it_cannot_group_is_said_and_left_alone(capsys: pytest.CaptureFixture[str]) -> None:
    class Trainer:
        callbacks: dict[str, list[object]] = {}

        def add_callback(self, event: str, callback: object) -> None:
            self.callbacks.setdefault(event, []).append(callback)

    trainer = Trainer()
    assert not install_when_usable(trainer, 16, 24, 1)
    assert not install_when_usable(trainer, None, 64, 1)
    assert trainer.callbacks == {}
    assert "norm_batch 16 not applied: batch 24 is no multiple of 16" in capsys.readouterr().err


@pytest.mark.parametrize("chosen", [True, False])
def test_a_users_channels_last_is_kept_with_groups(chosen: bool, shapes_data: Path, tmp_path: Path) -> None:
    from ultralytics.utils import DEFAULT_CFG_DICT
    from yolo_workloads.train.trainer import trainer_class

    overrides = {
        "model": "yolov8n.yaml", "data": str(shapes_data), "imgsz": 64, "epochs": 1, "batch": 8, "device": "cpu",
        "channels_last": chosen, "project": str(tmp_path), "name": "run", "save_dir": str(tmp_path / "run"),
    }  # fmt: skip
    trainer = trainer_class("detect")(cfg={**DEFAULT_CFG_DICT, "save_dir": str(tmp_path / "run")}, overrides=overrides)
    assert install_when_usable(trainer, 4, 8, 1)
    assert trainer.args.channels_last is chosen
