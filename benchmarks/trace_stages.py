"""GPU time a training step by stage, from a PyTorch profiler's Chrome trace (`train_throughput.py --trace`).

Why: the profiler's tables count a CUDA graph's kernels under the op that launched the graph and list the same
kernels again on their own rows, and the user ranges' device times are spans, idle gaps included. Here each kernel
(and memory copy or set) is counted once, by its own duration, under the `yolo::<stage>` range of the host thread
that launched it (matched by the launch's correlation id); kernels launched outside any range (autograd's thread
runs the backward pass) are counted under that thread's outermost op.

The GPU's idle time is split too: each gap in which no stream ran anything is charged to the launch that ended it,
as "host late" where the host launched that work after the gap began (the GPU waited for the host) and "launched in
time" where the work was queued already (it waited on something else: an event, a copy, a graph's own gaps). The
host's time in each range a step comes beside it: a range longer on the host than its GPU work bounds the step.

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


class Launches:
    """Where each device event was launched from: the host thread's range and outermost op at its launch."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.by_correlation = {
            e["args"]["correlation"]: (e["tid"], e["ts"], e["name"])
            for e in events
            if e.get("cat") in LAUNCH_CATEGORIES and "correlation" in e.get("args", {})
        }
        self.ranges = _spans(events, _is_range)
        self.ops = _spans(events, lambda e: e.get("cat") == "cpu_op")

    def of(self, event: Mapping[str, Any]) -> tuple[tuple[str, str], float | None]:
        """(stage, outermost host op) of a device event, and its launch's host time (None: not matched)."""
        launch = self.by_correlation.get(event.get("args", {}).get("correlation"))
        if launch is None:
            return ("not matched to a launch", ""), None
        thread, ts, call = launch
        stage = _around(self.ranges.get(thread, []), ts) or f"outside the ranges (thread {thread})"
        return (stage, _around(self.ops.get(thread, []), ts) or call), ts


def _is_range(event: Mapping[str, Any]) -> bool:
    return event.get("cat") == "user_annotation" and str(event["name"]).startswith(RANGE_PREFIX)


def _device_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted((e for e in events if e.get("cat") in DEVICE_CATEGORIES), key=lambda e: e["ts"])


def device_time(events: list[dict[str, Any]]) -> collections.Counter[tuple[str, str]]:
    """Device microseconds by (stage, outermost host op), each kernel counted once."""
    launches = Launches(events)
    totals: collections.Counter[tuple[str, str]] = collections.Counter()
    for event in _device_events(events):
        totals[launches.of(event)[0]] += event["dur"]
    return totals


def idle_time(events: list[dict[str, Any]]) -> collections.Counter[tuple[str, str, str]]:
    """Microseconds in which no stream ran anything, by (stage, op, why) of the launch that ended each gap."""
    launches = Launches(events)
    totals: collections.Counter[tuple[str, str, str]] = collections.Counter()
    busy_until: float | None = None
    for event in _device_events(events):
        if busy_until is not None and event["ts"] > busy_until:
            (stage, op), launched = launches.of(event)
            why = (
                "launch not found" if launched is None else "host late" if launched > busy_until else "launched in time"
            )
            totals[(stage, op, why)] += event["ts"] - busy_until
        end = event["ts"] + event["dur"]
        busy_until = end if busy_until is None else max(busy_until, end)
    return totals


def host_time(events: list[dict[str, Any]]) -> collections.Counter[str]:
    """Host microseconds in each `yolo::` range (its own thread's wall time, waits included)."""
    totals: collections.Counter[str] = collections.Counter()
    for event in events:
        if _is_range(event):
            totals[event["name"]] += event.get("dur", 0)
    return totals


def report(totals: collections.Counter[tuple[str, str]], steps: int, top: int = 30) -> str:
    """Milliseconds a step: the whole, by stage, then the largest (stage, op) pairs."""
    per_step = {key: value / 1000 / steps for key, value in totals.items()}
    stages: collections.defaultdict[str, float] = collections.defaultdict(float)
    for (stage, _), ms in per_step.items():
        stages[stage] += ms
    lines = [f"GPU ms a step (kernels, copies and sets, each once): {sum(per_step.values()):.1f}"]
    lines += [f"  {ms:6.1f}  {stage}" for stage, ms in _largest_first(stages)]
    lines.append("largest (stage, outermost host op), ms a step:")
    ranked = sorted(per_step.items(), key=lambda item: -item[1])[:top]
    lines += [f"  {ms:6.2f}  {stage}  |  {op}" for (stage, op), ms in ranked]
    return "\n".join(lines) + "\n"


def idle_report(
    idle: collections.Counter[tuple[str, str, str]], host: collections.Counter[str], steps: int, top: int = 20
) -> str:
    """Milliseconds a step: the GPU idle by why and by the launch that ended it; the host's time in each range."""
    per_step = {key: value / 1000 / steps for key, value in idle.items()}
    why: collections.defaultdict[str, float] = collections.defaultdict(float)
    for (_, _, reason), ms in per_step.items():
        why[reason] += ms
    lines = [f"GPU idle ms a step (no stream busy): {sum(per_step.values()):.1f}"]
    lines += [f"  {ms:6.1f}  {reason}" for reason, ms in _largest_first(why)]
    lines.append("largest gaps by the launch that ended them (stage, outermost host op, why), ms a step:")
    ranked = sorted(per_step.items(), key=lambda item: -item[1])[:top]
    lines += [f"  {ms:6.2f}  {stage}  |  {op}  |  {reason}" for (stage, op, reason), ms in ranked]
    lines.append("host ms a step in each range (wall, waits included):")
    lines += [f"  {us / 1000 / steps:6.1f}  {name}" for name, us in host.most_common()]
    return "\n".join(lines) + "\n"


def _largest_first(totals: Mapping[str, float]) -> list[tuple[str, float]]:
    return sorted(totals.items(), key=lambda item: -item[1])


def full_report(events: list[dict[str, Any]], steps: int, top: int = 30) -> str:
    """The GPU's time by stage, then its idle time and the host's ranges."""
    return report(device_time(events), steps, top) + idle_report(idle_time(events), host_time(events), steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trace", type=Path, help="the Chrome trace (.json or .json.gz)")
    parser.add_argument("--steps", type=int, default=8, help="training steps the trace covers")
    parser.add_argument("--top", type=int, default=30, help="how many (stage, op) pairs to list")
    args = parser.parse_args()
    print(full_report(load(args.trace), args.steps, args.top), end="")


if __name__ == "__main__":
    main()
