"""Checkpoints written while the next epoch trains.

Ultralytics writes `last.pt` (and `best.pt` when the epoch is the best) at every epoch's end, on the training thread:
it copies the EMA model and the optimizer's state, serialises them with the run's metadata and writes the bytes
twice. Measured on an H200 (docs/benchmarks.md, "Checkpoints off the training thread"), that is 0.2 s of every
yolov8n epoch and 0.4-0.6 s of every yolov8s one: a fifth of a tuned epoch, paid 30 times in a 30-epoch job.

Here the training thread only copies what the checkpoint holds into host buffers kept from one epoch to the next
(`frozen`: tens of milliseconds, and no GPU memory beyond what training has), and a writer thread runs Ultralytics'
own `save_model` on that copy (0.1 s of the training thread is left; the writer's pickling, which shares the
interpreter lock, slows the next epoch by about 0.2 s: net 0.4 s a yolov8s epoch). The checkpoint's content is the one
Ultralytics writes, with its tensors on the host (every reader of ours and Ultralytics' loads them with
`map_location="cpu"` anyway). Writes stay in order: a save waits for the one before it. The trainer waits for the
last one before anything reads the files (final evaluation, NaN recovery) and before `train()` returns or raises, so
a resumed or finished run always finds the checkpoint of its last epoch. The writer is no daemon: a process that
exits mid-write still finishes the file, which `trainer._Offline` renames into place only once complete.
"""

from __future__ import annotations

import copy
import itertools
import threading
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import torch


class HostCopies:
    """Host tensors that receive the device's at each save, allocated at the first and reused after: a fresh 100 MB
    on the host each epoch would cost its page faults every time. A copy is valid until the next one; the writer that
    owns them is waited for before that."""

    def __init__(self) -> None:
        self._buffers: dict[tuple[Any, ...], torch.Tensor] = {}

    def tensor(self, key: tuple[Any, ...], value: torch.Tensor) -> torch.Tensor:
        value = value.detach()
        buffer = self._buffers.get(key)
        if buffer is None or buffer.shape != value.shape or buffer.dtype != value.dtype:
            buffer = self._buffers[key] = torch.empty(value.shape, dtype=value.dtype, device="cpu")
        return buffer.copy_(value)

    def module(self, module: torch.nn.Module) -> torch.nn.Module:
        """A deep copy of `module` whose parameters and buffers are host copies (the module is not touched)."""
        memo: dict[int, Any] = {}
        for index, tensor in enumerate(itertools.chain(module.parameters(), module.buffers())):
            host = self.tensor(("module", index), tensor)
            memo[id(tensor)] = (
                torch.nn.Parameter(host, tensor.requires_grad) if isinstance(tensor, torch.nn.Parameter) else host
            )
        return copy.deepcopy(module, memo)

    def tree(self, value: Any, key: tuple[Any, ...] = ("tree",)) -> Any:
        """`value` (a state dict: dicts, lists, tensors, numbers) with its tensors copied to the host."""
        if isinstance(value, torch.Tensor):
            return self.tensor(key, value)
        if isinstance(value, dict):
            return {k: self.tree(v, (*key, k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.tree(v, (*key, i)) for i, v in enumerate(value))
        return copy.deepcopy(value)


class CheckpointWriter:
    """One background write at a time, of a copy in `host`; a failure is raised by the next `submit` or `wait`."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.host = HostCopies()
        """Where the training thread copies a checkpoint's tensors; free again once `wait` returns."""

    def submit(self, write: Callable[[], object]) -> None:
        self.wait()
        self._thread = threading.Thread(target=self._run, args=(write,), name="checkpoint-writer")
        self._thread.start()

    def wait(self) -> None:
        """Until the last submitted write has finished; re-raise its failure (once)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is not None:
            raise RuntimeError(f"writing the checkpoint failed: {error}") from error

    def _run(self, write: Callable[[], object]) -> None:
        try:
            write()
        except BaseException as e:  # handed to the training thread
            self._error = e


def finite(model: torch.nn.Module) -> bool:
    """Whether every floating-point weight and buffer is finite (one device sync, not one per tensor)."""
    checks = [torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point()]
    return bool(torch.stack(checks).all()) if checks else True


def frozen(trainer: Any, rows: dict[str, list[Any]], host: HostCopies) -> SimpleNamespace:
    """What Ultralytics' `save_model` reads from a trainer, copied now (tensors into `host`): the next epoch may
    change all of it. `rows` is results.csv as read now (the writer must not see a later epoch's row)."""
    optimizer_state = host.tree(trainer.optimizer.state_dict())
    scaler_state = copy.deepcopy(trainer.scaler.state_dict())
    results = copy.deepcopy(rows)
    return SimpleNamespace(
        ema=SimpleNamespace(ema=host.module(trainer.ema.ema), updates=trainer.ema.updates),
        model=None,  # read only to repair a non-finite EMA, which is saved on the training thread instead
        epoch=trainer.epoch,
        best_fitness=copy.deepcopy(trainer.best_fitness),
        fitness=copy.deepcopy(trainer.fitness),
        metrics=copy.deepcopy(trainer.metrics),
        stopper=SimpleNamespace(best_fitness=trainer.stopper.best_fitness, best_epoch=trainer.stopper.best_epoch),
        optimizer=SimpleNamespace(state_dict=lambda: optimizer_state),
        scaler=SimpleNamespace(state_dict=lambda: scaler_state),
        args=copy.copy(trainer.args),
        read_results_csv=lambda: results,
        wdir=trainer.wdir,
        last=trainer.last,
        best=trainer.best,
        save_period=trainer.save_period,
    )
