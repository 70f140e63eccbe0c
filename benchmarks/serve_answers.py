"""The host time of one image's `/v1/detect` answer: building it (answers.image_answer) and encoding it as JSON.

The server's event loop does this for every image it answers, beside HTTP parsing; a busy image carries tens of
detections, each a dict of rounded numbers (pose: 17 keypoints of three numbers). No model and no device: the
detections are random, in the shapes the pipeline hands over.

    PYTHONPATH=operator:workloads python3 benchmarks/serve_answers.py --detections 60 --repeat 3000
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from yolo_workloads.serve import answers
from yolo_workloads.serve.pipeline import Detections


def detections(task: str, k: int, rng: np.random.Generator) -> Detections:
    out = Detections(
        (rng.random((k, 4), dtype=np.float32) * 640).astype(np.float32),
        rng.random(k, dtype=np.float32),
        rng.integers(0, 80, k).astype(np.int32),
        size=(480, 640),
    )
    if task == "pose":
        out.keypoints = (rng.random((k, 17, 3), dtype=np.float32) * [640, 480, 1]).astype(np.float32)
    if task == "obb":
        out.obb = (rng.random((k, 5), dtype=np.float32) * [640, 480, 200, 100, 3.14]).astype(np.float32)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--detections", type=int, default=60, help="per image")
    ap.add_argument("--repeat", type=int, default=3000)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    names = {i: f"class{i}" for i in range(80)}
    for task in ("detect", "pose", "obb"):
        out = detections(task, a.detections, rng)
        t0 = time.perf_counter()
        for _ in range(a.repeat):
            image = answers.image_answer(out, names, "rle")
        t1 = time.perf_counter()
        for _ in range(a.repeat):
            json.dumps({"model": "yolo", "images": [image]}, separators=(",", ":")).encode()
        t2 = time.perf_counter()
        build, encode = (t1 - t0) / a.repeat * 1e6, (t2 - t1) / a.repeat * 1e6
        print(f"{task:<7} {a.detections} detections: answer {build:7.1f} us, JSON {encode:7.1f} us an image")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
