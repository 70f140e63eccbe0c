"""benchmarks/trace_stages.py, the GPU time a training step by stage that docs/benchmarks.md quotes: each kernel
counted once, under the range of the thread that launched it, whatever the profiler's own tables do with graphs."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.trace_stages import device_time, host_time, idle_report, idle_time, report  # noqa: E402

pytestmark = pytest.mark.unit

MAIN, AUTOGRAD = 10, 11


def _host(cat: str, name: str, tid: int, ts: float, dur: float, **args: Any) -> dict[str, Any]:
    return {"ph": "X", "cat": cat, "name": name, "pid": 1, "tid": tid, "ts": ts, "dur": dur, "args": args}


def _step_trace() -> list[dict[str, Any]]:
    """One step: a range on the main thread holding a graph launch and a loss op; the backward's graph launched by
    autograd's thread outside any range; a copy; and a kernel whose launch the trace lost."""
    return [
        _host("user_annotation", "yolo::forward and loss", MAIN, 100, 100),
        _host("cpu_op", "Graphed", MAIN, 105, 20),
        _host("cuda_runtime", "cudaGraphLaunch", MAIN, 110, 5, correlation=1),
        _host("cpu_op", "aten::topk", MAIN, 150, 10),
        _host("cpu_op", "aten::sort", MAIN, 152, 4),  # inside topk: the outermost op names the work
        _host("cuda_runtime", "cudaLaunchKernel", MAIN, 153, 1, correlation=2),
        _host("cpu_op", "autograd::engine::evaluate_function: GraphedBackward", AUTOGRAD, 300, 20),
        _host("cuda_runtime", "cudaGraphLaunch", AUTOGRAD, 305, 5, correlation=3),
        _host("cuda_runtime", "cudaMemcpyAsync", MAIN, 400, 1, correlation=4),
        _host("kernel", "conv", 0, 120, 2000, correlation=1),  # two kernels of the forward graph
        _host("kernel", "bn", 0, 2200, 1000, correlation=1),
        _host("kernel", "topk kernel", 0, 3300, 500, correlation=2),
        _host("kernel", "conv backward", 0, 4000, 4000, correlation=3),
        _host("gpu_memcpy", "Memcpy HtoD", 0, 8100, 100, correlation=4),
        _host("kernel", "orphan", 0, 9000, 300, correlation=99),
        _host("gpu_user_annotation", "yolo::forward and loss", 0, 120, 3700),  # a span: never summed
    ]


def test_each_kernel_counts_once_under_the_range_that_launched_it() -> None:
    totals = device_time(_step_trace())
    assert totals == {
        ("yolo::forward and loss", "Graphed"): 3000,
        ("yolo::forward and loss", "aten::topk"): 500,
        ("outside the ranges (thread 11)", "autograd::engine::evaluate_function: GraphedBackward"): 4000,
        ("outside the ranges (thread 10)", "cudaMemcpyAsync"): 100,
        ("not matched to a launch", ""): 300,
    }
    text = report(totals, steps=2)
    assert text.startswith("GPU ms a step (kernels, copies and sets, each once): 3.9\n")
    assert "     2.0  outside the ranges (thread 11)\n" in text and "     1.8  yolo::forward and loss\n" in text


def test_the_script_reads_a_gzipped_trace(tmp_path: Path) -> None:
    trace = tmp_path / "run.trace.json.gz"
    with gzip.open(trace, "wt") as stream:
        json.dump({"traceEvents": _step_trace()}, stream)
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "trace_stages.py"), str(trace), "--steps", "1", "--top", "2"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.splitlines()[0] == "GPU ms a step (kernels, copies and sets, each once): 7.9"
    lines = out.splitlines()
    idle_at = lines.index("GPU idle ms a step (no stream busy): 1.3")
    assert lines[idle_at - 2 : idle_at] == [
        "    4.00  outside the ranges (thread 11)  |  autograd::engine::evaluate_function: GraphedBackward",
        "    3.00  yolo::forward and loss  |  Graphed",
    ]
    assert lines[-2:] == ["host ms a step in each range (wall, waits included):", "     0.1  yolo::forward and loss"]


def test_each_idle_gap_is_charged_to_the_launch_that_ended_it() -> None:
    late = [  # after the memcpy (ends 8200) the host launches the next kernel only at 8600: it was late
        _host("user_annotation", "yolo::optimizer", MAIN, 8500, 300),
        _host("cpu_op", "aten::_foreach_add_", MAIN, 8550, 100),
        _host("cuda_runtime", "cudaLaunchKernel", MAIN, 8600, 5, correlation=5),
        _host("kernel", "foreach kernel", 0, 8700, 100, correlation=5),
    ]
    idle = idle_time(_step_trace() + late)
    assert idle == {
        ("yolo::forward and loss", "Graphed", "launched in time"): 80,  # the graph's own gap, conv to bn
        ("yolo::forward and loss", "aten::topk", "launched in time"): 100,
        (
            "outside the ranges (thread 11)",
            "autograd::engine::evaluate_function: GraphedBackward",
            "launched in time",
        ): 200,
        ("outside the ranges (thread 10)", "cudaMemcpyAsync", "launched in time"): 100,
        ("yolo::optimizer", "aten::_foreach_add_", "host late"): 500,
        ("not matched to a launch", "", "launch not found"): 200,  # the orphan at 9000, after the foreach kernel
    }
    text = idle_report(idle, host_time(_step_trace() + late), steps=1)
    assert text.startswith(
        "GPU idle ms a step (no stream busy): 1.2\n     0.5  host late\n     0.5  launched in time\n"
    )
    assert "    0.50  yolo::optimizer  |  aten::_foreach_add_  |  host late\n" in text
    assert text.endswith(
        "host ms a step in each range (wall, waits included):\n     0.3  yolo::optimizer\n     0.1  yolo::forward and loss\n"
    )


def test_overlapping_streams_leave_no_gap() -> None:
    side = [  # a second stream's copy covers the time between the forward graph's two kernels
        _host("cuda_runtime", "cudaMemcpyAsync", MAIN, 115, 1, correlation=6),
        _host("gpu_memcpy", "Memcpy HtoD", 0, 2000, 300, correlation=6),
    ]
    idle = idle_time(_step_trace() + side)
    assert ("yolo::forward and loss", "Graphed", "launched in time") not in idle
    assert sum(idle.values()) == 100 + 200 + 100 + 800
