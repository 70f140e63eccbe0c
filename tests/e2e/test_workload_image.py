"""The workload image as a GPU node runs it, checked with the real Docker engine: Triton (in PyTorch's CUDA wheels)
builds a kernel's launcher with the system's C compiler and Python's headers on first use, so the image must carry
them, or the fused GPU augmentation (and torch.compile) would fail at the first batch. No GPU is needed to build the
launcher's kind of module: Triton's own build function compiles and the image's Python imports the result. And a
training's first label scan runs in forked processes inside the image's container (train/label_scan.py). And
matplotlib's font list ships in the image, usable by any UID, so no pod rebuilds it before its first plot."""

from __future__ import annotations

import pytest
from conftest import E2E, WORKLOAD_IMAGE

pytestmark = pytest.mark.e2e

BUILD_WITH_TRITON = """
import importlib.util, pathlib, sysconfig, tempfile
from triton.runtime.build import _build
from yolo_workloads.train.gpu_augment_fused import missing
assert missing() == "", missing()
folder = pathlib.Path(tempfile.mkdtemp())
(folder / "launcher.c").write_text('''
#include <Python.h>
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "launcher", NULL, -1, NULL};
PyMODINIT_FUNC PyInit_launcher(void) { return PyModule_Create(&module); }
''')
so = _build("launcher", str(folder / "launcher.c"), str(folder), [], [], [], [])
spec = importlib.util.spec_from_file_location("launcher", so)
importlib.util.module_from_spec(spec)
print("built", pathlib.Path(so).name)
"""


def test_the_workload_image_can_build_tritons_launchers(e2e: E2E) -> None:
    proc = e2e.docker("run", "--rm", "--entrypoint", "python", WORKLOAD_IMAGE, "-c", BUILD_WITH_TRITON, timeout_s=300)
    assert proc.stdout.strip().startswith("built launcher"), proc.stdout + proc.stderr


SCAN_IN_PROCESSES = """
import os, pathlib, tempfile
from yolo_workloads import offline
offline.prepare_environment()
from ultralytics.utils import DEFAULT_CFG_DICT
from yolo_workloads.datasets.shapes import ensure_shapes
from yolo_workloads.train import label_scan
from yolo_workloads.train.trainer import trainer_class
root = pathlib.Path(tempfile.mkdtemp())
data = ensure_shapes(root / "shapes", n=640, imgsz=32, val=8, seed=0)
scans, scan = [], label_scan.scan
label_scan.scan = lambda func, items, n: scans.append(n) or scan(func, items, n)
overrides = {"model": "yolov8n.yaml", "data": str(data), "imgsz": 32, "epochs": 1, "batch": 4, "workers": 0,
             "device": "cpu", "plots": False}
trainer = trainer_class("detect")(cfg={**DEFAULT_CFG_DICT, "save_dir": str(root / "run")}, overrides=overrides)
trainer.setup_model()
built = trainer.build_dataset(trainer.data["train"], "train", 4)
found = sum(1 for label in built.labels if len(label["cls"]))
print("scanned", len(built.labels), found, scans)
"""


def test_a_first_label_scan_runs_in_forked_processes_in_the_workload_image(e2e: E2E) -> None:
    proc = e2e.docker(
        "run", "--rm", "--cpus", "2", "--entrypoint", "python", WORKLOAD_IMAGE, "-c", SCAN_IN_PROCESSES, timeout_s=300
    )
    words = proc.stdout.strip().splitlines()[-1].split() if proc.stdout.strip() else []
    assert words[:3] == ["scanned", "640", "640"] and words[3:] == ["[2]"], proc.stdout[-2000:] + proc.stderr[-3000:]


FIRST_PLOT_SETUP = """
import logging
logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
import matplotlib, matplotlib.font_manager
print("cache", matplotlib.get_cachedir())
"""


@pytest.mark.parametrize("user", ["", "12345:0"], ids=["image-user", "arbitrary-uid"])
def test_the_workload_image_ships_matplotlibs_font_list(e2e: E2E, user: str) -> None:
    as_user = ["--user", user] if user else []
    proc = e2e.docker(
        "run", "--rm", *as_user, "--entrypoint", "python", WORKLOAD_IMAGE, "-c", FIRST_PLOT_SETUP, timeout_s=120
    )
    logged = proc.stdout + proc.stderr
    assert "cache /tmp/matplotlib" in proc.stdout, logged
    assert "generated new fontManager" not in logged and "temporary cache directory" not in logged, logged
