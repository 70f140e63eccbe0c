"""Bytecode for every package a training touches, compiled once into sys.pycache_prefix (benchmarks/device_env.sh).

The workload image ships a .pyc for each .py; the device's Python has none, so each timed process would compile
torch, sympy and Ultralytics from source. Importing the training's entry points finds the top-level packages; each
is compiled whole: a training imports lazily what an import alone does not.
"""

import compileall
import importlib
import os
import sys

ENTRY_POINTS = (
    "torch._inductor",
    "torchvision",
    "matplotlib.pyplot",
    "triton",
    "ultralytics.models.yolo.detect",
    "yolo_workloads.train.cli",
    "yolo_workloads.tune.in_training",
)


def package_roots() -> set[str]:
    roots = set()
    for name in list(sys.modules):
        module = sys.modules.get(name)
        origin = getattr(getattr(module, "__spec__", None), "origin", None)
        if "." in name or not origin or not origin.endswith(".py"):
            continue
        roots.add(os.path.dirname(origin) if origin.endswith("__init__.py") else origin)
    return roots


def main() -> None:
    for name in ENTRY_POINTS:
        try:
            importlib.import_module(name)
        except ImportError as error:
            print(f"warm_pyc: {name} not imported ({error})")
    for root in sorted(package_roots()):
        if os.path.isdir(root):
            compileall.compile_dir(root, quiet=2, workers=0)
        else:
            compileall.compile_file(root, quiet=2)


if __name__ == "__main__":
    main()
