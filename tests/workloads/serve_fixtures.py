"""Helpers for the serving tests: image-dependent random weights, payloads, and a real server subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def offline_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(YOLO_OFFLINE="1", YOLO_VERBOSE="False", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "workloads"), str(REPO / "operator"), env.get("PYTHONPATH", "")])
    return env


def images(count: int, seed: int, sizes: list[tuple[int, int]] | None = None) -> list[np.ndarray]:
    from yolo_workloads.serve import synthetic

    rng = np.random.default_rng(seed)
    sizes = sizes or [(72, 96), (96, 96), (120, 160), (60, 100)]
    return [synthetic.scene(*sizes[i % len(sizes)], rng) for i in range(count)]


class Server:
    def __init__(self, proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.proc = proc
        self.url = url
        self.log = log

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kw)


@contextmanager
def serve(tmp: Path, weights: str, env: dict[str, str] | None = None, **overrides: Any) -> Iterator[Server]:
    """Start `yolo-workload serve` on a free loopback port; wait until ready; SIGTERM it at the end.

    `env`: the subprocess environment, e.g. conftest's `netblock` one (network refused and logged)."""
    port = free_port()
    cfg: dict[str, Any] = {
        "model": {"weights": weights},
        "imgsz": 96,
        "half": False,
        "device": "cpu",
        "conf": 0.5,
        "host": "127.0.0.1",
        "port": port,
        "max_batch_size": 8,
        "max_queue_delay_ms": 30,
    }
    cfg.update(overrides)
    path = tmp / f"serve-{port}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    log = tmp / f"serve-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "yolo_workloads.cli", "serve", "--config", str(path), "--log-level", "warning"],
            env=env or offline_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 120
        with server.client() as c:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"server exited {proc.returncode}:\n{log.read_text()[-3000:]}")
                try:
                    if c.get("/v2/health/ready").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server not ready in 120 s:\n{log.read_text()[-3000:]}")
                time.sleep(0.2)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
