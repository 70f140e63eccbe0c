"""What this container may use: its cgroup CPU and memory budget, and the GPUs through NVML.

Kubernetes limits a pod through cgroups, while `os.cpu_count()` and `/proc/meminfo` report the whole node; sizing
dataloader workers or a RAM cache from the node's figures oversubscribes the pod. NVML (nvidia-ml-py) gives GPU
utilisation and memory without torch, so the inference server can import the samplers here without pulling in
the training stack. Nothing here imports torch.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs allowed by the cgroup quota (v2 `cpu.max`, else v1 CFS quota); None when unlimited or unknown."""
    v2 = _read(root / "cpu.max")
    if v2 is not None:
        quota, _, period = v2.partition(" ")
        if quota != "max" and period:
            return int(quota) / int(period)
        return None
    quota_v1 = _read(root / "cpu" / "cpu.cfs_quota_us") or _read(root / "cpu,cpuacct" / "cpu.cfs_quota_us")
    period_v1 = _read(root / "cpu" / "cpu.cfs_period_us") or _read(root / "cpu,cpuacct" / "cpu.cfs_period_us")
    if quota_v1 and period_v1 and int(quota_v1) > 0:
        return int(quota_v1) / int(period_v1)
    return None


def cpu_budget(root: Path = CGROUP_ROOT) -> float:
    """CPUs this process may use: the cgroup quota, the affinity mask and the host count, whichever is least."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count() or 1
    quota = cgroup_cpu_quota(root)
    return float(min(affinity, quota)) if quota is not None else float(affinity)


def cpu_workers_budget(budget: float | None = None, ranks: int = 1) -> int:
    """Whole dataloader workers one rank may run: the CPU budget split among ranks, at least 1."""
    cpus = cpu_budget() if budget is None else budget
    return max(1, math.floor(cpus / max(ranks, 1)))


def cgroup_memory_limit(root: Path = CGROUP_ROOT) -> int | None:
    """Bytes allowed by the cgroup (v2 `memory.max`, else v1 `memory.limit_in_bytes`); None when unlimited."""
    v2 = _read(root / "memory.max")
    if v2 is not None:
        return None if v2 == "max" else int(v2)
    v1 = _read(root / "memory" / "memory.limit_in_bytes")
    if v1 is not None and int(v1) < (1 << 60):  # v1 reports "unlimited" as a huge number
        return int(v1)
    return None


def host_memory_available() -> int | None:
    """MemAvailable from /proc/meminfo, in bytes."""
    text = _read(Path("/proc/meminfo")) or ""
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def cgroup_memory_used(root: Path = CGROUP_ROOT) -> int | None:
    v2 = _read(root / "memory.current")
    if v2 is not None:
        return int(v2)
    v1 = _read(root / "memory" / "memory.usage_in_bytes")
    return int(v1) if v1 is not None else None


def memory_budget(root: Path = CGROUP_ROOT) -> int | None:
    """Bytes this container may still allocate: cgroup headroom, capped by what the host has available."""
    host = host_memory_available()
    limit = cgroup_memory_limit(root)
    if limit is None:
        return host
    headroom = limit - (cgroup_memory_used(root) or 0)
    return max(0, min(headroom, host)) if host is not None else max(0, headroom)


# ---- NVML ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuSample:
    index: int
    name: str
    utilization_percent: float
    memory_used_bytes: int
    memory_total_bytes: int


_nvml_lock = threading.Lock()
_nvml_ready: bool | None = None


def _nvml() -> Any | None:
    """The initialised pynvml module, or None where no NVIDIA driver or library exists."""
    global _nvml_ready
    with _nvml_lock:
        if _nvml_ready is False:
            return None
        try:
            import pynvml

            if not _nvml_ready:
                pynvml.nvmlInit()
                _nvml_ready = True
            return pynvml
        except Exception:  # ImportError or NVMLError: no GPU stack here
            _nvml_ready = False
            return None


def gpu_samples() -> list[GpuSample]:
    """One reading of every GPU visible to NVML (empty without a GPU)."""
    nvml = _nvml()
    if nvml is None:
        return []
    out = []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    indices: Sequence[int] = range(nvml.nvmlDeviceGetCount())
    if visible and all(p.strip().isdigit() for p in visible.split(",")):
        indices = [int(p) for p in visible.split(",")]
    for i in indices:
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            util = nvml.nvmlDeviceGetUtilizationRates(handle)
            mem = nvml.nvmlDeviceGetMemoryInfo(handle)
            name = nvml.nvmlDeviceGetName(handle)
            name = name.decode() if isinstance(name, bytes) else str(name)
            out.append(GpuSample(i, name, float(util.gpu), int(mem.used), int(mem.total)))
        except Exception:
            continue
    return out


def gpu_product() -> str | None:
    """Product name of the first visible GPU (e.g. "NVIDIA H100 80GB HBM3"), None without one."""
    samples = gpu_samples()
    return samples[0].name if samples else None


@dataclass
class GpuSampler:
    """Background thread that samples NVML every `period` seconds: mean utilisation and peak memory per window."""

    period: float = 0.5
    samples: list[list[GpuSample]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> GpuSampler:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="gpu-sampler", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            reading = gpu_samples()
            if reading:
                self.samples.append(reading)
            self._stop.wait(self.period)

    def stop(self) -> GpuSampler:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return self

    def reset(self) -> None:
        self.samples = []

    def latest(self) -> list[GpuSample]:
        return self.samples[-1] if self.samples else []

    def mean_utilization(self) -> float | None:
        values = [s.utilization_percent for reading in self.samples for s in reading]
        return sum(values) / len(values) if values else None

    def peak_memory_bytes(self) -> int | None:
        values = [s.memory_used_bytes for reading in self.samples for s in reading]
        return max(values) if values else None
