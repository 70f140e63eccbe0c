"""Prometheus metrics of a training pod: names in one place, and the callbacks that update them.

The metric names below are a contract with the dashboards and alerts in `manifests/monitoring`: change them only
together. Those the operator reads for `status.progress` are yolo_workloads.contract's, imported by both sides.
The callbacks run in the process that trains (the only process under DDP that has rank 0), start the HTTP endpoint
there, and also record the run's throughput in the output folder so the parent process of a DDP run can report it.
"""

from __future__ import annotations

import json
import time
from collections import deque
from pathlib import Path
from typing import Any

from yolo_workloads.contract import (
    DEFAULT_TASK,
    TRAIN_ACCURACY,
    TRAIN_EPOCH,
    TRAIN_EPOCHS_TOTAL,
    TRAIN_IMAGES_PER_SECOND,
    TRAIN_MAP50_95,
    ULTRALYTICS_METRIC_KEYS,
    Task,
    headline_key,
)

TRAIN_LOSS = "yolo_train_loss"  # label kind=box|cls|dfl
TRAIN_GPU_UTILIZATION = "yolo_train_gpu_utilization_percent"  # label gpu=<index>
TRAIN_GPU_MEMORY_USED = "yolo_train_gpu_memory_used_bytes"  # label gpu=<index>
ALL_METRICS = (
    TRAIN_EPOCH,
    TRAIN_EPOCHS_TOTAL,
    TRAIN_IMAGES_PER_SECOND,
    TRAIN_LOSS,
    TRAIN_MAP50_95,
    TRAIN_ACCURACY,
    TRAIN_GPU_UTILIZATION,
    TRAIN_GPU_MEMORY_USED,
)

THROUGHPUT_FILE = "throughput.json"
_WINDOW = 20  # batches in the moving images/s figure


class _Gauges:
    def __init__(self) -> None:
        from prometheus_client import Gauge

        self.epoch = Gauge(TRAIN_EPOCH, "Epochs completed")
        self.epochs = Gauge(TRAIN_EPOCHS_TOTAL, "Epochs this run trains for")
        self.ips = Gauge(TRAIN_IMAGES_PER_SECOND, "Training images per second (moving window)")
        self.loss = Gauge(TRAIN_LOSS, "Mean training loss of the current epoch", ["kind"])
        self.map = Gauge(TRAIN_MAP50_95, "Validation box mAP50-95 after the last epoch")
        self.accuracy = Gauge(
            TRAIN_ACCURACY, "The task's validation figure after the last epoch: box, mask or pose mAP50-95, top-1"
        )
        self.gpu_util = Gauge(TRAIN_GPU_UTILIZATION, "GPU utilisation (NVML)", ["gpu"])
        self.gpu_mem = Gauge(TRAIN_GPU_MEMORY_USED, "GPU memory used (NVML)", ["gpu"])


_gauges: _Gauges | None = None


def gauges() -> _Gauges:
    """The process's gauges, registered once (a second registration would raise)."""
    global _gauges
    if _gauges is None:
        _gauges = _Gauges()
    return _gauges


