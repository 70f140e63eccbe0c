"""The training step without host waits (yolo_workloads/train/host_waits.py) on a real NVIDIA GPU: the loss items
really cross to the host asynchronously, and a real training writes the epoch losses Ultralytics' own step writes.
Skipped with a reason where no GPU is visible."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.gpu


def test_a_gpu_training_without_waits_writes_ultralytics_epoch_losses(tmp_path: Path) -> None:
    from train_pair import train_twice
    from yolo_workloads.datasets.shapes import ensure_shapes

    data = ensure_shapes(tmp_path / "shapes", n=48, imgsz=256, val=8, seed=0)
    own, late, trainer = train_twice(data, tmp_path, "0", 256)
    assert trainer.model.loss.padding.calls_with_rows == 12  # 48 images / batch 8, two epochs
    for a, b in zip(own, late, strict=True):
        for key in ("train/box_loss", "train/cls_loss", "train/dfl_loss"):
            assert float(b[key]) == pytest.approx(float(a[key]), rel=2e-3), key


@pytest.mark.usefixtures("static_lists_on")
def test_a_crowded_gpu_training_with_grouped_assignment_writes_ultralytics_epoch_losses(tmp_path: Path) -> None:
    """On CUDA the step's assigner runs on groups of the crowded set's images (train/grouped_assigner.py, its
    indices copied from pinned memory) and the loss's lists are sized on the host (train/static_lists.py, switched
    on): the epoch losses are those of Ultralytics' own step."""
    from train_pair import train_twice
    from yolo_workloads.datasets.shapes import ensure_shapes

    data = ensure_shapes(tmp_path / "crowded", n=48, imgsz=256, val=8, seed=0, variant="crowded")
    own, late, trainer = train_twice(data, tmp_path, "0", 256)
    assert trainer.model.loss.assigner.grouped_calls > 0
    lists = trainer.model.loss.lists  # the loss's lists in buffers sized on the host (train/static_lists.py)
    assert lists.metrics.static_calls > 0 and lists.foreground.static_calls > 0 and not lists.overflow.found
    for a, b in zip(own, late, strict=True):
        for key in ("train/box_loss", "train/cls_loss", "train/dfl_loss"):
            assert float(b[key]) == pytest.approx(float(a[key]), rel=2e-3), key


def test_loss_items_are_read_from_pinned_memory_after_their_event() -> None:
    import torch
    from yolo_workloads.train.host_waits import LateLossItems

    late = LateLossItems()
    values = [torch.tensor([float(i), 2.0 * i, 1.0], device="cuda") for i in range(1, 4)]
    shown = [late.push({"a": v[0], "b": v[1], "c": v[2]}) for v in values]
    assert late.pending is not None and late.pending[1].is_pinned()
    assert [s["a"] for s in shown] == [1.0, 1.0, 2.0]
    assert late.epoch_means() == {"a": 2.0, "b": 4.0, "c": 1.0}
    assert late.last["a"].is_cuda


def test_a_step_with_kept_anchors_waits_for_nothing_in_them() -> None:
    """Ultralytics' `make_anchors` copies from the host (arange, the model's CUDA stride tensor): with CUDA's sync
    debug mode set to error, its call raises; the kept anchors' second call (a later step) does not, and gives its
    tensors on the GPU."""
    import torch
    from ultralytics.utils.tal import make_anchors
    from yolo_workloads.train.kept_anchors import KeptAnchors

    feats = [torch.zeros(2, 8, s, s, device="cuda", dtype=torch.float16) for s in (80, 40, 20)]
    strides = torch.tensor([8.0, 16.0, 32.0], device="cuda")
    kept = KeptAnchors(make_anchors)
    first = kept(feats, strides, 0.5)
    torch.cuda.set_sync_debug_mode("error")
    try:
        with pytest.raises(RuntimeError, match="synchroniz"):
            make_anchors(feats, strides, 0.5)
        again = kept(feats, strides, 0.5)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert again[0] is first[0] and again[0].is_cuda and again[1].is_cuda


def _host_waits(run: Callable[[], object]) -> list[str]:
    """Where `run` made the host wait for the GPU: the Python line of each synchronisation CUDA's sync debug mode
    reports (all of them, not only the first, so a failure names every one)."""
    import torch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return [f"{w.filename}:{w.lineno}" for w in caught if "synchroniz" in str(w.message)]


def test_the_loss_s_host_values_reach_the_gpu_without_a_wait() -> None:
    """The image size as Ultralytics' loss makes it (`torch.tensor(shape, device=...) * stride`, then indexed by a
    list) and the assigner's floor: through `pinned_copies.tensor` no wait under CUDA's sync debug mode set to error,
    the same values; through torch's own, a wait (the check sees one)."""
    import torch
    from yolo_workloads.train.pinned_copies import HostValues, tensor

    stride = torch.tensor([8.0, 16.0, 32.0], device="cuda")
    shape = torch.Size((80, 60))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        imgsz = tensor(shape, device=stride.device, dtype=torch.float16) * stride[0]
        whwh = imgsz[[1, 0, 1, 0]]
        floor = tensor(8.0, dtype=torch.float32, device=stride.device)
        with pytest.raises(RuntimeError, match="synchroniz"):
            torch.tensor(shape, device=stride.device, dtype=torch.float16)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert isinstance(imgsz, HostValues) and imgsz.dtype == torch.float16 and imgsz.is_cuda
    assert whwh.tolist() == [480.0, 640.0, 480.0, 640.0] and floor.item() == 8.0


