"""The workload image as a GPU node runs it, checked with the real Docker engine: Triton (in PyTorch's CUDA wheels)
builds a kernel's launcher with the system's C compiler and Python's headers on first use, so the image must carry
them, or the fused GPU augmentation (and torch.compile) would fail at the first batch. No GPU is needed to build the
launcher's kind of module: Triton's own build function compiles and the image's Python imports the result."""

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
