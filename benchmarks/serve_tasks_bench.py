"""Each task's serving throughput over HTTP beside Ultralytics `predict` on the same weights and images (issue 19).

For each task (detect, segment, pose, obb, classify): image-dependent random weights of yolov8n-<task>.yaml
(`synthetic.make_signal_weights`; or `--weights-dir` holding <task>.pt), the load generator's JPEGs written to
files, then
- `predict`: `YOLO(weights).predict(files, batch=b)` at each `--predict-batches`, warmed up, images/s;
- HTTP: `yolo-workload serve` (`--workers` processes) under `serve_load.py`'s closed loop (v2, binary BYTES,
  `--images-per-request` k at `--concurrency` C), images/s and p50/p99 per request;
then one table: the HTTP rate over the best `predict` rate is the issue's ×10 target. Random weights give any
number of detections, so each task's class bias is chosen first (bisection on the serving pipeline over the same
images) for about `--target-detections` per image at `--conf`, a busy scene's load on NMS and post-processing.
Detections per image (from the server) are in the table. JSON of everything under `--out`.

    PYTHONPATH=operator:workloads python3 benchmarks/serve_tasks_bench.py --out /tmp/tasks            # H200 defaults
    PYTHONPATH=operator:workloads python3 benchmarks/serve_tasks_bench.py --out /tmp/t --device cpu --images 4 \
        --imgsz 64 --image-size 48x64 --duration 2 --concurrency 4 --processes 1 --workers 1 --predict-batches 1,4 \
        --target-detections 10
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ARCH = {
    "detect": "yolov8n.yaml",
    "segment": "yolov8n-seg.yaml",
    "pose": "yolov8n-pose.yaml",
    "obb": "yolov8n-obb.yaml",
    "classify": "yolov8n-cls.yaml",
}


def weights_for(task: str, files: list[str], a: argparse.Namespace) -> str:
    """Given weights, or signal weights whose class bias gives about `--target-detections` per image at `--conf`
    on these images (random weights give anything from none to max_det otherwise)."""
    if a.weights_dir:
        return str(Path(a.weights_dir) / f"{task}.pt")
    from yolo_workloads.serve.synthetic import make_signal_weights

    path = str(Path(a.out) / f"{task}.pt")
    if task == "classify":
        return make_signal_weights(path, ARCH[task], seed=0)
    bias = calibrate_bias(make_signal_weights(path, ARCH[task], seed=0, cls_bias=0.0), files, a)
    print(f"{task}: class bias {bias:.2f} for ~{a.target_detections:g} detections per image", flush=True)
    return make_signal_weights(path, ARCH[task], seed=0, cls_bias=bias)


def calibrate_bias(weights: str, files: list[str], a: argparse.Namespace) -> float:
    """Bisection on a shift of the class head's biases (the count of detections rises with it), run by the
    serving pipeline on the first 8 images. `make_signal_weights` draws the biases as cls_bias + the same noise
    for a seed, so the shift found is the cls_bias to build the weights with."""
    from yolo_workloads.contract import ModelSource, ServeConfig
    from yolo_workloads.serve.pipeline import Detections, Detector, EncodedImage

    cfg = ServeConfig(model=ModelSource(weights=weights), imgsz=a.imgsz, half=a.device != "cpu", conf=a.conf)
    det = Detector(cfg.model_copy(update={"device": a.device}))
    heads = [seq[-1] for seq in det.model.model[-1].cv3]  # type: ignore[index, union-attr]
    items: list[Any] = [EncodedImage(Path(f).read_bytes(), "jpeg") for f in files[:8]]
    lo, hi, now = -40.0, 20.0, 0.0
    for _ in range(12):
        mid = (lo + hi) / 2
        for conv in heads:
            conv.bias.data += mid - now
        now = mid
        n = np.mean([len(o.scores) for o in det.run(items) if isinstance(o, Detections)])
        lo, hi = (lo, mid) if n > a.target_detections else (mid, hi)
    return (lo + hi) / 2


def write_images(a: argparse.Namespace) -> list[str]:
    """The load generator's payloads (same seed and size), as files for `predict`."""
    sys.path.insert(0, str(HERE))
    from serve_load import make_payloads

    h, w = (int(v) for v in a.image_size.split("x"))
    folder = Path(a.out) / "images"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, data in enumerate(make_payloads(a.images, h, w)):
        path = folder / f"{i:04d}.jpg"
        path.write_bytes(data)
        paths.append(str(path))
    return paths


