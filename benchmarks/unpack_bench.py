"""Unpacking a data set's archive as fetch/store.py `unpack` does since 2026-12-05, against how it did before: a
.tar.gz in one pass over the stream against two (every entry checked from `getmembers()`, a full decompression,
then each extracted, a second one: the first `extractfile` seeks the gzip stream back to its start); a .zip's
entries side by side (`UNZIP_THREADS`, within the CPU budget) against one after another.

The archives hold a generated shapes set (JPEG images and labels, offline), as a data set in Ultralytics' layout is
usually shipped (the zip deflated, as Python's and most tools' archives are); each variant unpacks into an empty
folder, alternated, and the medians are printed.

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
import zipfile
from pathlib import Path


def two_passes(archive: Path, dest: Path, max_bytes: int) -> None:
    """The tar branch of `unpack` as it was until 2026-12-05 (its checks and writes are today's own)."""
    from yolo_workloads.fetch import store

    budget = store._unpack_budget(max_bytes)
    with tarfile.open(archive, "r:*") as tf:
        members = tf.getmembers()
        for m in members:
            store._check_entry(m.name, m.issym() or m.islnk(), special=not (m.isfile() or m.isdir()))
        for m in members:
            member = tf.extractfile(m) if m.isfile() else None
            if member is not None:
                store._write(member, dest / m.name, budget)


def unzip_with(threads: int, archive: Path, dest: Path) -> None:
    """`unpack` of a zip with `threads` threads at most (1: one entry after another, as before)."""
    from yolo_workloads.fetch import store

    store.UNZIP_THREADS = threads  # type: ignore[misc]
    store.unpack(archive, dest, 1 << 40)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1500)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from yolo_workloads.datasets.shapes import ensure_shapes
    from yolo_workloads.fetch import store

    threads = store.UNZIP_THREADS
    work = Path(tempfile.mkdtemp(prefix="unpack-bench-"))
    try:
        data = ensure_shapes(work / "shapes", n=args.images, imgsz=args.imgsz, val=args.images // 5, seed=0).parent
        tgz, zipped = work / "shapes.tar.gz", work / "shapes.zip"
        with tarfile.open(tgz, "w:gz") as tf:
            tf.add(data, arcname="shapes")
        with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(data.rglob("*")):
                zf.write(path, Path("shapes") / path.relative_to(data))
        variants = {
            ".tar.gz, two passes (before)": lambda dest: two_passes(tgz, dest, 1 << 40),
            ".tar.gz, one pass (now)": lambda dest: store.unpack(tgz, dest, 1 << 40),
            ".zip, one entry at a time (before)": lambda dest: unzip_with(1, zipped, dest),
            f".zip, side by side (now: up to {threads} threads)": lambda dest: unzip_with(threads, zipped, dest),
        }
        seconds: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, unpack in variants.items():
                dest = work / "out"
                shutil.rmtree(dest, ignore_errors=True)
                dest.mkdir()
                start = time.perf_counter()
                unpack(dest)
                seconds[name].append(time.perf_counter() - start)
        sizes = f"{tgz.stat().st_size >> 20} MB .tar.gz, {zipped.stat().st_size >> 20} MB .zip"
        print(f"{args.images} + {args.images // 5} images at {args.imgsz} ({sizes}), medians of {args.repeats}:")
        print("| unpack | seconds |\n| --- | --- |")
        for name, runs in seconds.items():
            print(f"| {name} | {statistics.median(runs):.2f} ({', '.join(f'{r:.2f}' for r in runs)}) |")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
