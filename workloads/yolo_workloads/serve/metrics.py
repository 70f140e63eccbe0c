"""Prometheus metrics of the inference server: the names live here, once (those the operator reads, in the contract).

The operator's autoscaler scrapes `yolo_serve_gpu_utilization_percent` and `yolo_serve_queue_depth` from each
pod's /metrics (those two are named in yolo_workloads.contract, which both sides import), and dashboards are
cross-checked against these names, so they are constants that other code (and people) can import and grep.
Each server builds its own registry so several servers can live in one process (tests) without clashing.
NVML is optional: on a machine without a GPU the GPU gauges stay at 0.

Several worker processes (`workers > 1`) use prometheus_client's multiprocess mode: the parent sets
PROMETHEUS_MULTIPROC_DIR (emptied at start) before the workers import prometheus_client, each worker writes its
values to files there, and whichever worker takes a scrape answers for all of them (counters and histograms
summed; queue depth and in-flight requests summed over live workers; GPU gauges, device-wide, the live maximum).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

from yolo_workloads.contract import SERVE_GPU_UTILIZATION_PERCENT, SERVE_QUEUE_DEPTH

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS_TOTAL = "yolo_serve_requests_total"
"""Counter {endpoint, code}: HTTP requests answered. (prometheus_client adds `_total` to the counter name.)"""
REQUEST_DURATION_SECONDS = "yolo_serve_request_duration_seconds"
"""Histogram {endpoint}: wall time from request received to response ready."""
BATCH_SIZE = "yolo_serve_batch_size"
"""Histogram: images in each batch handed to the device."""
QUEUE_DEPTH = SERVE_QUEUE_DEPTH
"""Gauge: images accepted and waiting for the device (the backlog the autoscaler reads; named in the contract)."""
INFLIGHT_REQUESTS = "yolo_serve_inflight_requests"
"""Gauge: HTTP requests being handled now."""
IMAGES_TOTAL = "yolo_serve_images_total"
"""Counter: images run through the model; images/s is its rate()."""
GPU_UTILIZATION_PERCENT = SERVE_GPU_UTILIZATION_PERCENT
"""Gauge: NVML GPU utilisation of the serving GPU, 0-100 (0 without a GPU; named in the contract)."""
GPU_MEMORY_USED_BYTES = "yolo_serve_gpu_memory_used_bytes"
"""Gauge: NVML memory used on the serving GPU (0 without a GPU)."""

ALL_NAMES = (
    REQUESTS_TOTAL,
    REQUEST_DURATION_SECONDS,
    BATCH_SIZE,
    QUEUE_DEPTH,
    INFLIGHT_REQUESTS,
    IMAGES_TOTAL,
    GPU_UTILIZATION_PERCENT,
    GPU_MEMORY_USED_BYTES,
)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 512)
log = logging.getLogger(__name__)


def _base(name: str, suffix: str) -> str:
    """prometheus_client appends `_total` to counters itself."""
    return name[: -len(suffix)] if name.endswith(suffix) else name


class ServeMetrics:
    """The server's metric objects on a private registry."""

    def __init__(self) -> None:
        # Multiprocess values are chosen when prometheus_client is imported; the env says which mode that was.
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        disable_created_metrics()  # type: ignore[no-untyped-call]  # `_created` series double the scrape for nothing a dashboard uses
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            _base(REQUESTS_TOTAL, "_total"), "HTTP requests answered", ["endpoint", "code"], registry=r
        )
        self.duration = Histogram(
            REQUEST_DURATION_SECONDS, "Request latency", ["endpoint"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.batch_size = Histogram(BATCH_SIZE, "Images per device batch", buckets=_BATCH_BUCKETS, registry=r)
        self.queue_depth = Gauge(QUEUE_DEPTH, "Images waiting for the device", registry=r, multiprocess_mode="livesum")
        self.inflight = Gauge(INFLIGHT_REQUESTS, "HTTP requests being handled", registry=r, multiprocess_mode="livesum")
        self.images = Counter(_base(IMAGES_TOTAL, "_total"), "Images run through the model", registry=r)
        self.gpu_util = Gauge(
            GPU_UTILIZATION_PERCENT, "GPU utilisation (NVML), percent", registry=r, multiprocess_mode="livemax"
        )
        self.gpu_mem = Gauge(
            GPU_MEMORY_USED_BYTES, "GPU memory used (NVML), bytes", registry=r, multiprocess_mode="livemax"
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def render(self) -> bytes:
        if not self.multiprocess:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated
        return generate_latest(merged)

    def start_gpu_sampler(self, gpu_index: int | None, period_s: float = 1.0) -> None:
        """Sample NVML in a thread; silently absent (0) when there is no GPU or no NVML."""
        if gpu_index is None:
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            handle: Any = pynvml.nvmlDeviceGetHandleByIndex(gpu_index)
        except Exception as exc:  # no driver, no library: metrics stay 0
            log.warning("NVML unavailable, GPU metrics stay 0: %s", exc)
            return

        def sample() -> None:
            while not self._stop.wait(period_s):
                try:
                    self.gpu_util.set(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
                    self.gpu_mem.set(pynvml.nvmlDeviceGetMemoryInfo(handle).used)
                except Exception as exc:
                    log.warning("NVML sample failed: %s", exc)

        self._thread = threading.Thread(target=sample, name="nvml-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self.multiprocess:  # this worker's live gauges leave the sums
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]  # unannotated upstream


def prepare_multiprocess_dir(path: str | None) -> str:
    """Create (or empty) the directory for multiprocess metrics and export it; call before workers start.

    Values left by a previous run would otherwise be summed into this one's counters."""
    import tempfile

    d = Path(path) if path else Path(tempfile.mkdtemp(prefix="yolo-serve-metrics-"))
    d.mkdir(parents=True, exist_ok=True)
    for f in d.glob("*.db"):
        f.unlink()
    os.environ[MULTIPROC_ENV] = str(d)
    return str(d)