def predict_rates(weights: str, files: list[str], a: argparse.Namespace) -> dict[str, float]:
    """Ultralytics `predict` images/s per batch size, after one warm-up pass (JPEG files, as users call it)."""
    from ultralytics import YOLO

    model = YOLO(weights)
    out: dict[str, float] = {}
    for b in (int(x) for x in a.predict_batches.split(",")):
        kw: dict[str, Any] = {"imgsz": a.imgsz, "conf": a.conf, "device": a.device, "batch": b, "verbose": False}
        if a.device != "cpu":
            kw["quantize"] = 16  # fp16 as the server (8.4's name for half=True)
        for _ in model.predict(files[: max(b, 1)], stream=True, **kw):
            pass
        t0 = time.perf_counter()
        n = 0
        for _ in range(a.predict_rounds):
            for _ in model.predict(files, stream=True, **kw):
                n += 1
        out[f"batch_{b}"] = n / (time.perf_counter() - t0)
    return out


class Server:
    """`yolo-workload serve` in a subprocess, ready when every worker has said so."""

    def __init__(self, task: str, weights: str, a: argparse.Namespace) -> None:
        self.url = f"http://127.0.0.1:{a.port}"
        cfg = Path(a.out) / f"serve_{task}.yaml"
        half = "false" if a.device == "cpu" else "true"
        cfg.write_text(
            f"model: {{weights: {weights}}}\nimgsz: {a.imgsz}\nhalf: {half}\ndevice: {a.device}\nconf: {a.conf}\n"
            f"max_batch_size: {a.max_batch}\nmax_queue_delay_ms: {a.delay}\nmax_queue_size: 8192\n"
            f"host: 127.0.0.1\nport: {a.port}\n"
        )
        self.log = Path(a.out) / f"server_{task}.log"
        cmd = [sys.executable, "-m", "yolo_workloads.cli", "serve", "--config", str(cfg)]
        cmd += ["--workers", str(a.workers), "--task", task]
        pin = ["taskset", "-c", a.server_cpus] if a.server_cpus else []
        env = {**os.environ, "OMP_NUM_THREADS": "2", "YOLO_OFFLINE": "1"}
        with self.log.open("wb") as f:
            self.proc = subprocess.Popen(pin + cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
        self._wait(a.workers)

    def _wait(self, workers: int) -> None:
        deadline = time.monotonic() + 300
        while self.log.read_text(errors="replace").count("ready: model") < workers:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server not ready:\n{self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)

    def pids(self) -> list[int]:
        """The serving processes: the parent (uvicorn's supervisor with `--workers`) and its children."""
        pgrep = ["pgrep", "-P", str(self.proc.pid)]
        children = subprocess.run(pgrep, check=False, capture_output=True, text=True).stdout
        return [self.proc.pid, *(int(x) for x in children.split())]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def detections_per_image(url: str, files: list[str], task: str) -> float:
    """Mean detections per image the server returns on the benchmark's images (classify: the top-k length)."""
    import httpx

    data = [base64.b64encode(Path(f).read_bytes()).decode() for f in files[:16]]
    doc = {"inputs": [{"name": "images", "shape": [len(data)], "datatype": "BYTES", "data": data}]}
    outs = {o["name"]: o for o in httpx.post(f"{url}/v2/models/yolo/infer", json=doc, timeout=120).json()["outputs"]}
    if task == "classify":
        return float(outs["classes"]["shape"][1])
    return float(np.mean(outs["counts"]["data"]))


class Probe:
    """What the server does while the load runs: the GPU's busy share (nvidia-smi, every 100 ms) and, with
    `--profile`, py-spy's collapsed stacks of every server process (raw format, one file each, under --out)."""

    def __init__(self, server: Server, name: str, a: argparse.Namespace) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.gpu_log = Path(a.out) / f"gpu_{name}.csv"
        if a.device != "cpu":
            query = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "100"]
            with self.gpu_log.open("wb") as f:
                self.procs.append(subprocess.Popen(query, stdout=f, stderr=subprocess.DEVNULL))
        if a.profile:
            seconds = str(max(1, int(a.duration) - 2))
            for pid in server.pids():
                cmd = [
                    "py-spy",
                    "record",
                    "--format",
                    "raw",
                    "--rate",
                    "200",
                    "--duration",
                    seconds,
                    "--threads",
                    "--idle",
                ]
                cmd += ["--nonblocking", "-o", str(Path(a.out) / f"pyspy_{name}_{pid}.txt"), "-p", str(pid)]
                self.procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def stop(self) -> float | None:
        """Stops the sampling; the GPU's mean utilisation (percent) over the window, or None without a GPU."""
        for p in self.procs:
            if p.args[0] == "nvidia-smi":
                p.terminate()
            p.wait(60)
        if not self.gpu_log.exists():
            return None
        busy = [float(x) for x in self.gpu_log.read_text().split() if x.replace(".", "").isdigit()]
        return float(np.mean(busy)) if busy else None


