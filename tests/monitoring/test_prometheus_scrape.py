"""A real Prometheus scrapes a running `yolo-workload serve` and the operator's metrics endpoint, and its HTTP API
returns the inference and operator metric names that the dashboard and the alert rules use.

Prometheus (Debian's `prometheus` package) runs on loopback with a generated config and a 1 s scrape interval.
The inference server runs a randomly initialised yolov8n at imgsz 64 on the CPU, offline. The operator's
endpoint is its real registry served by `operator_metrics.serve`, in a child process that touches each labelled
collector once (a labelled series only exists after its first use; a controller does that while reconciling).
Training metrics (`yolo_train_*`) need a training run and are covered by the training tests, not here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from ports import free_ports
from promql import APT_HINT, alerts, dashboard_exprs, find_tool, metric_names

pytestmark = pytest.mark.workloads

PREFIXES = ("yolo_serve_", "yolo_operator_")
OPERATOR_ENDPOINT = textwrap.dedent(
    """
    import sys, time
    from yolo_operator.metrics import autoscaler_metrics as a, operator_metrics as m
    m.reconciles.labels(kind="YoloTrainJob", result="ok").inc()
    m.reconcile_errors.labels(kind="YoloTrainJob").inc(0)
    getattr(m.phase_transitions, "labels")(**{"kind": "YoloTrainJob", "from": "Tuning", "to": "Training"}).inc()
    m.tuning_duration.observe(42)
    m.progress_scrape_errors.labels(kind="YoloTrainJob").inc(0)
    a.desired_replicas.labels(namespace="demo", name="svc").set(2)
    a.current_replicas.labels(namespace="demo", name="svc").set(1)
    a.metric_value.labels(namespace="demo", name="svc", metric="gpuUtilization").set(80)
    a.metric_target.labels(namespace="demo", name="svc", metric="gpuUtilization").set(70)
    a.scale_events.labels(namespace="demo", name="svc", direction="up").inc()
    a.metric_errors.labels(namespace="demo", name="svc", reason="none").inc(0)
    m.serve(int(sys.argv[1]), "127.0.0.1")
    print("ready", flush=True)
    time.sleep(3600)
    """
)


def get(url: str, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return bytes(response.read())


def wait_http(url: str, proc: subprocess.Popen[bytes], what: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            pytest.fail(f"{what} exited with {proc.returncode}:\n{out[-4000:]}")
        try:
            get(url)
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not answer {url} within {timeout_s:.0f} s")
        time.sleep(0.5)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.terminate()
    for proc in started:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def offline_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(YOLO_OFFLINE="1", YOLO_CONFIG_DIR=str(tmp_path / "ultralytics"), MPLCONFIGDIR=str(tmp_path / "mpl"))
    return env


def test_prometheus_finds_the_metrics_dashboard_and_rules_use(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    prometheus = find_tool("prometheus")
    if prometheus is None:
        pytest.fail(f"prometheus not found: {APT_HINT}")
    serve_port, operator_port, prom_port = free_ports(3)

    config = {
        "model": {"architecture": "yolov8n.yaml"},
        "imgsz": 64,
        "half": False,
        "device": "cpu",
        "host": "127.0.0.1",
        "port": serve_port,
        "max_batch_size": 2,
    }
    (tmp_path / "serve.yaml").write_text(yaml.safe_dump(config))
    yolo_workload = str(Path(sys.executable).parent / "yolo-workload")
    processes.append(
        subprocess.Popen(
            ["nice", yolo_workload, "serve", "--config", str(tmp_path / "serve.yaml")],
            env=offline_env(tmp_path), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
    )  # fmt: skip
    processes.append(
        subprocess.Popen(
            [sys.executable, "-c", OPERATOR_ENDPOINT, str(operator_port)],
            env=offline_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
    )  # fmt: skip
    wait_http(f"http://127.0.0.1:{operator_port}/metrics", processes[1], "operator metrics endpoint")
    wait_http(f"http://127.0.0.1:{serve_port}/v2/health/ready", processes[0], "yolo-workload serve")

    prom_config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "yolo-workload", "static_configs": [{"targets": [f"127.0.0.1:{serve_port}"]}]},
            {"job_name": "yolo-operator-metrics", "static_configs": [{"targets": [f"127.0.0.1:{operator_port}"]}]},
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(prom_config))
    processes.append(
        subprocess.Popen(
            [prometheus, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
    )  # fmt: skip
    api = f"http://127.0.0.1:{prom_port}/api/v1"
    wait_http(f"http://127.0.0.1:{prom_port}/-/ready", processes[2], "prometheus", timeout_s=60)

    used = set()
    for expr in [*dashboard_exprs(), *(a["expr"] for a in alerts())]:
        used |= {name for name in metric_names(expr) if name.startswith(PREFIXES)}
    assert used, "dashboard and rules use no serve/operator metrics"

    deadline = time.monotonic() + 60
    while True:
        names = set(json.loads(get(f"{api}/label/__name__/values"))["data"])
        missing = used - names
        if not missing:
            break
        if time.monotonic() > deadline:
            targets = json.loads(get(f"{api}/targets"))["data"]["activeTargets"]
            health = [(t["labels"]["job"], t["health"], t.get("lastError")) for t in targets]
            pytest.fail(f"Prometheus never saw {sorted(missing)}; targets: {health}")
        time.sleep(1)
    # Both targets are up, as the YoloOperatorDown alert's `up{job="yolo-operator-metrics"}` expects.
    up = json.loads(get(f"{api}/query?query=up"))["data"]["result"]
    assert {r["metric"]["job"]: r["value"][1] for r in up} == {"yolo-workload": "1", "yolo-operator-metrics": "1"}
