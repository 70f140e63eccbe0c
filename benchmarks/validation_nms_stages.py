"""Validation's NMS in stages (train/validation_nms.py) against the version before it, where an image short of
max_det after its best 1,024 candidates went again whole (git `--before`, default c39c374), on a young model's
output built by tests/validation_nms_cases.py `crowd`: 8,400 anchors, every (anchor, class) a candidate, boxes in
six clusters `--spread` px apart. Prints, per spread, each version's seconds (median of `--repeats`), the pairs of
boxes it compares (n x n for each group it suppresses, plus the stages' kept-against-rest pairs) and the rows kept,
and checks that both give the same rows.

    PYTHONPATH=workloads:tests python3 benchmarks/validation_nms_stages.py [--device cuda] [--images 8]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def module_at(commit: str, path: str, name: str, replace: tuple[str, str] | None = None) -> types.ModuleType:
    """The module `path` as it was at `commit`, loaded under `name`."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:{path}"], check=True, capture_output=True,
                            text=True).stdout  # fmt: skip
    if replace:
        source = source.replace(*replace)
    module = types.ModuleType(name)
    sys.modules[name] = module
    exec(compile(source, f"{commit}:{path}", "exec"), module.__dict__)
    return module


def counting(pairs: list[int]) -> None:
    """Counts the pairs each `greedy_nms` call (both versions') and each stage's removal compares."""
    from yolo_workloads.serve import nms
    from yolo_workloads.train import validation_nms

    for module in (nms, sys.modules["nms_before"]):
        greedy = module.greedy_nms

        def counted(boxes: Any, scores: Any, groups: Any, iou: float, greedy: Any = greedy, **kw: Any) -> Any:
            sizes = torch.unique(groups, return_counts=True)[1]
            pairs[0] += int((sizes.double() ** 2).sum())
            return greedy(boxes, scores, groups, iou, **kw)

        module.greedy_nms = counted
    overlapped = validation_nms._overlapped

    def removal(left: Any, new: Any, boxes: Any, groups: Any, iou: float, ids: int) -> Any:
        pairs[0] += int(torch.bincount(groups[new], minlength=ids)[groups[left]].sum())
        return overlapped(left, new, boxes, groups, iou, ids)

    validation_nms._overlapped = removal


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--spreads", default="3,12")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--before", default="c39c374")
    args = p.parse_args()
    from validation_nms_cases import crowd
    from yolo_workloads.train import validation_nms

    module_at(args.before, "workloads/yolo_workloads/serve/nms.py", "nms_before")
    before = module_at(args.before, "workloads/yolo_workloads/train/validation_nms.py", "validation_nms_before",
                       ("from yolo_workloads.serve import nms", "import nms_before as nms"))  # fmt: skip
    pairs = [0]
    counting(pairs)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    for spread in (float(s) for s in args.spreads.split(",")):
        head = crowd(np.random.default_rng(7), args.images, 6, 8400, spread, args.device)
        rows = {}
        for name, module in (("whole again", before), ("stages", validation_nms)):
            times = []
            for _ in range(args.repeats):
                pairs[0] = 0
                sync()
                start = time.perf_counter()
                rows[name] = module.batched(head, 0.001, 0.7, False, 300)
                sync()
                times.append(time.perf_counter() - start)
            kept = sum(len(r) for r in rows[name])
            print(f"spread {spread:g} px, {name}: {statistics.median(times):.3f} s, {pairs[0] / 1e6:.1f} M pairs, "
                  f"{kept} rows kept")  # fmt: skip
        same = all(torch.equal(a, b) for a, b in zip(rows["whole again"], rows["stages"], strict=True))
        print(f"spread {spread:g} px: same rows: {same}")


if __name__ == "__main__":
    main()
