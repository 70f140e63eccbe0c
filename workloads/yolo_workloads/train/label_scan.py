"""Ultralytics' label scan run in forked processes instead of threads that take turns on the GIL.

Why: the first training on a data set (a fresh pod's, every time the data is fetched anew) scans it:
`YOLODataset.cache_labels` checks every image and reads its label file with `verify_image_label`, in a
`ThreadPool` of Ultralytics' NUM_THREADS (8). That work is Python holding the GIL, and every file read hands the GIL
on, so the threads take turns: more threads scan slower than one (1,500 images on the two-core development
machine: 0.17 s in one thread, 0.34 s in eight; on the H200 machine with 16 CPUs eight took 1.18 s of a tuned
yolov8s training's set-up, docs/benchmarks.md; at that rate 100,000 images would take over a minute). Forked
processes run the same function truly side by side, in order, in chunks; Ultralytics then assembles, reports and
writes its label cache from their results as before, so the cache and the labels are its own.

Scoped: `in_processes()` swaps the `ThreadPool` that `ultralytics.data.dataset` looks up while the trainer builds a
data set; only Ultralytics' per-image checks go to processes (`is_verifier`: the labels' of detect, segment, pose and
obb, the images' of classify), every other use of that pool stays a thread pool.
A small set is scanned in this process (no fork to pay); a worker that dies (killed for memory) leaves the rest to
this process, and so does a fork refused (a pod's process limit). Forking a process that holds CUDA is what
Ultralytics' dataloader workers do too: the children only read files.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import multiprocessing
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.pool import ThreadPool
from typing import Any

IMAGES_PER_PROCESS = 256
"""At least this many images to each forked process (~30-60 ms of scanning, against a few ms to fork: 2-3 ms a
process holding 6 GB on the development machine): a set of fewer than 2x this is scanned in this process."""
CHUNKS_PER_PROCESS = 4
"""Each process's share sent in this many chunks: few enough messages, and an uneven chunk evens out."""


def processes_for(images: int, cpu_budget: float) -> int:
    """Processes to scan `images` with: one per IMAGES_PER_PROCESS images, within the CPU budget; 1: this one."""
    return max(1, min(int(cpu_budget), images // IMAGES_PER_PROCESS))


def scan(func: Callable[[Any], Any], items: Sequence[Any], processes: int) -> Iterator[Any]:
    """`func` of each item, in order: in `processes` forked processes (1: in this one). Should a worker die, the
    items whose results had not come back are scanned here."""
    call, done = functools.partial(_as_in_a_thread, func), 0
    if processes > 1:
        try:
            for result in _in_processes(call, items, processes):
                yield result
                done += 1
        except (BrokenProcessPool, OSError):  # a worker killed (memory), or no fork: the rest here
            pass
    for item in items[done:]:
        yield call(item)


def _in_processes(call: Callable[[Any], Any], items: Sequence[Any], processes: int) -> Iterator[Any]:
    chunk = math.ceil(len(items) / (processes * CHUNKS_PER_PROCESS))
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork")) as pool:
        with warnings.catch_warnings():  # Python 3.12+ warns on every fork of a threaded process
            warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
            results = pool.map(call, items, chunksize=chunk)  # forks every worker and sends every chunk now
        yield from results


def _as_in_a_thread(func: Callable[[Any], Any], item: Any) -> Any:
    """`func(item)` in a fresh context, as in one of Ultralytics' pool threads: numpy's print options, which the
    labels' messages use, are context variables that Ultralytics sets in its main thread only."""
    return contextvars.Context().run(func, item)


def is_verifier(func: Any) -> bool:
    """One of Ultralytics' per-image checks of a data set's scan (`verify_image_label` for detect, segment, pose and
    obb, `verify_image` for classify, and the like): module-level functions of `ultralytics.data.utils` that read
    files and return what they found, so a forked process can run them."""
    return getattr(func, "__module__", None) == "ultralytics.data.utils" and func.__name__.startswith("verify_image")


def _pool_class(processes_of: Callable[[int], int]) -> type[ThreadPool]:
    """Ultralytics' ThreadPool, whose `imap` of a verifier scans in processes."""

    class ScanPool(ThreadPool):
        def imap(self, func: Any, iterable: Iterable[Any], chunksize: int | None = 1) -> Any:
            if not is_verifier(func):
                return super().imap(func, iterable, chunksize)
            items = list(iterable)
            return scan(func, items, processes_of(len(items)))

    return ScanPool


@contextlib.contextmanager
def in_processes(cpu_budget: float) -> Iterator[None]:
    """While inside, Ultralytics' label scans run in forked processes (`processes_for` the CPU budget); on Linux,
    where our pods run (elsewhere, macOS among them, forking a process that holds torch is not safe: unchanged)."""
    if not sys.platform.startswith("linux"):
        yield
        return
    from ultralytics.data import dataset

    original = dataset.ThreadPool  # type: ignore[attr-defined]
    dataset.ThreadPool = _pool_class(lambda images: processes_for(images, cpu_budget))  # type: ignore[attr-defined]
    try:
        yield
    finally:
        dataset.ThreadPool = original  # type: ignore[attr-defined]
