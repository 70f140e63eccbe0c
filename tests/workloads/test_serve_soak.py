"""A bounded soak of a real server: several clients mixing good requests with every kind of bad one.

Asserts what a user relies on under hostile traffic: every good request is answered 200 with its detections,
every bad one with its 4xx (never a 5xx), the server's resident memory stays within a fixed margin although
small bodies ask for large decoded images, and nothing is logged at ERROR.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from pngmaker import png, png16_rgb
from serve_fixtures import Server, images, serve

pytestmark = pytest.mark.workloads
SOAK_SECONDS = 25
CLIENTS = 4
RSS_MARGIN_MB = 400  # over the RSS after warm-up: two batches of 12 MB decoded plus working copies fit easily
MIB = 1024 * 1024
Call = Callable[[httpx.Client], int]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _cases(server: Server) -> tuple[list[Call], list[tuple[Call, set[int]]]]:
    from yolo_workloads.serve import synthetic

    scenes = images(6, seed=5, sizes=[(96, 96), (80, 120)])
    pngs = [synthetic.encode(im, "png") for im in scenes]
    jpegs = [synthetic.encode(im, "jpeg") for im in scenes]
    sixteen = png16_rgb(scenes[0].astype(np.uint16) * 257)
    big = png(1400, 1400, 2, 8)  # a few KB that decode to 5.9 MB
    pixel_doc = {
        "inputs": [
            {"name": "i", "shape": [1, 24, 32, 3], "datatype": "UINT8", "data": scenes[0][:24, :32].ravel().tolist()}
        ]
    }
    b64_doc = {
        "inputs": [{"name": "i", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(jpegs[1]).decode()]}]
    }
    png_h = {"content-type": "image/png"}

    def detect(data: bytes) -> Call:
        return lambda c: c.post("/v1/detect", content=data, headers=png_h).status_code

    def multipart(datas: list[bytes]) -> Call:
        return lambda c: (
            c.post("/v1/detect", files=[("f", (f"{i}.png", d, "image/png")) for i, d in enumerate(datas)]).status_code
        )

    def v2(body: bytes, path: str = "/v2/models/yolo/infer") -> Call:
        return lambda c: c.post(path, content=body).status_code

    def chunked(c: httpx.Client) -> int:
        return c.post("/v1/detect", content=(b"\x00" * 65536 for _ in range(40)), headers=png_h).status_code

    def hang_up(c: httpx.Client) -> int:
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as s:
            s.sendall(
                b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 90000\r\n\r\n"
            )
            s.sendall(pngs[0][:2000])
        return 0

    good: list[Call] = [
        *(detect(p) for p in pngs),
        detect(jpegs[2]),
        detect(sixteen),
        detect(big),
        multipart(pngs[:3]),
        multipart([big, big]),
        v2(json.dumps(pixel_doc).encode()),
        v2(json.dumps(b64_doc).encode()),
    ]
    corrupt = png(96, 96, 2, 8)[:-40] + b"\x00" * 28 + png(1, 1, 0, 8)[-12:]
    bad: list[tuple[Call, set[int]]] = [
        (detect(pngs[1][: len(pngs[1]) // 2]), {400}),
        (detect(corrupt), {400}),
        (detect(b"not an image"), {415}),
        (detect(png(2000, 2000, 6, 16)), {413}),
        (multipart([big] * 5), {413}),
        (chunked, {413}),
        (v2(b"{nope"), {400}),
        (v2(b'{"inputs":[{"name":"i","shape":[1,1,1,3],"datatype":"UINT8","data":[1,999,3]}]}'), {400}),
        (v2(b"[" * 20000 + b"]" * 20000), {400}),
        (v2(json.dumps(b64_doc).encode(), "/v2/models/yolo/versions/9/infer"), {404}),
        (hang_up, {0}),
    ]
    return good, bad


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    from yolo_workloads.serve.synthetic import make_signal_weights

    weights = make_signal_weights(str(tmp_path / "signal.pt"), seed=4)
    limits = {
        "imgsz": 64,
        "max_batch_size": 8,
        "max_queue_delay_ms": 10,
        "max_queue_size": 64,
        "max_image_pixels": 4_000_000,
        "max_body_bytes": MIB,
        "max_batch_decoded_bytes": 12_000_000,
        "max_request_decoded_bytes": 24_000_000,
    }
    with serve(tmp_path, weights, **limits) as s:
        yield s


def test_mixed_good_and_bad_traffic_from_several_clients(server: Server) -> None:
    good, bad = _cases(server)
    pid = server.proc.pid
    failures: list[str] = []
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    stop = time.monotonic() + SOAK_SECONDS

    def client(k: int) -> None:
        i = k
        with httpx.Client(base_url=server.url, timeout=60) as c:
            while time.monotonic() < stop:
                call, want = (good[i % len(good)], {200}) if i % 2 == 0 else bad[(i // 2) % len(bad)]
                status = call(c)
                with lock:
                    counts["good" if want == {200} else "bad"] += 1
                    if status not in want:
                        failures.append(f"case {i}: {status} not in {want}")
                i += 1

    with server.client() as c:  # warm-up: every case once, so allocator pools and kernels exist
        for call in good:
            assert call(c) == 200
    baseline = _rss_mb(pid)
    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    peak = baseline
    while any(t.is_alive() for t in threads):
        peak = max(peak, _rss_mb(pid))
        time.sleep(0.2)
    for t in threads:
        t.join()
    assert not failures, failures[:20]
    assert counts["good"] > 50 and counts["bad"] > 50, counts
    assert peak - baseline < RSS_MARGIN_MB, f"RSS grew from {baseline:.0f} MB to {peak:.0f} MB"
    with server.client() as c:
        assert c.get("/v2/health/ready").status_code == 200
    log = server.log.read_text()
    assert "ERROR" not in log and "Traceback" not in log, log[-3000:]
    print(f"soak: {dict(counts)} requests, RSS {baseline:.0f} -> peak {peak:.0f} MB")
