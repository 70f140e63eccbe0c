"""The losses' small host tensors copied without a wait (yolo_workloads/train/pinned_copies.py), on the CPU: torch's
own tensors where the device is not a GPU, a list index taken as torch takes it, the loss's values unchanged once
installed; tests/gpu/test_gpu_host_waits.py checks on a GPU that the copies wait for nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.workloads


@pytest.fixture
def restored() -> Iterator[None]:
    """Ultralytics' modules with their own `torch` before the test (a training earlier in this process installs the
    copies, on by default, for the process's life) and again after it."""
    from yolo_workloads.train import pinned_copies

    pinned_copies.uninstall()
    yield
    pinned_copies.uninstall()


def test_off_a_gpu_tensor_is_torchs_own() -> None:
    import torch
    from yolo_workloads.train.pinned_copies import HostValues, tensor

    made = tensor(torch.Size((80, 60)), device="cpu", dtype=torch.float16)
    assert type(made) is torch.Tensor and made.dtype == torch.float16 and made.tolist() == [80.0, 60.0]
    assert type(tensor([1.0, 2.0])) is torch.Tensor  # no device: torch's own
    nested = tensor([[1, 2], [3, 4]], device="cpu")
    assert type(nested) is torch.Tensor and not isinstance(nested, HostValues)


def test_host_values_take_a_list_index_as_torch_does_and_stay_small(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from yolo_workloads.train import pinned_copies
    from yolo_workloads.train.pinned_copies import SMALL, HostValues

    own_to_device, indices = pinned_copies._to_device, []

    def counted(data: Any, dtype: Any, device: Any) -> Any:
        indices.append(data)
        return own_to_device(data, dtype, device)

    monkeypatch.setattr(pinned_copies, "_to_device", counted)
    size = torch.tensor([80.0, 60.0]).as_subclass(HostValues) * torch.tensor(8.0)
    assert isinstance(size, HostValues)  # computed from host values, small: indexed without a wait too
    whwh = size[[1, 0, 1, 0]]
    assert isinstance(whwh, HostValues) and whwh.tolist() == [480.0, 640.0, 480.0, 640.0]
    assert indices == [[1, 0, 1, 0]]  # the list made a tensor by the module's copy, not torch's
    assert float(size[1]) == 480.0 and size[:1].tolist() == [640.0]
    large = torch.ones(SMALL + 1) * size[0]
    assert type(large) is torch.Tensor  # the loss's own tensors stay plain
    with_grad = torch.ones(2, requires_grad=True) * size
    assert type(with_grad) is torch.Tensor and with_grad.requires_grad


def test_installed_the_loss_is_ultralytics_own(restored: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The detection loss and its assigner through the replaced modules' `torch`, its host values made as
    `HostValues` (the CPU taken for a GPU here): the same values, element for element, and every other attribute
    torch's own."""
    import torch
    from assigner_cases import crowded_batch, detection_model
    from ultralytics.utils import loss, tal
    from yolo_workloads.train import pinned_copies

    monkeypatch.setattr(pinned_copies, "ENABLED", True)
    monkeypatch.setattr(pinned_copies, "DEVICE_TYPES", frozenset({"cuda", "cpu"}))
    own_tensor, made = pinned_copies.tensor, []

    def counted(*args: Any, **kwargs: Any) -> Any:
        made.append(type(out := own_tensor(*args, **kwargs)))
        return out

    monkeypatch.setattr(pinned_copies, "tensor", counted)
    model = detection_model()
    batch = crowded_batch([0, 3, 40, 5], 128, (0.02, 0.3))
    preds = model(batch["img"])
    model.criterion = model.init_criterion()
    own, own_items = model.criterion(preds, batch)

    assert pinned_copies.install() and pinned_copies.install()
    assert isinstance(loss.torch, pinned_copies.TorchWithPinnedCopies) and isinstance(tal.torch, type(loss.torch))
    assert (
        loss.torch.zeros is torch.zeros and loss.torch.Tensor is torch.Tensor and loss.torch.tensor is not torch.tensor
    )
    got, got_items = model.criterion(preds, batch)
    torch.testing.assert_close(got, own, rtol=0, atol=0)
    torch.testing.assert_close(got_items, own_items, rtol=0, atol=0)
    assert made.count(pinned_copies.HostValues) >= 2  # the image size and the assigner's floor at least

    pinned_copies.uninstall()
    assert loss.torch is torch and tal.torch is torch


def test_switched_off_the_modules_keep_their_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from ultralytics.utils import loss
    from yolo_workloads.train import pinned_copies

    pinned_copies.uninstall()  # an earlier test in this process may have installed them
    monkeypatch.setattr(pinned_copies, "ENABLED", False)
    assert not pinned_copies.install() and loss.torch is torch
