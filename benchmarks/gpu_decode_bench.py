"""JPEG decoding alone (train/gpu_decode.py): OpenCV on one CPU core against nvJPEG on the GPU, per batch (issue 23).

    PYTHONPATH=workloads python3 benchmarks/gpu_decode_bench.py --out DIR [--images 512] [--batch 128]

Generates (or reuses) a shapes set of 640 px JPEGs under DIR and prints one JSON line: OpenCV's images/s on one core
(`cv2.imdecode` from bytes in memory, as a worker decodes), and on the GPU the wall time of one batch's decode (what
the training process waits for), its images/s, and the whole `batch_images` (decode, resize to imgsz, slots).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--imgsz", type=int, default=640, help="the training size the decoded images are resized to")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()

    import cv2
    import numpy as np
    import torch
    from yolo_workloads.datasets.shapes import ensure_shapes
    from yolo_workloads.train import gpu_decode

    data = ensure_shapes(args.out / "shapes", n=args.images, imgsz=640, val=8, seed=0)
    files = sorted((data.parent / "images" / "train").glob("*.jpg"))[: args.batch]
    blobs = [f.read_bytes() for f in files]
    t0 = time.perf_counter()
    for blob in blobs:
        cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_COLOR)
    opencv_ips = len(blobs) / (time.perf_counter() - t0)

    device = torch.device("cuda")
    encoded = [torch.frombuffer(bytearray(b), dtype=torch.uint8).pin_memory() for b in blobs]
    hw = [gpu_decode.jpeg_size(b) for b in blobs]
    sizes = np.array([gpu_decode.resized(h, args.imgsz) for h in hw if h is not None])
    for _ in range(3):  # the decoder's start, allocations
        gpu_decode.decode(encoded, device)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.rounds):
        gpu_decode.decode(encoded, device)
    decode_wall = (time.perf_counter() - t0) / args.rounds
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.rounds):
        batch = {gpu_decode.ENCODED: tuple(encoded), gpu_decode.LOADED: (torch.empty(0),) * len(encoded)}
        gpu_decode.batch_images(batch, sizes, np.zeros((len(blobs), 2)), args.imgsz, device)
    host = (time.perf_counter() - t0) / args.rounds
    torch.cuda.synchronize()
    whole = (time.perf_counter() - t0) / args.rounds
    print(json.dumps({
        "images": len(blobs), "jpeg_kb": round(sum(map(len, blobs)) / len(blobs) / 1024, 1),
        "opencv_images_per_second_one_core": round(opencv_ips, 1),
        "nvjpeg_batch_ms_host_waits": round(decode_wall * 1000, 2),
        "nvjpeg_images_per_second": round(len(blobs) / decode_wall, 1),
        "batch_images_host_ms": round(host * 1000, 2), "batch_images_ms": round(whole * 1000, 2),
        "imgsz": args.imgsz, "gpu": torch.cuda.get_device_name(device),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
