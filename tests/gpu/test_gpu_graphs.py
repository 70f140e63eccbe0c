"""CUDA graphs in training (yolo_workloads/train/graphs.py) on a real NVIDIA GPU: the graphed forward computes what
the eager one does, backward included; the capture leaves BatchNorm's statistics where they were; a real
`yolo-workload train` captures once and replays every full batch. Skipped with a reason where no GPU is visible."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.gpu


def _model(seed: int) -> Any:
    import torch
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(seed)
    model = DetectionModel("yolov8n.yaml", nc=3, verbose=False).cuda().train()
    model.args = __import__("ultralytics.cfg", fromlist=["get_cfg"]).get_cfg()  # the criterion's hyperparameters
    return model


def _batch(n: int, seed: int) -> dict[str, Any]:
    import torch

    g = torch.Generator().manual_seed(seed)
    img = torch.rand(n, 3, 256, 256, generator=g)
    boxes = torch.rand(2 * n, 4, generator=g) * 0.4 + 0.3
    return {
        "img": img.cuda(),
        "batch_idx": torch.arange(n).repeat_interleave(2).float().cuda(),  # sorted, as Ultralytics' collate
        "cls": torch.randint(0, 3, (2 * n, 1), generator=g).float().cuda(),
        "bboxes": boxes.cuda(),
    }


def test_the_graphed_forward_and_backward_equal_the_eager_ones_gradients_accumulated() -> None:
    """Two optimizer steps of three accumulated batches each, as Ultralytics steps once every nbs / batch batches:
    the graphed model's losses, accumulated gradients and BatchNorm statistics are the eager model's."""
    import torch
    from yolo_workloads.train import graphs

    eager, graphed = _model(0), _model(0)
    graphed.loss = graphs.GraphedLoss(graphed, amp=True)
    opt_e = torch.optim.SGD(eager.parameters(), lr=0.01)
    opt_g = torch.optim.SGD(graphed.parameters(), lr=0.01)
    graphs._zero_without_freeing(opt_g)
    for step in range(2):
        for opt in (opt_e, opt_g):
            opt.zero_grad()
        for micro in range(3):  # capture on the very first batch, replays after (new data each time)
            batch = _batch(4, seed=10 * step + micro)
            losses = []
            for model in (eager, graphed):
                with torch.autocast("cuda", dtype=torch.float16):
                    loss, _ = model.loss(batch)
                loss.sum().backward()
                losses.append(loss.detach())
            torch.testing.assert_close(losses[1], losses[0], rtol=1e-3, atol=1e-3)
        for (name, p), q in zip(eager.named_parameters(), graphed.parameters(), strict=True):
            if p.grad is not None:
                torch.testing.assert_close(q.grad, p.grad, rtol=2e-2, atol=2e-3, msg=f"step {step}: {name}")
        for (name, b), c in zip(eager.named_buffers(), graphed.buffers(), strict=True):
            torch.testing.assert_close(c, b, rtol=1e-3, atol=1e-4, msg=f"step {step}: {name}")
        opt_e.step()
        opt_g.step()
    assert graphed.loss.failed is None and graphed.loss.replays == 6


def test_the_capture_survives_a_loader_pinning_memory_meanwhile() -> None:
    """The training loader's pin-memory thread allocates pinned memory all along; a capture in CUDA's global mode
    failed whenever it did so mid-capture (batch 64, 16 workers: every time on the H200)."""
    import threading

    import torch
    from yolo_workloads.train.graphs import GraphedLoss

    stop = threading.Event()

    def pin() -> None:  # new sizes each time: fresh cudaHostAlloc calls, not the caching allocator's reuse
        size = 1 << 16
        while not stop.is_set():
            torch.empty(size, dtype=torch.uint8).pin_memory()
            size = size + 4096 if size < 1 << 26 else 1 << 16

    thread = threading.Thread(target=pin, daemon=True)
    thread.start()
    try:
        model = _model(2)
        model.loss = GraphedLoss(model, amp=True)
        with torch.autocast("cuda", dtype=torch.float16):
            model.loss(_batch(8, seed=0))[0].sum().backward()
    finally:
        stop.set()
        thread.join()
    assert model.loss.failed is None and model.loss.replays == 1


def test_a_batch_of_another_shape_runs_eagerly() -> None:
    import torch
    from yolo_workloads.train.graphs import GraphedLoss

    model = _model(1)
    model.loss = GraphedLoss(model, amp=False)
    with torch.autocast("cuda", enabled=False):
        model.loss(_batch(4, seed=0))[0].sum().backward()
        model.loss(_batch(3, seed=1))[0].sum().backward()  # a data set's last, shorter batch
    assert model.loss.replays == 1


def test_training_captures_once_and_replays_every_full_batch(tmp_path: Path, train_verb: Any) -> None:
    """The real verb on a small shapes set: the log says the graphs were captured; training ends with metrics."""
    from yolo_workloads.datasets.shapes import ensure_shapes

    data = ensure_shapes(tmp_path / "shapes", n=64, imgsz=256, val=16, seed=0)
    proc = train_verb(
        {
            "model": {"architecture": "yolov8n.yaml"}, "data": {"yaml": str(data)},
            "imgsz": 256, "epochs": 2, "batch": 16, "workers": 2,
            "extra_args": {"plots": False},  # plots need polars, which the workload image leaves out
        }
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "captured as CUDA graphs" in proc.stderr, proc.stderr[-3000:]
    assert "CUDA graphs not used" not in proc.stderr
    assert "loss values read a step late" in proc.stderr  # train/host_waits.py comes with the graphs
    assert (tmp_path / "run" / "weights" / "best.pt").exists()
