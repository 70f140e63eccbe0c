"""Source `pods`: read the autoscaling metric from each ready serving pod's /metrics (Prometheus text format).

Why scrape directly: the serving pods already export NVML utilisation and their queue depth, so the operator
needs neither Prometheus nor a custom-metrics adapter to autoscale. Only ready pods are scraped (an unready pod's
number says nothing about load it is not receiving); a ready pod that cannot be read counts as "missing" in the
HPA's sense. `PodMetricsSource` is a small Protocol so tests (and other transports) can plug in their own.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from yolo_workloads.contract import METRICS_PATH, SERVE_GPU_UTILIZATION_PERCENT, SERVE_QUEUE_DEPTH

from yolo_operator.autoscale.replicas import PodState

# The serving workload's metric names, from the contract both sides import.
GPU_UTILIZATION_METRIC = SERVE_GPU_UTILIZATION_PERCENT
QUEUE_DEPTH_METRIC = SERVE_QUEUE_DEPTH
METRIC_NAMES = {"gpuUtilization": GPU_UTILIZATION_METRIC, "queueDepth": QUEUE_DEPTH_METRIC}


@dataclass(frozen=True)
class PodEndpoint:
    """A pod of the service as the autoscaler sees it."""

    name: str
    state: PodState
    ip: str | None
    port: int


class PodMetricsSource(Protocol):
    """Reads one metric from each given (ready) pod; None for a pod that could not be read."""

    async def pod_values(self, metric: str, pods: Sequence[PodEndpoint]) -> dict[str, float | None]: ...


def parse_metric(text: str, name: str) -> float | None:
    """Mean of the samples of `name` in Prometheus text (a pod with several GPUs reports one per GPU)."""
    values: list[float] = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and not math.isnan(sample.value):
                values.append(float(sample.value))
    return sum(values) / len(values) if values else None


def pod_url(pod: PodEndpoint) -> str | None:
    return f"http://{pod.ip}:{pod.port}{METRICS_PATH}" if pod.ip else None


class HttpPodScraper:
    """Scrapes pods over HTTP concurrently, with a per-pod timeout."""

    def __init__(self, timeout_s: float = 3.0, url_for: Callable[[PodEndpoint], str | None] = pod_url) -> None:
        self.timeout_s = timeout_s
        self.url_for = url_for

    async def _one(self, session: aiohttp.ClientSession, metric: str, pod: PodEndpoint) -> float | None:
        url = self.url_for(pod)
        if url is None:
            return None
        try:
            async with session.get(url) as resp:
                if resp.status != 200:
                    return None
                return parse_metric(await resp.text(), metric)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None

    async def pod_values(self, metric: str, pods: Sequence[PodEndpoint]) -> dict[str, float | None]:
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            results = await asyncio.gather(*(self._one(session, metric, p) for p in pods))
        return {p.name: v for p, v in zip(pods, results, strict=True)}


def endpoint_of(pod: dict[str, Any], port: int) -> PodEndpoint:
    """Classify a pod as the HPA does: terminating or finished pods are gone, Pending or not-Ready are unready."""
    meta, status = pod.get("metadata", {}), pod.get("status", {})
    phase = status.get("phase")
    state: PodState
    if meta.get("deletionTimestamp") or phase in ("Failed", "Succeeded"):
        state = "gone"
    elif phase == "Running" and any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
    ):
        state = "ready"
    else:
        state = "unready"
    return PodEndpoint(str(meta.get("name", "")), state, status.get("podIP"), port)
