"""A real `yolo-workload serve` process, checked with tritonclient's HTTP client and raw HTTP.

Covers the Open Inference Protocol v2 surface, /v1/detect, /metrics, batching under concurrent load (each
response is its own image's answer) and every kind of bad input (4xx with a JSON error; the server stays up).
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from serve_fixtures import Server, images, serve

pytestmark = pytest.mark.workloads
MAX_PIXELS = 200 * 200


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from yolo_workloads.serve.synthetic import make_signal_weights

    tmp = tmp_path_factory.mktemp("serve")
    weights = make_signal_weights(str(tmp / "signal.pt"), seed=2)
    with serve(tmp, weights, max_batch_size=8, max_queue_delay_ms=40, max_image_pixels=MAX_PIXELS) as s:
        yield s


@pytest.fixture(scope="module")
def pngs() -> list[bytes]:
    from yolo_workloads.serve import synthetic

    return [synthetic.encode(im, "png") for im in images(16, seed=11)]


def _triton(server: Server):  # type: ignore[no-untyped-def]
    import tritonclient.http as tc

    return tc, tc.InferenceServerClient(server.url.removeprefix("http://"), concurrency=4)


def test_health_and_metadata_with_tritonclient(server: Server) -> None:
    _tc, client = _triton(server)
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("yolo")
    assert not client.is_model_ready("nope")
    meta = client.get_model_metadata("yolo")
    assert meta["name"] == "yolo"
    assert {o["name"] for o in meta["outputs"]} == {"boxes", "scores", "classes", "counts"}
    assert meta["parameters"]["max_batch_size"] == 8
    with pytest.raises(Exception, match="unknown model"):
        client.get_model_metadata("nope")
    client.close()


@pytest.mark.parametrize("binary", [True, False])
def test_infer_bytes_with_tritonclient(server: Server, pngs: list[bytes], binary: bool) -> None:
    tc, client = _triton(server)
    inp = tc.InferInput("images", [3], "BYTES")
    # JSON BYTES must be text (tritonclient encodes UTF-8): images then travel as base64, which the server decodes.
    data = pngs[:3] if binary else [base64.b64encode(p).decode() for p in pngs[:3]]
    inp.set_data_from_numpy(np.array(data, dtype=np.object_), binary_data=binary)
    outs = [tc.InferRequestedOutput(n, binary_data=binary) for n in ("boxes", "scores", "classes", "counts")]
    res = client.infer("yolo", [inp], outputs=outs)
    boxes, scores = res.as_numpy("boxes"), res.as_numpy("scores")
    classes, counts = res.as_numpy("classes"), res.as_numpy("counts")
    assert boxes.dtype == np.float32 and classes.dtype == np.int32 and counts.dtype == np.int32
    assert boxes.shape == (3, counts.max(), 4) and scores.shape == (3, counts.max())
    assert counts.min() > 0, "the signal weights give detections on every image"
    for i, n in enumerate(counts):
        assert (scores[i, :n] > 0.5).all() and (classes[i, n:] == -1).all()
        assert (np.diff(scores[i, :n]) <= 1e-6).all(), "best score first"
    # Same answer through /v1/detect for the first image.
    with server.client() as c:
        doc = c.post("/v1/detect", content=pngs[0], headers={"content-type": "image/png"}).json()
    dets = doc["images"][0]["detections"]
    assert len(dets) == counts[0]
    np.testing.assert_allclose([d["box"] for d in dets], boxes[0, : counts[0]], atol=0.01)
    assert [d["class_id"] for d in dets] == classes[0, : counts[0]].tolist()
    assert all(isinstance(d["class_name"], str) and d["class_name"] for d in dets)
    client.close()


def test_pixel_tensors_match_encoded_images(server: Server, pngs: list[bytes]) -> None:
    """UINT8 NHWC and FP32 NCHW tensors of the same pixels give the same detections as the PNG."""
    tc, client = _triton(server)
    im = images(16, seed=11)[0]  # the pixels of pngs[0]
    ref = client.infer("yolo", [_bytes_input(tc, pngs[:1])])
    u8 = tc.InferInput("images", [1, *im.shape], "UINT8")
    u8.set_data_from_numpy(im[None])
    f32 = tc.InferInput("images", [1, 3, *im.shape[:2]], "FP32")
    f32.set_data_from_numpy((im.transpose(2, 0, 1)[None] / 255.0).astype(np.float32))
    for inp in (u8, f32):
        res = client.infer("yolo", [inp])
        np.testing.assert_array_equal(res.as_numpy("counts"), ref.as_numpy("counts"))
        np.testing.assert_allclose(res.as_numpy("boxes"), ref.as_numpy("boxes"), atol=1e-3)
    client.close()


def _bytes_input(tc, datas: list[bytes]):  # type: ignore[no-untyped-def]
    inp = tc.InferInput("images", [len(datas)], "BYTES")
    inp.set_data_from_numpy(np.array(datas, dtype=np.object_))
    return inp


def test_json_bytes_are_base64(server: Server, pngs: list[bytes]) -> None:
    body = {
        "id": "r1",
        "inputs": [{"name": "images", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(pngs[1]).decode()]}],
    }
    with server.client() as c:
        r = c.post("/v2/models/yolo/infer", json=body)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["id"] == "r1" and [o["name"] for o in doc["outputs"]] == ["boxes", "scores", "classes", "counts"]
    counts = next(o for o in doc["outputs"] if o["name"] == "counts")
    assert counts["datatype"] == "INT32" and counts["shape"] == [1] and counts["data"][0] > 0


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(server: Server, pngs: list[bytes]) -> None:
    def detect(data: bytes) -> list[list[float]]:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            r = c.post("/v1/detect", content=data, headers={"content-type": "image/png"})
            assert r.status_code == 200, r.text
            return [d["box"] + [d["score"], d["class_id"]] for d in r.json()["images"][0]["detections"]]

    with server.client() as c:
        before = _batch_stats(c.get("/metrics").text)
    with ThreadPoolExecutor(16) as pool:
        concurrent = list(pool.map(detect, pngs * 2))
    with server.client() as c:
        after = _batch_stats(c.get("/metrics").text)
    alone = [detect(p) for p in pngs]  # one at a time: batches of one
    # Batch composition changes CPU float rounding slightly, so compare within tolerance, not bit for bit.
    for i, got in enumerate(concurrent):
        assert _same(got, alone[i % len(pngs)]), f"request {i} got an answer that is not its image's"
    assert not _same(alone[0], alone[1]), "distinct images must give distinct answers for this check to mean anything"
    batches, imgs = after[0] - before[0], after[1] - before[1]
    assert imgs == 32 and batches < 32, f"{batches} batches for 32 concurrent images: nothing was batched"


def _same(a: list[list[float]], b: list[list[float]]) -> bool:
    if abs(len(a) - len(b)) > 1 or not a:
        return False
    rb = np.array(b)
    hits = sum(
        bool(
            (
                (np.abs(rb[:, :4] - row[:4]).max(1) <= 0.1) & (np.abs(rb[:, 4] - row[4]) <= 2e-3) & (rb[:, 5] == row[5])
            ).any()
        )
        for row in a
    )
    return hits >= len(a) - 1


def _batch_stats(text: str) -> tuple[float, float]:
    vals = {ln.split()[0]: float(ln.split()[1]) for ln in text.splitlines() if ln.startswith("yolo_serve_batch_size_")}
    return vals["yolo_serve_batch_size_count"], vals["yolo_serve_batch_size_sum"]


def test_metrics_names(server: Server) -> None:
    from yolo_workloads.serve import metrics

    with server.client() as c:
        c.get("/v2/health/ready")
        text = c.get("/metrics").text
    for name in metrics.ALL_NAMES:
        assert f"# TYPE {name} " in text, name
    assert 'yolo_serve_requests_total{code="200",endpoint="v2_ready"}' in text
    assert "yolo_serve_gpu_utilization_percent 0.0" in text  # CPU: present, zero


_HEAD2 = b'{"inputs":[{"name":"images","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":9}}]}'
_MP = {"content-type": "multipart/form-data; boundary=xyz"}
_TEXT_ONLY_MULTIPART = b'--xyz\r\nContent-Disposition: form-data; name="a"\r\n\r\nb\r\n--xyz--\r\n'


def _v2(c: httpx.Client, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return c.post("/v2/models/yolo/infer", content=body, headers=headers or {})


def test_bad_inputs_are_4xx_with_a_reason(server: Server, pngs: list[bytes], tmp_path: Path) -> None:
    from yolo_workloads.serve import synthetic

    jpeg = synthetic.encode(images(1, seed=4)[0])
    big = synthetic.encode(images(1, seed=4, sizes=[(210, 210)])[0])
    corrupt = jpeg[:300] + bytes(range(256)) * 4 + b"\xff\xd9"
    raw = {"content-type": "image/jpeg"}
    cases: list[tuple[str, int, str, object]] = [
        ("non-image", 415, "not an image", lambda c: c.post("/v1/detect", content=b"hello world", headers=raw)),
        ("truncated", 400, "truncated", lambda c: c.post("/v1/detect", content=jpeg[: len(jpeg) // 2], headers=raw)),
        ("empty", 400, "empty", lambda c: c.post("/v1/detect", content=b"", headers=raw)),
        ("too big", 413, "max_image_pixels", lambda c: c.post("/v1/detect", content=big, headers=raw)),
        ("content type", 415, "content type", lambda c: c.post("/v1/detect", json={"a": 1})),
        (
            "multipart no file",
            400,
            "no file",
            lambda c: c.post("/v1/detect", content=_TEXT_ONLY_MULTIPART, headers=_MP),
        ),
        ("v2 not json", 400, "not JSON", lambda c: _v2(c, b"{nope")),
        ("v2 no inputs", 400, "inputs", lambda c: _v2(c, b'{"outputs": []}')),
        (
            "v2 datatype",
            400,
            "datatype",
            lambda c: _v2(
                c, json.dumps({"inputs": [{"name": "images", "shape": [1], "datatype": "INT64", "data": [1]}]}).encode()
            ),
        ),
        (
            "v2 shape",
            400,
            "shape",
            lambda c: _v2(
                c,
                json.dumps(
                    {"inputs": [{"name": "images", "shape": [2, 2], "datatype": "UINT8", "data": [1, 2, 3, 4]}]}
                ).encode(),
            ),
        ),
        (
            "v2 bytes count",
            400,
            "elements",
            lambda c: _v2(
                c, _HEAD2 + struct.pack("<I", 5) + b"hello", {"Inference-Header-Content-Length": str(len(_HEAD2))}
            ),
        ),
        (
            "v2 header length",
            400,
            "Inference-Header-Content-Length",
            lambda c: _v2(c, b"{}", {"Inference-Header-Content-Length": "999"}),
        ),
        (
            "v2 output",
            400,
            "unknown output",
            lambda c: _v2(
                c,
                json.dumps(
                    {
                        "inputs": [
                            {
                                "name": "images",
                                "shape": [1],
                                "datatype": "BYTES",
                                "data": [base64.b64encode(pngs[0]).decode()],
                            }
                        ],
                        "outputs": [{"name": "masks"}],
                    }
                ).encode(),
            ),
        ),
        (
            "v2 base64",
            400,
            "base64",
            lambda c: _v2(
                c,
                json.dumps(
                    {"inputs": [{"name": "images", "shape": [1], "datatype": "BYTES", "data": ["@@@"]}]}
                ).encode(),
            ),
        ),
        ("v2 model", 404, "unknown model", lambda c: c.post("/v2/models/other/infer", content=b"{}")),
        ("corrupt jpeg", 400, "image 0", lambda c: c.post("/v1/detect", content=corrupt, headers=raw)),
    ]
    with server.client() as c:
        for label, status, words, call in cases:
            r = call(c)  # type: ignore[operator]
            if label == "corrupt jpeg" and r.status_code == 200:
                continue  # libjpeg may decode garbage entropy data as grey blocks: not an error, not a crash
            assert r.status_code == status, (label, r.status_code, r.text)
            assert words in r.json()["error"], (label, r.json())
        # Still serving after all that.
        assert c.get("/v2/health/ready").status_code == 200
        assert c.post("/v1/detect", content=pngs[0], headers={"content-type": "image/png"}).status_code == 200
        # Multipart with two files: two results.
        r = c.post("/v1/detect", files=[("a", ("a.png", pngs[0], "image/png")), ("b", ("b.png", pngs[1], "image/png"))])
        assert r.status_code == 200 and len(r.json()["images"]) == 2


def test_load_generator_bodies_carry_k_images(server: Server, pngs: list[bytes]) -> None:
    """benchmarks/serve_load.py's requests of k images (v2 BYTES [k]; v1 multipart) are answered image by image."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("serve_load", Path(__file__).parents[2] / "benchmarks/serve_load.py")
    assert spec is not None and spec.loader is not None
    load = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(load)
    with server.client() as c:
        single = [
            len(
                c.post("/v1/detect", content=p, headers={"content-type": "image/png"}).json()["images"][0]["detections"]
            )
            for p in pngs[:3]
        ]
        body, headers = load.v1_body(pngs[:3])
        doc = c.post("/v1/detect", content=body, headers=headers).json()
        assert [len(im["detections"]) for im in doc["images"]] == single
        body, headers = load.v2_body(pngs[:3])
        r = c.post("/v2/models/yolo/infer", content=body, headers=headers)
        assert r.status_code == 200, r.text
        head_len = int(r.headers["Inference-Header-Content-Length"])
        head = json.loads(r.content[:head_len])
        counts = next(o for o in head["outputs"] if o["name"] == "counts")
        assert counts["shape"] == [3]
        offset = head_len
        for o in head["outputs"]:
            if o["name"] == "counts":
                break
            offset += o["parameters"]["binary_data_size"]
        assert np.frombuffer(r.content[offset : offset + 12], dtype="<i4").tolist() == single
