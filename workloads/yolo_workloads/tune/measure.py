"""One tuning trial: real Ultralytics training for a few dozen batches, timed in steady state.

The figure that matters is what training will achieve, so a trial runs Ultralytics' own trainer, dataloader and
augmentation with the candidate settings, and stops it from a callback once it has measured enough. Two things
make naive timing wrong, and are handled here:

- Warm-up: worker start, cuDNN autotuning, and above all the dataloader's prefetch queue (prefetch_factor 4 per
  worker: 64 batches at 16 workers) filled while the trainer was being set up. Consuming that queue runs at GPU
  speed even when the loader is the bottleneck. We leave warm-up after at least one batch per worker, once the
  trainer has waited for data (the queue is drained, so the loader's steady rate shows) or after a bounded time of
  training counted from the first batch's end; a loader that never makes the trainer wait is faster than the GPU,
  and then the GPU's rate is the right figure. The first batch's own time is not counted: it carries one-time work
  (on the H200 a yolov8s first batch waited 5 s on the augmentation kernel's compile, and a warm-up counted from the
  epoch's start then measured first-epoch batches: 590 images/s for training that ran at 727).
- Phase: the DataLoader hands out batches in order, worker after worker, and workers started together deliver in
  waves. A window shorter than a round of workers reads a wave or a gap; we measure whole rounds (every worker
  delivering the same number of batches), so the figure does not depend on where the window fell.
- Epoch ends: a small data set's epoch ends inside the window, and its last batch (usually shorter: eager under CUDA
  graphs, with cuDNN autotuning its new shapes) and the epoch's end are no steady training; they are left out of
  the window (on the H200 they made yolov8n's trial on 1,500 images read 604 images/s where training ran 1,120).
- Ultralytics halves the batch and retries on out-of-memory; in a trial that would hide the failure, so it is
  switched off and an OOM marks the trial infeasible.

Datasets are built once per process and shared by all trials (the label scan and the RAM cache are the slow part).

A trial may also be the training itself (`TrainingTrial`, tune/in_training.py): built with training's arguments, and
once measured the study decides whether it trains on (the meter lets go) or stops like any other trial.
"""

from __future__ import annotations

import functools
import gc
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from yolo_workloads.contract import Task
from yolo_workloads.train import images_ahead
from yolo_workloads.tune.search import TrialSettings

__all__ = ["Measurement", "TrainingTrial", "TrialPruned", "TrialSettings", "Window", "run_trial"]

FAULT_ENV = "YOLO_TUNE_INJECT_FAULT"
"""Test hook: `oom:N` or `dataloader:N` makes trial N (1-based) fail that way at its first batch."""


@dataclass
class Window:
    """Limits of one trial's timing."""

    warmup_min_batches: int = 3
    warmup_max_seconds: float = 6.0
    measure_min_batches: int = 8
    measure_rounds: int = 2  # whole rounds of workers (a batch from each) to measure
    measure_min_seconds: float = 2.0
    measure_max_seconds: float = 10.0
    deadline: float = float("inf")  # time.monotonic() by which the trial must stop


@dataclass
class Measurement:
    ips: float | None = None
    warmup_batches: int = 0
    measured_batches: int = 0
    measured_seconds: float = 0.0
    data_wait_fraction: float | None = None
    setup_seconds: float = 0.0
    seconds: float = 0.0
    error: str | None = None
    state: str = "ok"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainingTrial:
    """A trial run as the training itself: training's Ultralytics arguments (the trial's settings replace batch,
    workers, amp and cache), asked once measured whether it trains on."""

    overrides: dict[str, Any]
    """Training's arguments; `save_dir` is the run folder the trial trains into."""
    install: Callable[[Any], None]
    """Training's own callbacks on each trial's trainer (its telemetry)."""
    go_on: Callable[[Measurement, Any], bool]
    """Called with the measurement and the trainer once the trial is measured: True lets it train on to the end
    (its failures are then training's own and propagate); False stops it like any trial."""
    clean: Callable[[], None]
    """Removes what a stopped trial wrote into the run folder (an epoch's checkpoint and results row)."""


class _Stop(Exception):
    """Raised from a callback to end a trial once its measurement is complete."""


class InjectedFault(RuntimeError):
    pass