@pytest.mark.usefixtures("static_lists_on")
@pytest.mark.parametrize("deterministic", [False, True])
def test_a_crowded_loss_with_static_lists_waits_for_nothing(
    deterministic: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The detection loss and its backward on a crowded CUDA batch, as training runs it (deterministic algorithms
    off, `yolo-workload train`'s default) and as Ultralytics' default has it (on): with the host's counts and sides
    (train/static_lists.py) and its small host tensors pinned (train/pinned_copies.py) the loss makes the host wait
    for nothing and is Ultralytics' own within float rounding; Ultralytics' own lists do make it wait (the check sees
    waits where there are some)."""
    import numpy as np
    import torch
    from assigner_cases import CROWDED, crowded_batch, detection_model
    from yolo_workloads.train import kept_anchors, pinned_copies
    from yolo_workloads.train.host_waits import BOX_SIDES, BOXES_PER_IMAGE, MAX_BOXES, NoWaitLoss, count_labels

    model = detection_model("cuda")
    per_image = CROWDED * 4
    host = crowded_batch(per_image, 256, (0.01, 0.21))
    batch: dict[str, Any] = {k: v.cuda() for k, v in host.items()}
    index, wh = host["batch_idx"], host["bboxes"][:, 2:]
    count_labels(batch, index.numpy(), len(per_image), wh.numpy())
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    kept_anchors.install()  # as training installs them: the kept call reads nothing from the host
    monkeypatch.setattr(pinned_copies, "ENABLED", True)  # on by default; whatever an earlier test set
    assert pinned_copies.install()  # and the loss's small host tensors copied without a wait
    try:
        preds = model(batch["img"])
        model.criterion = model.init_criterion()  # what Ultralytics' first `model.loss` makes, and training has
        own, _ = model.criterion(preds, batch)  # the anchors kept for the same shapes
        step = NoWaitLoss(model)
        steps = step.lists
        assert steps is not None and step.padding is not None and step.assigner is not None
        steps.set_for(batch[BOXES_PER_IMAGE], batch[BOX_SIDES] * 256, (256, 256))  # what the step sets from the batch
        step.padding.rows, step.assigner.counts = batch[MAX_BOXES], batch[BOXES_PER_IMAGE]
        torch.cuda.synchronize()
        losses: list[torch.Tensor] = []

        def loss_and_backward() -> None:
            losses.append(model.criterion(preds, batch)[0])
            losses[0].sum().backward()

        waits = _host_waits(loss_and_backward)
        steps.clear()
        own_waits = _host_waits(lambda: model.criterion(preds, batch))  # Ultralytics' own lists
    finally:
        torch.use_deterministic_algorithms(False)
        pinned_copies.uninstall()
    assert waits == [], waits
    assert own_waits, "Ultralytics' own lists made no wait: the check would not see one"
    assert steps.metrics.static_calls >= 1 and steps.foreground.static_calls == 1
    assert steps.normalisation is not None and steps.normalisation.pair_calls >= 1  # normalised over the pairs
    assert steps.normalisation.choice_calls == steps.normalisation.pair_calls  # and chosen over them
    assert not steps.overflow.read()
    assert np.isfinite(float(losses[0].sum()))
    torch.testing.assert_close(losses[0], own, rtol=1e-4, atol=1e-4)


def test_the_gpu_paths_loader_plans_ahead_without_a_pin_memory_thread(tmp_path: Path) -> None:
    """Training images kept on the GPU: the GPU path's training loader is built without Ultralytics' pin-memory
    thread (its batches carry labels only) and hands batches with their augmentation planned."""
    from ultralytics.utils import DEFAULT_CFG_DICT
    from yolo_workloads.datasets.shapes import ensure_shapes
    from yolo_workloads.train import load_ahead
    from yolo_workloads.train.gpu_augment import Plan
    from yolo_workloads.train.trainer import trainer_class

    data = ensure_shapes(tmp_path / "shapes", n=16, imgsz=128, val=4, seed=0)
    overrides = {"model": "yolov8n.yaml", "data": str(data), "imgsz": 128, "batch": 8, "workers": 2, "cache": "ram",
                 "device": "0", "plots": False, "save_dir": str(tmp_path / "run")}  # fmt: skip
    trainer = trainer_class("detect", "gpu")(cfg={**DEFAULT_CFG_DICT, **overrides}, overrides=overrides)
    trainer.model = trainer.get_model(cfg="yolov8n.yaml", verbose=False)
    loader = trainer.get_dataloader(trainer.data["train"], 8, -1, "train")
    assert isinstance(loader, load_ahead.LoadAhead) and loader.loader.pin_memory is False
    batches = iter(loader)
    batch = next(batches)
    batches.close()  # the epoch left: its thread stops (and the process's exit waits for any still running)
    assert batch["img"].numel() == 0 and isinstance(batch[load_ahead.PLANNED], Plan)
    val = trainer.get_dataloader(trainer.data["val"], 8, -1, "val")
    assert val.pin_memory is True  # the validation loader's batches carry pixels: pinned as before
