"""Unpacking a data set's .tar.gz: one pass over the stream (fetch/store.py `unpack`, since 2026-12-05) against the
two passes it made before (every entry checked from `getmembers()`, a full decompression, then each extracted, a
second one: the first `extractfile` seeks the gzip stream back to its start).

The archive holds a generated shapes set (JPEG images and labels, offline), as a data set in Ultralytics' layout is
usually shipped; each variant unpacks it into an empty folder, alternated, and the medians are printed.

    PYTHONPATH=workloads .venv/bin/python benchmarks/unpack_bench.py --images 1500 --imgsz 640
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path


def two_passes(archive: Path, dest: Path, max_bytes: int) -> None:
    """The tar branch of `unpack` as it was until 2026-12-05 (its checks and writes are today's own)."""
    from yolo_workloads.fetch import store

    budget = [max_bytes]
    with tarfile.open(archive, "r:*") as tf:
        members = tf.getmembers()
        for m in members:
            store._check_entry(m.name, m.issym() or m.islnk(), special=not (m.isfile() or m.isdir()))
        for m in members:
            member = tf.extractfile(m) if m.isfile() else None
            if member is not None:
                store._write(member, dest / m.name, budget, max_bytes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1500)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from yolo_workloads.datasets.shapes import ensure_shapes
    from yolo_workloads.fetch import store

    work = Path(tempfile.mkdtemp(prefix="unpack-bench-"))
    try:
        data = ensure_shapes(work / "shapes", n=args.images, imgsz=args.imgsz, val=args.images // 5, seed=0).parent
        archive = work / "shapes.tar.gz"
        with tarfile.open(archive, "w:gz") as tf:
            tf.add(data, arcname="shapes")
        variants = {"two passes (before)": two_passes, "one pass (now)": store.unpack}
        seconds: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, unpack in variants.items():
                dest = work / "out"
                shutil.rmtree(dest, ignore_errors=True)
                dest.mkdir()
                start = time.perf_counter()
                unpack(archive, dest, 1 << 40)
                seconds[name].append(time.perf_counter() - start)
        size = archive.stat().st_size >> 20
        print(f"{args.images} + {args.images // 5} images at {args.imgsz} in a {size} MB .tar.gz, medians of "
              f"{args.repeats}:")  # fmt: skip
        print("| unpack | seconds |\n| --- | --- |")
        for name, runs in seconds.items():
            print(f"| {name} | {statistics.median(runs):.2f} ({', '.join(f'{r:.2f}' for r in runs)}) |")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