class TrialPruned(Exception):
    """Raised by a trial's `report` callback when the search judges the trial hopeless."""


def injected_fault(trial_number: int) -> str | None:
    spec = os.environ.get(FAULT_ENV, "")
    for item in spec.split(","):
        kind, _, number = item.partition(":")
        if number.strip().isdigit() and int(number) == trial_number and kind in {"oom", "dataloader"}:
            return kind
    return None


class _Meter:
    """Callbacks timing batches; reports running images/s to Optuna for pruning."""

    def __init__(
        self,
        window: Window,
        batch: int,
        workers: int,
        report: Any,
        fault: str | None,
        go_on: Callable[[Measurement, Any], bool] | None = None,
    ) -> None:
        self.window, self.batch, self.report, self.fault, self.go_on = window, batch, report, fault, go_on
        self.started = time.monotonic()
        self.released = False  # the trial trains on: every callback returns at once
        self.round = max(1, workers)
        self.warmup_batches = max(window.warmup_min_batches, self.round)
        self.measure_batches = self.round * max(window.measure_rounds, -(-window.measure_min_batches // self.round))
        self.result = Measurement()
        self.phase = "warmup"
        self.warm_start = 0.0
        self.first_end: float | None = None  # the first batch's end: warm-up's clock starts there
        self.batch_start = 0.0
        self.last_end: float | None = None
        self.waited = False
        self.t0 = 0.0
        self.wait_total = 0.0
        self._prev_start = 0.0
        self.index = 0  # the batch's index in its epoch
        self.epoch_batches = 0  # batches an epoch has (0: unknown)
        self.left_out = 0.0  # seconds of the window spent in epochs' last batches and ends
        self.paused_at: float | None = None

    def on_train_epoch_start(self, trainer: Any) -> None:
        if self.released:
            return
        trainer._oom_retries = 1 << 30  # no silent batch halving inside a trial
        if not self.warm_start:
            self.warm_start = time.monotonic()
        self.index, self.last_end = 0, None  # the epoch boundary is no wait for data
        loader = getattr(trainer, "train_loader", None)
        self.epoch_batches = len(loader) if loader is not None and hasattr(loader, "__len__") else 0
        self._end_pause(trainer)

    def _end_pause(self, trainer: Any) -> None:
        """The window resumes: the time since the epoch's last batch began is left out."""
        if self.paused_at is not None:
            _sync(trainer)
            self.left_out += time.monotonic() - self.paused_at
            self.paused_at = None

    def on_train_batch_start(self, trainer: Any) -> None:
        if self.released:
            return
        if self.phase == "measure" and self.epoch_batches > 1 and self.index == self.epoch_batches - 1:
            _sync(trainer)  # the window pauses until the next epoch starts
            self.paused_at = time.monotonic()
        self.batch_start = time.monotonic()
        if self.last_end is not None and self.paused_at is None:
            wait = self.batch_start - self.last_end
            self.waited = wait > 0.002 and wait > 0.1 * max(self.batch_start - self._prev_start, 1e-9)
            if self.phase == "measure":
                self.wait_total += wait
        self._prev_start = self.batch_start

    def on_train_batch_end(self, trainer: Any) -> None:
        if self.released:
            return
        if self.fault == "oom":
            import torch

            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected by " + FAULT_ENV + ")")
        if self.fault == "dataloader":
            raise InjectedFault("DataLoader worker exited unexpectedly (injected by " + FAULT_ENV + ")")
        if int(trainer.batch_size) != self.batch:
            raise RuntimeError(f"out of memory: Ultralytics reduced batch {self.batch} to {trainer.batch_size}")
        now = time.monotonic()
        self.last_end = now
        self.index += 1
        w = self.window
        if self.paused_at is not None:  # the epoch's last batch: not counted
            if now >= w.deadline:
                self._end_pause(trainer)
                if self.result.measured_batches >= 2:
                    self._finish(trainer)
                if not self.released:
                    raise _Stop
            return
        if self.phase == "warmup":
            self.result.warmup_batches += 1
            self.first_end = self.first_end or now  # its one-time work (kernel compiles, graph capture) no warm-up
            done = self.result.warmup_batches >= self.warmup_batches and (
                self.waited or now - self.first_end >= w.warmup_max_seconds
            )
            if now >= w.deadline:
                raise _Stop
            if done:
                _sync(trainer)
                self.phase, self.t0 = "measure", time.monotonic()
            return
        self.result.measured_batches += 1
        elapsed = now - self.t0 - self.left_out
        n = self.result.measured_batches
        if n >= 2:
            self.report(n * self.batch / elapsed, n)
        whole_rounds = n % self.round == 0
        if (n >= self.measure_batches and elapsed >= w.measure_min_seconds and whole_rounds) or (
            elapsed >= w.measure_max_seconds and (whole_rounds or n > 2 * self.measure_batches)
        ):
            self._finish(trainer)
            return
        if now >= w.deadline:
            if n >= 2:
                self._finish(trainer)
            if not self.released:
                raise _Stop

    def _finish(self, trainer: Any) -> None:
        """The measurement is complete: the trial stops (raises _Stop) unless `go_on` lets it train on."""
        _sync(trainer)
        now = time.monotonic()
        seconds = now - self.t0 - self.left_out
        r = self.result
        r.measured_seconds = seconds
        r.ips = r.measured_batches * self.batch / seconds
        r.data_wait_fraction = self.wait_total / seconds
        r.seconds = now - self.started
        r.setup_seconds = max(0.0, self.warm_start - self.started)
        if self.go_on is not None and self.go_on(r, trainer):
            self.released = True
            trainer._oom_retries = 0  # Ultralytics' own first-epoch OOM handling again
            return
        raise _Stop


def _sync(trainer: Any) -> None:
    import torch

    if getattr(trainer.device, "type", "cpu") == "cuda":
        torch.cuda.synchronize(trainer.device)


@functools.cache
def shared_data_trainer_class(task: Task = "detect", augmentation: str = "cpu") -> type:
    """The task's trainer (the one training will run), building each dataset once per process."""
    from yolo_workloads.train.trainer import trainer_class

    base: Any = trainer_class(task, augmentation)

    class TuneTrainer(base):  # type: ignore[misc]
        """Builds each dataset once per process: later trials reuse the scan and the RAM cache."""

        datasets: ClassVar[dict[tuple[Any, ...], Any]] = {}
        train_build_seconds: ClassVar[float] = 0.0
        """Seconds the latest trial spent building its training set (0 when it reused one): the RAM cache fill."""

        def build_dataset(self, img_path: str, mode: str = "train", batch: int | None = None) -> Any:
            key = (img_path, mode, str(self.args.cache), self.args.imgsz, None if mode == "train" else batch)
            if key not in self.datasets:
                start = time.monotonic()
                self.datasets[key] = super().build_dataset(img_path, mode, batch)
                if mode == "train":
                    type(self).train_build_seconds = time.monotonic() - start
            return self.datasets[key]

    return TuneTrainer


def run_trial(
    number: int,
    settings: TrialSettings,
    *,
    model: str,
    data: str,
    imgsz: int,
    device: str,
    work_dir: Path,
    window: Window,
    report: Any,
    task: Task = "detect",
    cuda_graphs: bool = True,
    augmentation: str = "cpu",
    norm_batch: int | None = None,
    training: TrainingTrial | None = None,
) -> Measurement:
    """Train with `settings` until measured; never raises for OOM, dataloader or trainer failures of the trial.
    With `training`, a trial that goes on trains to the end: `extra["trainer"]` holds its trainer (also when the
    training ended before the measurement did), and a failure after it went on propagates."""
    from ultralytics.utils import DEFAULT_CFG_DICT

    trainer_class: Any = shared_data_trainer_class(task, augmentation)
    trainer_class.train_build_seconds = 0.0
    trainer = None
    go_on = _asking(training, trainer_class) if training is not None else None
    meter = _Meter(window, settings.batch, settings.workers, report, injected_fault(number), go_on)
    start = meter.started
    run_dir = work_dir / f"trial{number}"
    overrides = _trial_overrides(settings, model, data, imgsz, device, work_dir, run_dir)
    if training is not None:
        run_dir = Path(training.overrides["save_dir"])
        overrides = {**training.overrides, **_settings_overrides(settings)}
    result = meter.result
    if settings.cache == "ram":  # decoded while the trainer is built (train/images_ahead.py)
        images_ahead.for_ram_cache(Path(data), task, device)
    try:
        trainer = trainer_class(cfg={**DEFAULT_CFG_DICT, "save_dir": str(run_dir)}, overrides=overrides)
        for event in ("on_train_epoch_start", "on_train_batch_start", "on_train_batch_end"):
            trainer.add_callback(event, getattr(meter, event))
        _as_training_runs(trainer, cuda_graphs, device, norm_batch, settings.batch, training)
        trainer.train()
        if training is None:
            result.state, result.error = "infeasible", "training ended before the measurement"
        else:  # it trained to the end: released after its measurement, or a training shorter than one
            result.extra["trainer"] = trainer
    except _Stop:
        if result.ips is None:
            result.state, result.error = "infeasible", "time budget ran out during warm-up"
    except TrialPruned:
        result.state = "pruned"
    except Exception as e:
        if meter.released:
            raise  # training's own failure, after the trial went on
        result.state, result.error = "infeasible", _failure(e)
    finally:
        _end(trainer, meter, start)
        del trainer
        if "trainer" not in result.extra:
            _release_memory()
            if training is None:
                shutil.rmtree(run_dir, ignore_errors=True)
            else:
                training.clean()
    if not meter.released:
        result.seconds = time.monotonic() - start
    result.extra["train_build_seconds"] = trainer_class.train_build_seconds
    return result


def _as_training_runs(
    trainer: Any, cuda_graphs: bool, device: str, norm_batch: int | None, batch: int, training: TrainingTrial | None
) -> None:
    """A trial measures what training will run: its CUDA graphs and norm groups (and, as the training, its
    callbacks)."""
    from yolo_workloads.train import host_waits, norm_groups

    host_waits.install_with_graphs(trainer, cuda_graphs, device, 1)
    norm_groups.install_when_usable(trainer, norm_batch, batch, 1)
    if training is not None:
        training.install(trainer)


def _asking(training: TrainingTrial, trainer_class: Any) -> Callable[[Measurement, Any], bool]:
    """`training.go_on`, told the data set's build time first (the study weighs the RAM cache's fill by it)."""

    def go_on(m: Measurement, trainer: Any) -> bool:
        m.extra["train_build_seconds"] = trainer_class.train_build_seconds
        return training.go_on(m, trainer)

    return go_on


def _failure(error: Exception) -> str:
    """A failed trial's error: out of memory, the dataloader, or the exception's type, with its first line."""
    import torch

    text = str(error)
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return _short("out of memory", error)
    if "DataLoader" in text or "worker" in text.lower():
        return _short("dataloader", error)
    return _short("out of memory" if "out of memory" in text.lower() else type(error).__name__, error)


def _end(trainer: Any, meter: _Meter, start: float) -> None:
    """A trial's trainer is done: its setup time recorded, its loaders' workers stopped."""
    if trainer is None:
        return
    if not meter.released:
        meter.result.setup_seconds = max(0.0, meter.warm_start - start) if meter.warm_start else 0.0
    for loader in (getattr(trainer, "train_loader", None), getattr(trainer, "test_loader", None)):
        if loader is not None and hasattr(loader, "close"):
            loader.close()  # stop this trial's workers before the next one forks its own


def _release_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _settings_overrides(settings: TrialSettings) -> dict[str, Any]:
    return {
        "batch": settings.batch,
        "workers": settings.workers,
        "amp": settings.amp,
        "cache": False if settings.cache == "none" else settings.cache,
    }


def _trial_overrides(
    settings: TrialSettings, model: str, data: str, imgsz: int, device: str, work_dir: Path, run_dir: Path
) -> dict[str, Any]:
    """A trial of its own: no validation, no checkpoints, epochs enough to keep a tiny data set's loader going."""
    return {
        "model": model,
        "data": data,
        "imgsz": imgsz,
        **_settings_overrides(settings),
        "deterministic": False,  # as `yolo-workload train` runs unless the spec asks for determinism
        "device": device,
        "epochs": 1000,  # the trial stops itself; many epochs keep the loader running on tiny data sets
        "val": False,
        "plots": False,
        "save": False,
        "verbose": False,
        "project": str(work_dir),
        "name": run_dir.name,
        "exist_ok": True,
        "save_dir": str(run_dir),
    }


def _short(kind: str, error: BaseException) -> str:
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"{kind}: {first}"[:120]
