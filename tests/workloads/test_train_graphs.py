"""CUDA graphs in training, the parts that need no GPU: when they are used, and that without a CUDA batch the
wrapped loss is Ultralytics' own. tests/gpu/test_gpu_graphs.py checks the capture itself on a GPU."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.workloads


def test_graphs_are_used_only_on_one_cuda_device(capsys: pytest.CaptureFixture[str]) -> None:
    import torch
    from yolo_workloads.train import graphs

    assert graphs.unusable("0,1", 2) == "several GPUs train in DDP processes"
    assert graphs.unusable("0", 2) == "several GPUs train in DDP processes"
    assert graphs.unusable("cpu", 0) == "device cpu"
    cuda = torch.cuda.is_available()
    assert graphs.unusable("0", 1) == (None if cuda else "no CUDA device")

    class Trainer:
        callbacks: list[str] = []

        def add_callback(self, event: str, fn: Any) -> None:
            self.callbacks.append(event)

    t = Trainer()
    assert graphs.install_when_usable(t, False, "0", 1) is False
    assert "CUDA graphs not used: turned off (cuda_graphs: false)" in capsys.readouterr().err
    assert graphs.install_when_usable(t, True, "cpu", 0) is False
    assert capsys.readouterr().err == "", "a CPU run says nothing about graphs"
    assert t.callbacks == []


def test_without_a_cuda_batch_the_loss_is_ultralytics_own() -> None:
    import torch
    from ultralytics.cfg import get_cfg
    from ultralytics.nn.tasks import DetectionModel
    from yolo_workloads.train.graphs import GraphedLoss

    torch.manual_seed(0)
    model = DetectionModel("yolov8n.yaml", nc=2, verbose=False).train()
    model.args = get_cfg()
    batch = {
        "img": torch.rand(2, 3, 64, 64),
        "batch_idx": torch.tensor([0.0, 1.0]),
        "cls": torch.tensor([[0.0], [1.0]]),
        "bboxes": torch.tensor([[0.5, 0.5, 0.3, 0.3], [0.4, 0.4, 0.2, 0.2]]),
    }
    expected = model.loss(batch)[0]
    model.loss = GraphedLoss(model, amp=False)
    got = model(batch)[0]  # the trainer's call: BaseModel.forward(dict) -> loss
    torch.testing.assert_close(got, expected)
    assert model.loss.graphed is None and model.loss.replays == 0 and model.loss.failed is None
