"""`yolo-workload`: one verb per job, as the operator's pods and users run them.

Each verb lives in its own module exposing `add_arguments(parser)` and `run(args) -> int`. Those modules import
torch and Ultralytics lazily, inside `run`, so `--help` and argument errors are instant.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

VERBS: dict[str, tuple[str, str]] = {
    "fetch": ("yolo_workloads.fetch.cli", "download sources named by URI (s3, https) into the per-content cache"),
    "dataset": ("yolo_workloads.datasets.cli", "generate a data set (the synthetic `shapes` set)"),
    "tune": ("yolo_workloads.tune.cli", "measure training throughput and choose batch, workers, amp, cache"),
    "train": ("yolo_workloads.train.cli", "train with the chosen settings, checkpointing and resuming"),
    "serve": ("yolo_workloads.serve.cli", "serve detections over HTTP (Open Inference Protocol v2)"),
    "bench": ("yolo_workloads.bench.cli", "benchmark a model's inference on this machine"),
    "dev": ("yolo_workloads.dev.cli", "interactive JupyterLab (token) and sshd (keys only) as the non-root user"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yolo-workload", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, (module_name, help_text) in VERBS.items():
        module = importlib.import_module(module_name)
        verb_parser = sub.add_parser(verb, help=help_text, description=help_text)
        module.add_arguments(verb_parser)
        verb_parser.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Torch computes on a CPU with OpenMP threads, one per CPU of the budget (train.runtime.use_the_cpu_budget).
    # GNU OpenMP lets a thread that waits for its siblings spin 300,000 times first: with another process on the
    # same cores (a busy node, the tests beside a training) a spinning thread holds the core its sibling needs.
    # Measured on two cores (yolov8n, 160 px, batch 8): quiet, 2 threads 158-167 ms a step against 240 for one,
    # with 10,000 spins 161; beside two busy processes, 1,027 ms with the default spin, 494 with 10,000, 338 for
    # one thread (docs/local.md). Read when OpenMP loads (with torch), so set before any verb imports torch; a
    # user's value wins.
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")
    args = build_parser().parse_args(argv)
    return int(args._module.run(args))


if __name__ == "__main__":
    sys.exit(main())
