"""Training progress from a training pod's Prometheus endpoint → `status.progress`.

The source is a Protocol so tests (and the local runner) substitute their own; `HttpMetricsSource` scrapes
`http://<pod IP>:<port>/metrics`. Metric names and path are the contract's (yolo_workloads.contract), which the
training workload exports by.
"""

from __future__ import annotations

import urllib.request
from datetime import datetime
from typing import Protocol

from prometheus_client.parser import text_string_to_metric_families
from yolo_workloads.contract import (
    METRICS_PATH,
    TRAIN_ACCURACY,
    TRAIN_EPOCH,
    TRAIN_EPOCHS_TOTAL,
    TRAIN_IMAGES_PER_SECOND,
    TRAIN_MAP50_95,
)

from yolo_operator.api.train_job import Progress
from yolo_operator.lifecycle.conditions import parse_time, rfc3339

WANTED = (TRAIN_EPOCH, TRAIN_EPOCHS_TOTAL, TRAIN_IMAGES_PER_SECOND, TRAIN_MAP50_95, TRAIN_ACCURACY)


class MetricsSource(Protocol):
    def read(self, host: str, port: int) -> dict[str, float]:
        """Unlabelled samples by metric name; raise OSError/ValueError when the pod cannot be read."""
        ...


class HttpMetricsSource:
    """Scrape the Prometheus text format over HTTP (pods serve it without TLS inside the cluster)."""

    def __init__(self, timeout_s: float = 5.0) -> None:
        self.timeout_s = timeout_s

    def read(self, host: str, port: int) -> dict[str, float]:
        url = f"http://{host}:{port}{METRICS_PATH}"
        with urllib.request.urlopen(url, timeout=self.timeout_s) as response:
            text = response.read().decode()
        return parse_samples(text)


def parse_samples(text: str) -> dict[str, float]:
    """The unlabelled samples of the Prometheus text format (gauges and counters by their sample name)."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.labels:
                values[sample.name] = float(sample.value)
    return values


def progress_from(samples: dict[str, float], started_at: str | None, now: datetime) -> Progress | None:
    """Progress from a scrape; the ETA assumes the epochs still to run take as long as the ones done in this
    pod's lifetime so far. None when the pod exposes none of our metrics yet."""
    if not any(name in samples for name in WANTED):
        return None
    epoch = int(samples[TRAIN_EPOCH]) if TRAIN_EPOCH in samples else None
    epochs = int(samples[TRAIN_EPOCHS_TOTAL]) if TRAIN_EPOCHS_TOTAL in samples else None
    eta = None
    start = parse_time(started_at)
    if epoch and epochs and start is not None and epochs >= epoch:
        per_epoch = max((now - start).total_seconds(), 0.0) / epoch
        eta = round(per_epoch * (epochs - epoch))
    ips = samples.get(TRAIN_IMAGES_PER_SECOND)
    map_ = samples.get(TRAIN_MAP50_95)
    accuracy = samples.get(TRAIN_ACCURACY)
    return Progress(
        epoch=epoch,
        epochs=epochs,
        images_per_second=round(ips, 1) if ips is not None else None,
        map50to95=round(map_, 4) if map_ is not None else None,
        accuracy=round(accuracy, 4) if accuracy is not None else None,
        eta_seconds=eta,
        updated=rfc3339(now),
    )
