"""The multi-GPU code path, as far as a machine without GPUs can check it (issue 11 runs it on real GPUs).

Tuning measures one rank and splits the pod's CPUs among the ranks; training hands Ultralytics a DDP device list.
"""

from __future__ import annotations

import pytest
from yolo_workloads.contract import IntRange, SearchSpace
from yolo_workloads.tune.space import make_bounds

pytestmark = pytest.mark.workloads


def _bounds(ranks: int, cpus: float) -> list[int]:
    bounds = make_bounds(
        SearchSpace(workers=IntRange(min=1, max=32)),
        n_train=4000,
        decoded_bytes=1 << 30,
        memory_budget=64 << 30,
        cpu_budget=cpus,
        ranks=ranks,
        on_gpu=True,
        memory_probe=None,
        free_memory=None,
    )
    return list(bounds.workers)


@pytest.mark.parametrize(("ranks", "cpus", "most"), [(1, 16, 16), (2, 16, 8), (4, 16, 4), (8, 6, 1)])
def test_workers_per_rank_share_the_pods_cpus(ranks: int, cpus: float, most: int) -> None:
    workers = _bounds(ranks, cpus)
    assert max(workers) == most
    assert max(workers) * ranks <= max(cpus, ranks)


def test_ddp_device_string_and_a_clear_error_without_enough_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from yolo_workloads.train.runtime import UserError, device_string

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert device_string(1) == "0"
    assert device_string(4) == "0,1,2,3"
    with pytest.raises(UserError, match="gpus: 8 requested but only 4 visible"):
        device_string(8)
    assert device_string(0) == "cpu"
