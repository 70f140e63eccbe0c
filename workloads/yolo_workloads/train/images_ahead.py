"""The RAM cache's images decoded while the training process sets up: filling the cache then only collects them.

Why: Ultralytics fills the RAM cache (`BaseDataset.cache_images`) once the trainer is built. On the H200 with 16 CPUs
that fill took 2.8 s for 1,500 images at 640, and the validation set's 0.55 s, of the 18 s before a tuned yolov8s
training's first batch (docs/benchmarks.md), while the CPUs sat idle through the imports, the memory probe and
Ultralytics' `BaseTrainer.__init__` before it. Threads here decode each image from the start with Ultralytics' own
`imread` and flags; while any are held, `ultralytics.data.base.imread` (what `load_image` calls) hands out the
decoded one, so the cache holds the same arrays, resized by Ultralytics as before.

Bounded: decoded images wait in memory for the fill, so decoding stops once they would pass `limit_bytes` (the rest
are read as before). `release()` drops what was not taken and gives Ultralytics its `imread` back; the trainer calls
it when its set-up ends. A forked dataloader worker never waits on this process's threads: it reads as before.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

Reader = Callable[..., Any]
"""Ultralytics' `imread(filename, flags)`: the decoded image, or None."""


class ImagesAhead:
    """Images decoded by `threads` threads in the order given, taken once each by path and flags."""

    def __init__(self, files: Sequence[Path], flags: int, limit_bytes: int, threads: int, read: Reader) -> None:
        self.flags, self.limit_bytes, self.read = flags, limit_bytes, read
        self.pid = os.getpid()
        self.held_bytes = 0
        self.taken = 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="images-ahead")
        self._futures: dict[str, Future[Any]] = {_key(f): self._pool.submit(self._decode, f) for f in files}

    def _decode(self, path: Path) -> Any:
        if self.held_bytes >= self.limit_bytes:
            return None  # over the bound: read when the cache fill asks
        try:
            image = self.read(str(path), self.flags)
        except Exception:  # read again by the fill, which reports it as Ultralytics does
            return None
        with self._lock:
            self.held_bytes += getattr(image, "nbytes", 0)
        return image

    def take(self, filename: Any, flags: int) -> Any:
        """The decoded image of `filename` (waiting for it if it is on its way), once; None: read it yourself."""
        if flags != self.flags or os.getpid() != self.pid:
            return None
        with self._lock:
            future = self._futures.pop(_key(filename), None)
        image = None if future is None else future.result()
        if image is not None:
            with self._lock:
                self.held_bytes -= image.nbytes
                self.taken += 1
        return image

    def close(self) -> None:
        """Stops decoding and drops the images not taken."""
        with self._lock:
            futures, self._futures = self._futures, {}
        for future in futures.values():
            future.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.held_bytes = 0


_active: ImagesAhead | None = None
_started = False
COLOUR = 1
"""cv2.IMREAD_COLOR: what Ultralytics' dataset reads a data set of three channels with (its default)."""


def for_ram_cache(yaml_path: Path, task: str, device: str) -> ImagesAhead | None:
    """Starts decoding a data set's train and val images ahead, once per process, for a RAM cache that Ultralytics
    fills in this process: a data set YAML of colour images (not a classify folder, whose dataset reads otherwise),
    on one device (DDP's ranks are processes of their own). Bounded by the share of the memory budget the RAM cache
    may take (tune/space.py), decoded by as many threads as the CPU budget holds: set-up leaves them idle."""
    global _started
    if _started or task == "classify" or "," in device or not yaml_path.is_file():
        return None
    _started = True
    import yaml

    from yolo_workloads import system
    from yolo_workloads.datasets.validate import DatasetError, split_images
    from yolo_workloads.tune.space import RAM_CACHE_SHARE

    budget = system.memory_budget()
    try:
        if not budget or (yaml.safe_load(yaml_path.read_text()) or {}).get("channels", 3) != 3:
            return None
        files = split_images(yaml_path, "train")
    except (OSError, yaml.YAMLError, DatasetError):  # the cache fill reads them as before, and says what is wrong
        return None
    with contextlib.suppress(DatasetError):  # no val split: the train images alone
        files += split_images(yaml_path, "val")
    return start(files, COLOUR, int(RAM_CACHE_SHARE * budget), int(system.cpu_budget()))


def start(files: Sequence[Path], flags: int, limit_bytes: int, threads: int) -> ImagesAhead:
    """Decodes `files` ahead for the RAM cache fill, replacing any earlier set."""
    global _active
    from ultralytics.data import base

    release()
    _active = ImagesAhead(files, flags, limit_bytes, threads, base.imread)  # type: ignore[attr-defined]
    base.imread = _imread  # type: ignore[attr-defined]
    return _active


def release() -> None:
    """Ultralytics' own `imread` back; the images not taken dropped."""
    global _active
    ahead, _active = _active, None
    if ahead is None:
        return
    from ultralytics.data import base

    base.imread = ahead.read  # type: ignore[attr-defined]
    ahead.close()


def _imread(filename: Any, flags: int = COLOUR) -> Any:
    ahead = _active
    image = None if ahead is None else ahead.take(filename, flags)
    if image is not None:
        return image
    if ahead is not None:
        return ahead.read(filename, flags)
    from ultralytics.utils import patches  # released by another thread meanwhile

    return patches.imread(filename, flags)


def _key(path: Any) -> str:
    return os.path.realpath(str(path))
