"""A CPU training step's time by torch threads and OpenMP spin-waiting, quiet or beside busy processes.

Why: on a CPU the workloads compute with one torch thread per CPU of the budget (train.runtime.use_the_cpu_budget)
and set GOMP_SPINCOUNT (yolo_workloads.cli). Both were chosen from these figures (docs/local.md, footnote 4).

    python benchmarks/cpu_step_threads.py                 # quiet
    python benchmarks/cpu_step_threads.py --busy 2        # beside two busy-looping processes

Each variant runs in its own process (OpenMP reads its settings when it loads): yolov8n at `--imgsz` (160), batch 8,
forward + loss + backward + SGD step, 3 warm-up steps, then the mean of `--steps` (15).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

VARIANTS = [
    ("1", {}),
    ("2", {}),
    ("2", {"GOMP_SPINCOUNT": "10000"}),
    ("2", {"GOMP_SPINCOUNT": "0"}),
    ("2", {"OMP_WAIT_POLICY": "PASSIVE"}),
]


def step_ms(threads: int, imgsz: int, steps: int) -> float:
    import torch
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils import DEFAULT_CFG

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = DetectionModel("yolov8n.yaml", nc=6, verbose=False).train()  # type: ignore[no-untyped-call]
    model.args = DEFAULT_CFG
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001)
    images = torch.rand(8, 3, imgsz, imgsz)
    boxes = torch.tensor([[0.5, 0.5, 0.3, 0.3]]).repeat(8, 1)
    batch = {"batch_idx": torch.arange(8).float(), "cls": torch.zeros(8, 1), "bboxes": boxes, "img": images}

    def step() -> None:
        loss, _ = model.loss(batch)
        loss.sum().backward()
        optimizer.step()
        optimizer.zero_grad()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return 1000 * (time.perf_counter() - start) / steps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--busy", type=int, default=0, help="busy-looping processes beside the measurement")
    p.add_argument("--imgsz", type=int, default=160)
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child: measure with this many threads
    args = p.parse_args(argv)
    if args.one is not None:
        print(f"{step_ms(args.one, args.imgsz, args.steps):.0f}")
        return 0
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        print(f"busy processes: {args.busy}")
        for threads, env in VARIANTS:
            clean = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
            cmd = [sys.executable, __file__, "--one", threads, "--imgsz", str(args.imgsz), "--steps", str(args.steps)]
            out = subprocess.run(cmd, env={**clean, **env}, capture_output=True, text=True, check=True).stdout
            label = " ".join(f"{k}={v}" for k, v in env.items()) or "OpenMP defaults"
            print(f"{threads} thread(s), {label}: {out.strip().splitlines()[-1]} ms a step")
    finally:
        for proc in busy:
            proc.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
