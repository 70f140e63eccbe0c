"""`workers > 1`: several server processes behind one port, metrics merged across them (prometheus multiprocess).

A scrape lands on one worker; it must still count every worker's requests and images, and the queue and
in-flight gauges must be sums over live workers only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from serve_fixtures import images, offline_env, serve

pytestmark = pytest.mark.workloads

_CHILD = """
import sys
from yolo_workloads.serve.metrics import ServeMetrics
m = ServeMetrics()
assert m.multiprocess
m.images.inc(int(sys.argv[1]))
m.queue_depth.set(int(sys.argv[2]))
m.requests.labels("v2_infer", "200").inc()
print(m.render().decode())
"""


def _samples(text: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}"] = s.value
    return out


def test_multiprocess_metrics_sum_workers_and_forget_dead_ones(tmp_path: Path) -> None:
    from yolo_workloads.serve.metrics import MULTIPROC_ENV, prepare_multiprocess_dir

    d = tmp_path / "mp"
    d.mkdir()
    (d / "counter_99999.db").write_bytes(b"stale")  # a previous run's file must not survive the start
    env = offline_env()
    old = os.environ.get(MULTIPROC_ENV)
    try:
        prepare_multiprocess_dir(str(d))
        env[MULTIPROC_ENV] = os.environ[MULTIPROC_ENV]
    finally:
        if old is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = old
    assert not (d / "counter_99999.db").exists()
    # Two "workers" in turn; the second's scrape already answers for both.
    subprocess.run([sys.executable, "-c", _CHILD, "3", "5"], env=env, check=True, capture_output=True)
    second = subprocess.run([sys.executable, "-c", _CHILD, "4", "7"], env=env, check=True, capture_output=True)
    s = _samples(second.stdout.decode())
    assert s["yolo_serve_images_total{}"] == 7
    assert s["yolo_serve_requests_total{code=200,endpoint=v2_infer}"] == 2
    # Both exited without being marked dead: their live gauges still count.
    assert s["yolo_serve_queue_depth{}"] == 12
    # A worker marked dead leaves the live sums, its counters stay.
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    pids = sorted(int(f.stem.rsplit("_", 1)[1]) for f in d.glob("gauge_livesum_*.db"))
    assert len(pids) == 2
    multiprocess.mark_process_dead(pids[0], str(d))  # type: ignore[no-untyped-call]
    reg = CollectorRegistry()
    multiprocess.MultiProcessCollector(reg, str(d))  # type: ignore[no-untyped-call]
    s = _samples(generate_latest(reg).decode())
    assert s["yolo_serve_queue_depth{}"] in (5, 7)
    assert s["yolo_serve_images_total{}"] == 7


def test_two_workers_answer_and_metrics_count_both(tmp_path_factory: pytest.TempPathFactory) -> None:
    import httpx
    from yolo_workloads.serve import synthetic
    from yolo_workloads.serve.synthetic import make_signal_weights

    tmp = tmp_path_factory.mktemp("workers")
    weights = make_signal_weights(str(tmp / "w.pt"), seed=1)
    jpeg = synthetic.encode(images(1, seed=2, sizes=[(48, 64)])[0])
    with serve(tmp, weights, workers=2, imgsz=64, max_batch_size=4, max_queue_delay_ms=2) as server:
        pids: set[int] = set()
        deadline = time.monotonic() + 120
        # Each new connection goes to whichever worker accepts it; one still loading says not ready.
        while len(pids) < 2:
            assert time.monotonic() < deadline, f"only workers {pids} ready:\n{server.log.read_text()[-2000:]}"
            with httpx.Client(base_url=server.url, timeout=60) as fresh:
                doc = fresh.get("/v2/health/ready").json()
            if doc["ready"]:
                pids.add(int(doc["worker_pid"]))
            else:
                time.sleep(0.2)
        ok = 0
        for _ in range(12):
            with httpx.Client(base_url=server.url, timeout=60) as fresh:
                r = fresh.post("/v1/detect", content=jpeg, headers={"content-type": "image/jpeg"})
            assert r.status_code == 200, r.text
            ok += 1
        with server.client() as c:
            for _ in range(4):  # whichever worker takes the scrape counts all of them
                s = _samples(c.get("/metrics").text)
                assert s["yolo_serve_images_total{}"] == ok
                assert s["yolo_serve_requests_total{code=200,endpoint=v1_detect}"] == ok
                assert s["yolo_serve_queue_depth{}"] == 0
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(60) == 0
