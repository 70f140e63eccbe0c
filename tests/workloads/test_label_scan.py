"""A data set's first label scan in forked processes (train/label_scan.py): our trainer's scan writes the label cache
Ultralytics' own threads write (labels, counts, messages, hash), bad images and labels included; the work happens in
other processes; a worker that dies leaves the rest to this process; every other use of the pool stays threads.
Real Ultralytics datasets and trainer on generated images."""

from __future__ import annotations

import os
from multiprocessing.pool import ThreadPool
from pathlib import Path

import numpy as np
import pytest
from odd_size_sets import write_odd_sizes
from yolo_workloads.train import label_scan

pytestmark = pytest.mark.workloads

SIZES = [(64, 64), (48, 64), (64, 40)] * 8
"""24 images a split: enough for several processes once IMAGES_PER_PROCESS is lowered."""
_PARENT = os.getpid()


def _labels(i: int, rng: np.random.Generator) -> list[str]:
    if i == 5:
        return ["7 0.5 0.5 0.2 0.2"]  # a class the data set does not have: a corrupt label
    if i == 6:
        return ["0 0.5 0.5 0.2 0.2", "0 0.5 0.5 0.2 0.2"]  # a duplicate row, removed with a message
    if i == 8:
        return ["1 0.1 0.1 0.4 0.1 0.4 0.5 0.1 0.5"]  # a polygon: a segment's box
    if i == 9:
        return ["0 0.5 0.5 1.4 0.2"]  # out of bounds: corrupt
    return [f"{i % 2} {rng.uniform(0.2, 0.8):.4f} {rng.uniform(0.2, 0.8):.4f} 0.2 0.3"]


@pytest.fixture(scope="module")
def data_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = write_odd_sizes(tmp_path_factory.mktemp("label-scan"), SIZES, 11, _labels)
    train = path.parent / "images" / "train"
    (path.parent / "labels" / "train" / "3.txt").unlink()  # a missing label: a background image
    (path.parent / "labels" / "train" / "4.txt").write_text("")  # an empty label
    (train / "7.png").write_bytes(b"not an image")  # a corrupt image
    return path


@pytest.mark.parametrize(("per_process", "processes"), [(4, 3), (1000, 1)])
def test_our_trainers_scan_writes_ultralytics_own_label_cache(
    data_yaml: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, per_process: int, processes: int
) -> None:
    from label_scan_cases import compare_both_splits, detection_trainer, scanned
    from ultralytics.data import dataset

    trainer = detection_trainer(data_yaml, tmp_path / "run", "cpu")
    scans = compare_both_splits(trainer, monkeypatch, per_process, budget=3.0)
    assert scans == [processes, processes]  # each split by three processes (the budget), or a small set by this one
    assert scanned(trainer, "train", ultralytics_own=True)["results"] == (22, 1, 1, 3, 24)  # the odd cases were seen:
    # found, missing, empty, corrupt, total
    assert dataset.ThreadPool is ThreadPool  # Ultralytics' pool back once the data set is built


def _pid(item: int) -> int:
    return os.getpid()


def _dies_in_a_worker(item: int) -> int:
    if item == 5 and os.getpid() != _PARENT:
        os._exit(1)  # as a worker killed for memory
    return item * item


def test_scan_runs_in_other_processes_in_order() -> None:
    pids = list(label_scan.scan(_pid, list(range(40)), processes=2))
    assert len(pids) == 40 and _PARENT not in pids
    assert list(label_scan.scan(_dies_in_a_worker, list(range(40)), processes=1)) == [i * i for i in range(40)]
    assert set(label_scan.scan(_pid, list(range(3)), processes=1)) == {_PARENT}  # one process: this one


def test_a_worker_that_dies_or_a_fork_refused_leaves_the_rest_to_this_process(monkeypatch: pytest.MonkeyPatch) -> None:
    assert list(label_scan.scan(_dies_in_a_worker, list(range(40)), processes=2)) == [i * i for i in range(40)]

    def refused(*args: object, **kwargs: object) -> None:
        raise BlockingIOError(11, "Resource temporarily unavailable")  # fork() at a pod's process limit

    monkeypatch.setattr(label_scan, "ProcessPoolExecutor", refused)
    assert set(label_scan.scan(_pid, list(range(40)), processes=2)) == {_PARENT}


def test_other_uses_of_the_pool_stay_threads() -> None:
    from ultralytics.data import dataset

    with label_scan.in_processes(4), dataset.ThreadPool(2) as pool:  # the patched pool, as the classify fill uses it
        assert list(pool.imap(lambda x: x + 1, range(5))) == [1, 2, 3, 4, 5]  # a lambda: no process could take it
    assert dataset.ThreadPool is ThreadPool


def test_processes_follow_the_set_size_within_the_cpu_budget() -> None:
    per = label_scan.IMAGES_PER_PROCESS
    assert label_scan.processes_for(2 * per - 1, 16) == 1  # a small set: this process, no fork to pay
    assert label_scan.processes_for(2 * per, 16) == 2
    assert label_scan.processes_for(1000 * per, 16) == 16
    assert label_scan.processes_for(1000 * per, 2.5) == 2
    assert label_scan.processes_for(1000 * per, 0.5) == 1


def test_a_classify_sets_image_scan_in_processes_writes_ultralytics_own_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ultralytics.data.utils import load_dataset_cache_file
    from ultralytics.models.yolo.classify import ClassificationTrainer
    from ultralytics.utils import DEFAULT_CFG_DICT
    from yolo_workloads.datasets.shapes import ensure_shapes
    from yolo_workloads.train.trainer import trainer_class

    root = ensure_shapes(tmp_path / "shapes", n=24, imgsz=32, val=8, seed=0, task="classify").parent
    next((root / "train").rglob("*.*")).write_bytes(b"not an image")  # a corrupt one, reported by its message
    overrides = {"model": "yolov8n-cls.yaml", "data": str(root), "imgsz": 32, "epochs": 1, "batch": 4,
                 "workers": 0, "device": "cpu", "plots": False}  # fmt: skip
    trainer = trainer_class("classify")(
        cfg={**DEFAULT_CFG_DICT, "save_dir": str(tmp_path / "run")}, overrides=overrides
    )
    monkeypatch.setattr(label_scan, "IMAGES_PER_PROCESS", 4)
    monkeypatch.setattr("yolo_workloads.system.cpu_budget", lambda: 3.0)
    scans: list[int] = []
    scan = label_scan.scan
    monkeypatch.setattr(label_scan, "scan", lambda f, items, n: scans.append(n) or scan(f, items, n))
    caches = []
    for build in (ClassificationTrainer.build_dataset, type(trainer).build_dataset):
        (root / "train.cache").unlink(missing_ok=True)
        build(trainer, str(root / "train"), "train")
        caches.append(dict(load_dataset_cache_file(root / "train.cache")))
    theirs, ours = caches
    assert scans == [3]  # ours: three processes
    assert ours["results"] == theirs["results"] and ours["msgs"] == theirs["msgs"] and ours["hash"] == theirs["hash"]
    assert theirs["results"][:2] == (23, 1)  # found, corrupt
