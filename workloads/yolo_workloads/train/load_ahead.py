"""The GPU augmentation's training loader, each batch made ready one batch ahead in a thread: its JPEGs decoded
(train/gpu_decode.py) and the host's half of its augmentation planned (train/gpu_augment.py `GpuAugment.plan`).

Why: the training process's host side bounds the GPU path. nvJPEG's batch decode returns only once the batch is
decoded (13 ms for 128 images at 640 on an H200); decoded in the step, 1,377 images/s, one batch ahead 1,511
(docs/benchmarks.md). The augmentation's random draw and label transforms are numpy on the host, 16-21 ms a batch
of 128 on the crowded set on an H100's host (2026-12-05), while the training thread spends about as long waiting for
the GPU inside the loss; here they run in that wait (numpy lets the GIL go in its loops).
"""

from __future__ import annotations

import atexit
import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from yolo_workloads.train import gpu_decode

DECODED = "decoded_images"
"""A batch's key: its images decoded ahead, their padding, and the event that says they are ready."""

PLANNED = "augment_plan"
"""A batch's key: the host's half of its augmentation, planned ahead (what `plan` returned for it)."""


class LoadAhead:
    """The training loader, each batch made ready one batch ahead by a thread while the training process runs the
    step before it: its JPEGs decoded, and `plan(batch)` kept under PLANNED (the thread plans the batches in the
    loader's order, so a random draw in `plan` comes out as it would in the step).

    The thread decodes on a side stream of its own; the batch carries its images with an event the training stream
    waits for (no host wait). Everything else is the loader's (`len`, `dataset`, `sampler`, `reset`). An epoch left
    early (training stopped) drops the batches made ready ahead, at most three. The thread starts at an epoch's first
    batch, so what the trainer changes before it (mosaic closed) holds for the whole epoch."""

    def __init__(
        self, loader: Any, imgsz: int, device: torch.device, plan: Callable[[dict[str, Any]], Any] | None = None
    ) -> None:
        self.loader, self.imgsz, self.device, self.plan = loader, imgsz, device, plan

    def __getattr__(self, name: str) -> Any:
        if name == "loader":  # not set yet (a copy): no recursion
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        ready: queue.Queue[Any] = queue.Queue(maxsize=2)
        stop = threading.Event()
        thread = threading.Thread(target=self._make_ready, args=(ready, stop), daemon=True, name="load-ahead")
        _RUNNING[thread] = stop
        thread.start()
        try:
            while (item := ready.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:  # an epoch left early: the thread stops at its next batch; nothing here waits for it
            stop.set()

    def _make_ready(self, ready: queue.Queue[Any], stop: threading.Event) -> None:
        try:
            self._make_each_ready(ready, stop)
        finally:
            _RUNNING.pop(threading.current_thread(), None)

    def _make_each_ready(self, ready: queue.Queue[Any], stop: threading.Event) -> None:
        try:
            with _on_side_stream(self.device):
                for batch in self.loader:
                    if stop.is_set():
                        return
                    if gpu_decode.ENCODED in batch:
                        batch[DECODED] = self._decoded(batch)
                    if self.plan is not None:
                        batch[PLANNED] = self.plan(batch)
                    if not _hand(ready, batch, stop):
                        return
        except BaseException as e:  # handed to the training process, which raises it
            _hand(ready, e, stop)
            return
        _hand(ready, _END, stop)

    def _decoded(self, batch: dict[str, Any]) -> tuple[torch.Tensor, np.ndarray, torch.cuda.Event | None]:
        sizes, pads = gpu_decode.placement(batch)
        images, pixel_pads = gpu_decode.batch_images(batch, sizes, pads, self.imgsz, self.device)
        if self.device.type != "cuda":
            return images, pixel_pads, None
        done = torch.cuda.Event()  # type: ignore[no-untyped-call]
        done.record()
        return images, pixel_pads, done


_END = object()

_RUNNING: dict[threading.Thread, threading.Event] = {}
"""The threads making batches ready, each with its stop event."""

EXIT_WAIT_S = 5.0
"""How long the process's exit waits for each thread still making batches ready."""


@atexit.register
def stop_threads() -> None:
    """Stops the threads still making batches ready and waits for each (at most `EXIT_WAIT_S`): one still inside a
    CUDA or loader call when the interpreter finalises is ended there, and the process aborts ("terminate called
    after throwing an instance of ''", exit 134, after a GPU test run that had passed, twice on an H100, 2026-12-06:
    a test had left an epoch after one batch just before the process ended)."""
    for thread, stop in list(_RUNNING.items()):
        stop.set()
        thread.join(timeout=EXIT_WAIT_S)


def _hand(ready: queue.Queue[Any], item: Any, stop: threading.Event) -> bool:
    """Put `item` for the training process unless it has left the epoch (False then)."""
    while not stop.is_set():
        with contextlib.suppress(queue.Full):
            ready.put(item, timeout=0.1)
            return True
    return False


def _on_side_stream(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    if device.type != "cuda":
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(torch.cuda.device(device))
    stack.enter_context(torch.cuda.stream(gpu_decode.side_stream(device)))
    return stack


def take(batch: dict[str, Any], device: torch.device) -> tuple[torch.Tensor, np.ndarray]:
    """A batch's images decoded ahead (`LoadAhead`), ready for the current stream."""
    images, pixel_pads, done = batch.pop(DECODED)
    if done is not None:
        stream = torch.cuda.current_stream(device)
        stream.wait_event(done)
        images.record_stream(stream)
    return images, pixel_pads
