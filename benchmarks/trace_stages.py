"""GPU time a training step by stage, from a PyTorch profiler's Chrome trace (`train_throughput.py --trace`).

Why: the profiler's tables count a CUDA graph's kernels under the op that launched the graph and list the same
kernels again on their own rows, and the user ranges' device times are spans, idle gaps included. Here each kernel
(and memory copy or set) is counted once, by its own duration, under the `yolo::<stage>` range of the host thread
that launched it (matched by the launch's correlation id); kernels launched outside any range (autograd's thread
runs the backward pass) are counted under that thread's outermost op.

    python benchmarks/trace_stages.py run.trace.json.gz --steps 8
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

DEVICE_CATEGORIES = frozenset({"kernel", "gpu_memcpy", "gpu_memset"})
LAUNCH_CATEGORIES = frozenset({"cuda_runtime", "cuda_driver"})
RANGE_PREFIX = "yolo::"


def load(path: Path) -> list[dict[str, Any]]:
    """The trace's events (a `.gz` is read through gzip)."""
    with gzip.open(path, "rt") if path.suffix == ".gz" else path.open() as stream:
        events: list[dict[str, Any]] = json.load(stream)["traceEvents"]
    return events


Span = tuple[float, float, str]


def _spans(events: Iterable[Mapping[str, Any]], wanted: Any) -> dict[Any, list[Span]]:
    """Host spans by thread, for the events `wanted(event)` accepts."""
    spans: dict[Any, list[Span]] = collections.defaultdict(list)
    for event in events:
        if wanted(event):
            spans[event["tid"]].append((event["ts"], event["ts"] + event.get("dur", 0), event["name"]))
    return spans


def _around(spans: list[Span], ts: float) -> str | None:
    """The name of the outermost span holding `ts` (the earliest start among them)."""
    holding = [span for span in spans if span[0] <= ts <= span[1]]
    return min(holding)[2] if holding else None


def device_time(events: list[dict[str, Any]]) -> collections.Counter[tuple[str, str]]:
    """Device microseconds by (stage, outermost host op), each kernel counted once."""
    launches = {
        e["args"]["correlation"]: (e["tid"], e["ts"], e["name"])
        for e in events
        if e.get("cat") in LAUNCH_CATEGORIES and "correlation" in e.get("args", {})
    }
    ranges = _spans(events, lambda e: e.get("cat") == "user_annotation" and e["name"].startswith(RANGE_PREFIX))
    ops = _spans(events, lambda e: e.get("cat") == "cpu_op")
    totals: collections.Counter[tuple[str, str]] = collections.Counter()
    for event in events:
        if event.get("cat") not in DEVICE_CATEGORIES:
            continue
        launch = launches.get(event.get("args", {}).get("correlation"))
        if launch is None:
            totals[("not matched to a launch", "")] += event["dur"]
            continue
        thread, ts, call = launch
        stage = _around(ranges.get(thread, []), ts) or f"outside the ranges (thread {thread})"
        totals[(stage, _around(ops.get(thread, []), ts) or call)] += event["dur"]
    return totals


def report(totals: collections.Counter[tuple[str, str]], steps: int, top: int = 30) -> str:
    """Milliseconds a step: the whole, by stage, then the largest (stage, op) pairs."""
    per_step = {key: value / 1000 / steps for key, value in totals.items()}
    stages: collections.Counter[str] = collections.Counter()
    for (stage, _), ms in per_step.items():
        stages[stage] += ms
    lines = [f"GPU ms a step (kernels, copies and sets, each once): {sum(per_step.values()):.1f}"]
    lines += [f"  {ms:6.1f}  {stage}" for stage, ms in stages.most_common()]
    lines.append("largest (stage, outermost host op), ms a step:")
    ranked = sorted(per_step.items(), key=lambda item: -item[1])[:top]
    lines += [f"  {ms:6.2f}  {stage}  |  {op}" for (stage, op), ms in ranked]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trace", type=Path, help="the Chrome trace (.json or .json.gz)")
    parser.add_argument("--steps", type=int, default=8, help="training steps the trace covers")
    parser.add_argument("--top", type=int, default=30, help="how many (stage, op) pairs to list")
    args = parser.parse_args()
    print(report(device_time(load(args.trace)), args.steps, args.top), end="")


if __name__ == "__main__":
    main()