class TrainTelemetry:
    """Ultralytics callbacks that feed the gauges. Picklable (DDP ships callbacks to the ranks by cloudpickle)."""

    def __init__(self, port: int | None, output_dir: str, task: Task = DEFAULT_TASK) -> None:
        self.port = port
        self.output_dir = output_dir
        self.task = task
        self._reset()

    def _reset(self) -> None:
        self._started = False
        self._times: deque[float] = deque(maxlen=_WINDOW + 1)
        self._epoch_start = 0.0
        self._epoch_images = 0
        self._run_images = 0
        self._run_seconds = 0.0
        self._batches = 0

    def forget_run(self) -> None:
        """A tuning trial that trained into the run folder stopped (tune/in_training.py): its images and seconds
        leave the run's throughput; the metrics server, once started, stays."""
        started = self._started
        self._reset()
        self._started = started
        (Path(self.output_dir) / THROUGHPUT_FILE).unlink(missing_ok=True)

    def __getstate__(self) -> dict[str, Any]:
        return {"port": self.port, "output_dir": self.output_dir, "task": self.task}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.port, self.output_dir = state["port"], state["output_dir"]
        self.task = state.get("task", DEFAULT_TASK)
        self._reset()

    def register(self, trainer: Any) -> None:
        trainer.add_callback("on_train_start", self.on_train_start)
        trainer.add_callback("on_train_epoch_start", self.on_train_epoch_start)
        trainer.add_callback("on_train_batch_end", self.on_train_batch_end)
        trainer.add_callback("on_train_epoch_end", self.on_train_epoch_end)
        trainer.add_callback("on_fit_epoch_end", self.on_fit_epoch_end)

    def on_train_start(self, trainer: Any) -> None:
        if self._started:
            return
        self._started = True
        g = gauges()
        if self.port is not None:
            from prometheus_client import start_http_server

            start_http_server(self.port)
        g.epochs.set(trainer.epochs)
        g.epoch.set(trainer.start_epoch)
        _start_gpu_gauges(period=2.0)

    def on_train_epoch_start(self, trainer: Any) -> None:
        self._epoch_start = time.monotonic()
        self._epoch_images = 0
        self._times.clear()
        self._times.append(self._epoch_start)

    def on_train_batch_end(self, trainer: Any) -> None:
        self._epoch_images += int(trainer.batch_size)
        self._batches += 1
        self._times.append(time.monotonic())
        if len(self._times) > 1:
            span = self._times[-1] - self._times[0]
            if span > 0:
                gauges().ips.set((len(self._times) - 1) * trainer.batch_size / span)
        if self._batches % 10 == 0:
            self._set_losses(trainer)

    def _set_losses(self, trainer: Any) -> None:
        tloss = getattr(trainer, "tloss", None)  # {"box_loss": tensor, ...}: running mean of this epoch
        if not isinstance(tloss, dict):
            return
        for name, value in tloss.items():
            gauges().loss.labels(kind=str(name).removesuffix("_loss")).set(float(value))

    def on_train_epoch_end(self, trainer: Any) -> None:
        seconds = time.monotonic() - self._epoch_start
        self._run_images += self._epoch_images
        self._run_seconds += seconds
        self._set_losses(trainer)
        if self._run_seconds > 0:
            record = {"images_per_second": self._run_images / self._run_seconds, "seconds": self._run_seconds}
            path = Path(self.output_dir) / THROUGHPUT_FILE
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(record))
            tmp.replace(path)

    def on_fit_epoch_end(self, trainer: Any) -> None:
        g = gauges()
        g.epoch.set(trainer.epoch + 1)
        metrics = getattr(trainer, "metrics", None) or {}
        value = metrics.get(ULTRALYTICS_METRIC_KEYS["map50to95"])
        if value is not None:
            g.map.set(float(value))
        headline = metrics.get(headline_key(self.task))
        if headline is not None:
            g.accuracy.set(float(headline))


def _start_gpu_gauges(period: float) -> None:
    """Copy NVML readings into the GPU gauges every `period` seconds (daemon thread); nothing without a GPU."""
    import threading

    from yolo_workloads.system import gpu_samples

    if not gpu_samples():
        return  # no GPU: the GPU gauges stay absent rather than reading zero

    def loop() -> None:
        while True:
            for s in gpu_samples():
                gauges().gpu_util.labels(gpu=str(s.index)).set(s.utilization_percent)
                gauges().gpu_mem.labels(gpu=str(s.index)).set(s.memory_used_bytes)
            time.sleep(period)

    threading.Thread(target=loop, name="gpu-gauges", daemon=True).start()


def read_throughput(output_dir: Path) -> float | None:
    try:
        return float(json.loads((output_dir / THROUGHPUT_FILE).read_text())["images_per_second"])
    except (OSError, ValueError, KeyError):
        return None
