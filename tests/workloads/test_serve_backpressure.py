"""Backpressure and graceful drain of a real server process.

A long max_queue_delay_ms and a batch larger than the queue keep accepted requests waiting, so the queue state
is known without timing assumptions: the first `max_queue_size` images are accepted, the next request gets 503
with Retry-After; then SIGTERM must let every accepted request finish before the process exits 0.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
from serve_fixtures import images, serve

pytestmark = pytest.mark.workloads


def test_queue_full_is_503_with_retry_after_and_sigterm_drains(
    tmp_path: Path, netblock: tuple[dict[str, str], Path]
) -> None:
    from yolo_workloads.serve import synthetic
    from yolo_workloads.serve.synthetic import make_signal_weights

    weights = make_signal_weights(str(tmp_path / "w.pt"), seed=3)
    pngs = [synthetic.encode(im, "png") for im in images(4, seed=7)]
    with serve(
        tmp_path, weights, netblock[0], imgsz=64, max_batch_size=64, max_queue_delay_ms=4000, max_queue_size=3
    ) as server:
        results: dict[int, httpx.Response] = {}

        def send(i: int) -> None:
            with httpx.Client(base_url=server.url, timeout=60) as c:
                results[i] = c.post("/v1/detect", content=pngs[i], headers={"content-type": "image/png"})

        threads = [threading.Thread(target=send, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        with server.client() as c:
            deadline = time.monotonic() + 30
            while "yolo_serve_queue_depth 3.0" not in c.get("/metrics").text:  # all three queued
                assert time.monotonic() < deadline, "requests never reached the queue"
                time.sleep(0.05)
            full = c.post("/v1/detect", content=pngs[3], headers={"content-type": "image/png"})
            assert full.status_code == 503
            assert int(full.headers["retry-after"]) >= 1
            assert "queue full" in full.json()["error"]
            assert c.get("/v2/health/ready").status_code == 200  # full is not unready

        server.proc.send_signal(signal.SIGTERM)  # while the three wait for their batch
        for t in threads:
            t.join(60)
        assert server.proc.wait(60) == 0, server.log.read_text()[-2000:]
        assert sorted(results) == [0, 1, 2]
        for i, r in results.items():
            assert r.status_code == 200, (i, r.text)
            assert isinstance(r.json()["images"][0]["detections"], list)
        with pytest.raises(httpx.TransportError):  # no longer listening
            httpx.get(server.url + "/v2/health/live", timeout=5)
    assert netblock[1].read_text() == "", "the server tried to reach the network"
