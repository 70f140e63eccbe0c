"""The training loader with each batch's JPEGs decoded one batch ahead (train/gpu_decode.py), in a thread.

Why: nvJPEG's batch decode returns only once the batch is decoded (13 ms for 128 images at 640 on an H200); in the
training step that wait held the training process, which bounds the GPU augmentation path. A thread decodes batch
k+1 on a side stream while the step of batch k runs: 1,377 to 1,511 images/s (docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from yolo_workloads.train import gpu_decode

DECODED = "decoded_images"
"""A batch's key: its images decoded ahead, their padding, and the event that says they are ready."""


class DecodeAhead:
    """The training loader, each batch's JPEGs decoded one batch ahead by a thread while the training process runs
    the step before it: the wait for the decoder (13 ms a batch of 128 at 640 on an H200) leaves the step's path.

    The thread works on a side stream of its own; the batch carries its images with an event the training stream
    waits for (no host wait). Everything else is the loader's (`len`, `dataset`, `sampler`, `reset`). An epoch left
    early (training stopped) drops the batches decoded ahead, at most three."""

    def __init__(self, loader: Any, imgsz: int, device: torch.device) -> None:
        self.loader, self.imgsz, self.device = loader, imgsz, device

    def __getattr__(self, name: str) -> Any:
        if name == "loader":  # not set yet (a copy): no recursion
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        ready: queue.Queue[Any] = queue.Queue(maxsize=2)
        stop = threading.Event()
        thread = threading.Thread(target=self._decode_all, args=(ready, stop), daemon=True, name="decode-ahead")
        thread.start()
        try:
            while (item := ready.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:  # an epoch left early: the thread stops at its next batch; nothing here waits for it
            stop.set()

    def _decode_all(self, ready: queue.Queue[Any], stop: threading.Event) -> None:
        try:
            with _on_side_stream(self.device):
                for batch in self.loader:
                    if stop.is_set():
                        return
                    if gpu_decode.ENCODED in batch:
                        batch[DECODED] = self._decoded(batch)
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
    """A batch's images decoded ahead (`DecodeAhead`), ready for the current stream."""
    images, pixel_pads, done = batch.pop(DECODED)
    if done is not None:
        stream = torch.cuda.current_stream(device)
        stream.wait_event(done)
        images.record_stream(stream)
    return images, pixel_pads
