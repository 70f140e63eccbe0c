"""The serving forward pass alone, under the knobs that change its device time without changing its answers (issue 19).

The serving pipeline loads the model as `pipeline.load_model` does (fused, fp16, channels-last) and runs it on
letterboxed batches; with the GPU busy ~99% of the time under HTTP load (serve_tasks_bench.py's GPU column), the
forward's device time per image bounds the server. For each batch size: eager as served today, with cuDNN's
algorithm search (`torch.backends.cudnn.benchmark`), in NCHW instead of channels-last, and replayed as a CUDA
graph; with `--compile`, through torch.compile as well. Milliseconds per batch (CUDA events, median of `--rounds`) and images/s; the outputs' largest difference
from the eager run says whether a knob changes answers.

    PYTHONPATH=operator:workloads python3 benchmarks/serve_forward_knobs.py --model yolov8n.yaml --batches 32,64,128
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable

import torch


def load(model: str) -> torch.nn.Module:
    from ultralytics import YOLO

    net = YOLO(model).model
    assert isinstance(net, torch.nn.Module)
    net = net.fuse(verbose=False).eval().half().cuda()  # type: ignore[operator]
    return net.to(memory_format=torch.channels_last)


def timed(fn: Callable[[], torch.Tensor], rounds: int) -> float:
    """Median milliseconds of `fn` on the device (CUDA events), after three warm-up calls."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(rounds):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def first(out: object) -> torch.Tensor:
    while isinstance(out, (tuple, list)):
        out = out[0]
    assert isinstance(out, torch.Tensor)
    return out


def graphed(net: torch.nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    static = x.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            net(static)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = first(net(static))

    def replay() -> torch.Tensor:
        graph.replay()
        return out

    return replay


def row(net: torch.nn.Module, b: int, imgsz: int, rounds: int) -> dict[str, float]:
    x = torch.rand(b, 3, imgsz, imgsz, device="cuda", dtype=torch.half).contiguous(memory_format=torch.channels_last)
    out: dict[str, float] = {"batch": b}
    with torch.inference_mode():
        torch.backends.cudnn.benchmark = False
        ref = first(net(x)).float()
        out["eager_ms"] = timed(lambda: first(net(x)), rounds)
        xn = x.contiguous()
        out["nchw_ms"] = timed(lambda: first(net(xn)), rounds)
        torch.backends.cudnn.benchmark = True
        out["cudnn_benchmark_ms"] = timed(lambda: first(net(x)), rounds)
        out["cudnn_benchmark_max_diff"] = float((first(net(x)).float() - ref).abs().max())
        torch.backends.cudnn.benchmark = False
        replay = graphed(net, x)
        out["cuda_graph_ms"] = timed(replay, rounds)
        out["cuda_graph_max_diff"] = float((replay().float() - ref).abs().max())
    return out


def compiled_rows(net: torch.nn.Module, batches: list[int], imgsz: int, rounds: int) -> list[dict[str, float]]:
    """The forward through torch.compile (Inductor, dynamic batch): seconds of the first call (the compile), then
    milliseconds per batch; Inductor fuses each convolution's bias add with its SiLU."""
    import time

    fn = torch.compile(net, dynamic=True)
    rows = []
    with torch.inference_mode():
        for b in batches:
            x = torch.rand(b, 3, imgsz, imgsz, device="cuda", dtype=torch.half)
            x = x.contiguous(memory_format=torch.channels_last)
            t0 = time.perf_counter()
            out = first(fn(x))
            torch.cuda.synchronize()
            first_s = time.perf_counter() - t0
            diff = float((out.float() - first(net(x)).float()).abs().max())
            ms = timed(lambda x=x: first(fn(x)), rounds)
            rows.append({"batch": b, "compiled_first_s": first_s, "compiled_ms": ms, "compiled_max_diff": diff})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="yolov8n.yaml")
    ap.add_argument("--batches", default="16,32,64,128")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--compile", action="store_true", help="also torch.compile (Inductor) with a dynamic batch")
    a = ap.parse_args()
    net = load(a.model)
    batches = [int(b) for b in a.batches.split(",")]
    rows = [row(net, b, a.imgsz, a.rounds) for b in batches]
    if a.compile:
        for r, c in zip(rows, compiled_rows(net, batches, a.imgsz, a.rounds), strict=True):
            r.update(c)
    for r in rows:
        ms = {k: v for k, v in r.items() if k.endswith("_ms")}
        extra = "  ".join(f"{k} {v:.3g}" for k, v in r.items() if k.endswith(("_diff", "_s")))
        line = "  ".join(f"{k.removesuffix('_ms')} {v:.2f} ms ({r['batch'] * 1000 / v:,.0f}/s)" for k, v in ms.items())
        print(f"batch {r['batch']:.0f}: {line}  {extra}")
    print(json.dumps(rows), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