def http_rate(task: str, k: int, server: Server, a: argparse.Namespace) -> dict[str, Any]:
    """serve_load.py's closed loop (`k` images per request) against the running server: its JSON result, with the
    GPU's mean utilisation over the window."""
    out = Path(a.out) / f"load_{task}_k{k}.json"
    pin = ["taskset", "-c", a.client_cpus] if a.client_cpus else []
    cmd = [sys.executable, str(HERE / "serve_load.py"), "--url", f"http://127.0.0.1:{a.port}", "--endpoint", "v2"]
    concurrency = max(1, a.concurrency // k)  # about the same images in flight whatever k
    cmd += ["--mode", "closed", "--concurrency", str(concurrency), "--processes", str(a.processes)]
    cmd += ["--duration", str(a.duration), "--images", str(a.images), "--image-size", a.image_size]
    cmd += ["--images-per-request", str(k), "--label", task, "--json", str(out)]
    started = Path(a.out) / f"started_{task}_k{k}"
    started.unlink(missing_ok=True)
    load = subprocess.Popen([*pin, *cmd, "--started-file", str(started)])
    while not started.exists() and load.poll() is None:  # payloads are made first: probe the window only
        time.sleep(0.05)
    time.sleep(min(1.0, a.duration / 6))  # past the first batches (connections, warm-up of new batch sizes)
    probe = Probe(server, f"{task}_k{k}", a)
    if load.wait(a.duration + 300) != 0:
        raise RuntimeError(f"serve_load.py failed for {task}, k={k}")
    result: dict[str, Any] = json.loads(out.read_text())[0]
    result["gpu_util"] = probe.stop()
    return result


def run_task(task: str, files: list[str], a: argparse.Namespace) -> dict[str, Any]:
    weights = weights_for(task, files, a)
    row: dict[str, Any] = {"task": task, "weights": weights}
    row["predict"] = predict_rates(weights, files, a)
    server = Server(task, weights, a)
    try:
        row["detections_per_image"] = detections_per_image(server.url, files, task)
        row["http"] = {str(k): http_rate(task, k, server, a) for k in (int(x) for x in a.k.split(","))}
    finally:
        server.stop()
    best = max(row["predict"].values())
    row["speedup"] = {k: h["images_per_second"] / best if best else float("nan") for k, h in row["http"].items()}
    print(fmt(row), flush=True)
    return row


HEADER = (
    f"{'task':<9} {'det/img':>7} {'predict img/s (by batch)':<28} {'k':>2} {'HTTP img/s':>10} {'× predict':>9}  "
    "p50/p99 ms  GPU %"
)


def fmt(r: dict[str, Any]) -> str:
    """One line per images-per-request value `k`."""
    pred = ", ".join(f"{k.removeprefix('batch_')}: {v:.1f}" for k, v in r["predict"].items())
    lines = []
    for k, h in r["http"].items():
        lines.append(
            f"{r['task']:<9} {r['detections_per_image']:>7.1f} {pred:<28} {k:>2} {h['images_per_second']:>10.1f} "
            f"{r['speedup'][k]:>8.1f}×  {h['p50_ms']:.1f}/{h['p99_ms']:.1f}  {h.get('gpu_util') or float('nan'):.0f}"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder for weights, images, logs and results.json")
    ap.add_argument("--tasks", default=",".join(ARCH), help="comma-separated")
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--weights-dir", help="use <task>.pt from here instead of signal weights")
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("--target-detections", type=float, default=40.0, help="per image, for the calibrated conf")
    ap.add_argument("--images", type=int, default=64, help="distinct JPEGs (both sides use the same)")
    ap.add_argument("--image-size", default="480x640", help="HxW")
    ap.add_argument("--predict-batches", default="1,32")
    ap.add_argument("--predict-rounds", type=int, default=2, help="passes over the images per predict batch size")
    ap.add_argument("--workers", type=int, default=4, help="server processes (serve --workers)")
    ap.add_argument("--max-batch", type=int, default=128)
    ap.add_argument("--delay", type=float, default=4.0, help="max_queue_delay_ms")
    ap.add_argument("--concurrency", type=int, default=384)
    ap.add_argument("-k", default="1", help="images per request, comma-separated (concurrency is divided by it)")
    ap.add_argument("--processes", type=int, default=7, help="load generator processes")
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--port", type=int, default=8090)
    ap.add_argument("--server-cpus", help="taskset list for the server, e.g. 0-8")
    ap.add_argument("--client-cpus", help="taskset list for the load generator, e.g. 9-15")
    ap.add_argument("--profile", action="store_true", help="py-spy record the server processes during each load")
    a = ap.parse_args()
    Path(a.out).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from yolo_workloads.serve.pipeline import ensure_offline

    ensure_offline()
    files = write_images(a)
    print(f"{len(files)} JPEGs {a.image_size}, imgsz {a.imgsz}, device {a.device}, {a.workers} server workers")
    rows = []
    for task in a.tasks.split(","):
        if not rows:
            print(HEADER, flush=True)
        rows.append(run_task(task, files, a))
    (Path(a.out) / "results.json").write_text(json.dumps({"args": vars(a), "rows": rows}, indent=1))
    print("\n" + HEADER)
    for r in rows:
        print(fmt(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
