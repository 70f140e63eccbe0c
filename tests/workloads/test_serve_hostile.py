"""A real `yolo-workload serve` process against hostile and unusual input (issue 17).

Every answer is the server's JSON error shape with the right 4xx, the limits hold whatever the body's framing,
images of any bit depth and channel layout are read as their 8-bit RGB equivalent or refused by name, one
request's bad image never fails another request batched with it, and nothing is logged at ERROR.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import numpy as np
import pytest
from pngmaker import png, png16_rgb
from serve_fixtures import Server, images, serve

pytestmark = pytest.mark.workloads
MIB = 1024 * 1024
LIMITS: dict[str, Any] = {
    "imgsz": 64,
    "max_batch_size": 8,
    "max_queue_delay_ms": 150,  # concurrent requests share a batch
    "max_queue_size": 16,
    "max_image_pixels": 4_000_000,
    "max_body_bytes": MIB,
    "max_batch_decoded_bytes": 12_000_000,
    "max_request_decoded_bytes": 24_000_000,
}
PNG = {"content-type": "image/png"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from yolo_workloads.serve.synthetic import make_signal_weights

    tmp = tmp_path_factory.mktemp("hostile")
    weights = make_signal_weights(str(tmp / "signal.pt"), seed=2)
    with serve(tmp, weights, **LIMITS) as s:
        yield s
        log = s.log.read_text()
    assert "ERROR" not in log and "Traceback" not in log, log[-3000:]


@pytest.fixture(scope="module")
def scenes() -> list[np.ndarray]:
    return images(4, seed=21, sizes=[(96, 96)])


def _png8(img: np.ndarray) -> bytes:
    from yolo_workloads.serve import synthetic

    return synthetic.encode(img, "png")


def _detect(c: httpx.Client, data: bytes) -> httpx.Response:
    return c.post("/v1/detect", content=data, headers=PNG)


def _boxes(r: httpx.Response) -> list[tuple[Any, ...]]:
    assert r.status_code == 200, r.text
    return [(*d["box"], d["class_id"]) for d in r.json()["images"][0]["detections"]]


def _error(r: httpx.Response, status: int, words: str) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"] == "application/json", r.headers
    assert words in r.json()["error"], r.json()


def test_bit_depths_and_channels_read_as_their_8bit_rgb(server: Server, scenes: list[np.ndarray]) -> None:
    from PIL import Image

    im = scenes[0]
    grey = np.asarray(Image.fromarray(im).convert("L"))
    variants = {
        "16-bit RGB": (png16_rgb(im.astype(np.uint16) * 257), _png8(im)),
        "RGBA": (_pil_png(Image.fromarray(im).convert("RGBA")), _png8(im)),
        "16-bit grey": (png(96, 96, 0, 16, (grey.astype(np.uint16) * 257).astype(">u2").tobytes()), _grey_rgb(grey)),
        "palette": (
            _pil_png(Image.fromarray(im).quantize(256)),
            _png8(np.asarray(Image.fromarray(im).quantize(256).convert("RGB"))),
        ),
    }
    with server.client() as c:
        for label, (variant, reference) in variants.items():
            want = _boxes(_detect(c, reference))
            assert want, f"{label}: the reference image must give detections for this check to mean anything"
            assert _boxes(_detect(c, variant)) == want, label


def test_grey_and_cmyk_jpegs_are_served(server: Server, scenes: list[np.ndarray]) -> None:
    """Decoded by libjpeg to RGB (a GPU server sends CMYK to the CPU decoder rather than trust nvJPEG's)."""
    import io

    from PIL import Image

    with server.client() as c:
        for mode in ("L", "CMYK"):
            buf = io.BytesIO()
            Image.fromarray(scenes[1]).convert(mode).save(buf, "JPEG", quality=95)
            r = c.post("/v1/detect", content=buf.getvalue(), headers={"content-type": "image/jpeg"})
            assert _boxes(r), mode


def _pil_png(img: Any) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _grey_rgb(grey: np.ndarray) -> bytes:
    return _png8(np.repeat(grey[..., None], 3, axis=2))


def test_unsupported_depths_are_refused_by_name(server: Server) -> None:
    from pngmaker import jpeg_frame

    bad_depth = bytearray(png(8, 8, 2, 8))
    bad_depth[24] = 4  # 4-bit RGB does not exist
    with server.client() as c:
        _error(_detect(c, bytes(bad_depth)), 400, "bit depth 4 is not valid for RGB")
        _error(
            c.post("/v1/detect", content=jpeg_frame(8, 8, precision=12), headers={"content-type": "image/jpeg"}),
            415,
            "12-bit JPEG",
        )


def test_a_bad_image_fails_only_its_own_request(server: Server, scenes: list[np.ndarray]) -> None:
    """Requests sent together share one batch; a 16-bit image (once a whole-batch 500) and an image whose header
    is fine but whose data is not (a decode failure inside the batch) answer only for themselves."""
    goods = [_png8(im) for im in scenes[:3]]
    sixteen = png16_rgb(scenes[3].astype(np.uint16) * 257)
    corrupt = png(96, 96, 2, 8)[:-40] + b"\x00" * 28 + png(1, 1, 0, 8)[-12:]  # IDAT garbled, IEND intact
    with server.client() as c:
        alone = [_boxes(_detect(c, g)) for g in goods]
    bodies = [*goods, sixteen, corrupt]
    results: dict[int, httpx.Response] = {}

    def send(i: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            results[i] = _detect(c, bodies[i])

    for _ in range(3):
        threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for i in range(3):
            assert _boxes(results[i]) == alone[i], i
        assert results[3].status_code == 200, results[3].text
        _error(results[4], 400, "corrupt PNG")


def _blank(width: int, height: int, colour: int = 2, depth: int = 8) -> bytes:
    return png(width, height, colour, depth)


def test_memory_budgets_are_counted_before_decoding(server: Server, scenes: list[np.ndarray]) -> None:
    big = _blank(1500, 1500)  # ~7 KB that decodes to 6.75 MB
    with server.client() as c:
        # One image larger than a whole batch may hold: never servable.
        _error(_detect(c, _blank(1500, 1500, 6, 16)), 413, "max_batch_decoded_bytes")
        # A request whose images together pass the request budget.
        files = [("f", (f"{i}.png", big, "image/png")) for i in range(4)]
        _error(c.post("/v1/detect", files=files), 413, "max_request_decoded_bytes")
        # Two of them fit the request but not one batch: served in two batches.
        r = c.post("/v1/detect", files=files[:2])
        assert r.status_code == 200 and len(r.json()["images"]) == 2, r.text
        # Pixel tensors are refused from the shape, before their data is read.
        doc = {"inputs": [{"name": "images", "shape": [1, 3000, 3000, 3], "datatype": "UINT8", "data": [0]}]}
        _error(c.post("/v2/models/yolo/infer", json=doc), 413, "max_request_decoded_bytes")
        # More images than the queue can ever hold: 413, not a 503 that no retry can satisfy.
        tiny = [("f", (f"{i}.png", _png8(scenes[0][:8, :8]), "image/png")) for i in range(17)]
        _error(c.post("/v1/detect", files=tiny), 413, "max_queue_size")
        assert _detect(c, _png8(scenes[0])).status_code == 200
        # The limits in force are in the model's metadata, for clients to size their requests.
        params = c.get("/v2/models/yolo").json()["parameters"]
        for key in ("max_body_bytes", "max_image_pixels", "max_request_decoded_bytes", "max_batch_decoded_bytes"):
            assert params[key] == LIMITS[key], key


def _chunks(size: int, piece: int = 64 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < size:
        yield b"\x89PNG" + bytes(piece - 4)
        sent += piece


def test_body_limit_holds_for_chunked_and_multipart_bodies(server: Server, scenes: list[np.ndarray]) -> None:
    over = 2 * MIB
    with server.client() as c:
        _error(c.post("/v1/detect", content=_chunks(over), headers=PNG), 413, "max_body_bytes")
        _error(c.post("/v2/models/yolo/infer", content=_chunks(over)), 413, "max_body_bytes")
        files = [("f", ("a.png", bytes(over), "image/png"))]
        _error(c.post("/v1/detect", files=files), 413, "max_body_bytes")  # with a Content-Length
        boundary = "b0undary"
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="f"; filename="a.png"\r\n\r\n'.encode()

        def multipart() -> Iterator[bytes]:
            yield head
            yield from _chunks(over)
            yield f"\r\n--{boundary}--\r\n".encode()

        _error(
            c.post(
                "/v1/detect", content=multipart(), headers={"content-type": f"multipart/form-data; boundary={boundary}"}
            ),
            413,
            "max_body_bytes",
        )
        assert _detect(c, _png8(scenes[0])).status_code == 200


MALFORMED: list[tuple[str, bytes]] = [
    ("out-of-range UINT8", b'{"inputs":[{"name":"i","shape":[1,1,1,3],"datatype":"UINT8","data":[0,300,0]}]}'),
    ("negative UINT8", b'{"inputs":[{"name":"i","shape":[1,1,1,3],"datatype":"UINT8","data":[0,-1,0]}]}'),
    ("huge integer", b'{"inputs":[{"name":"i","shape":[1,1,1,3],"datatype":"UINT8","data":[0,1,' + b"9" * 40 + b"]}]}"),
    ("string pixels", b'{"inputs":[{"name":"i","shape":[1,1,1,3],"datatype":"FP32","data":["a","b","c"]}]}'),
    (
        "deep nesting",
        b'{"inputs":[{"name":"i","shape":[1],"datatype":"BYTES","data":' + b"[" * 50_000 + b"]" * 50_000 + b"}]}",
    ),
    ("deep JSON", b"[" * 100_000 + b"]" * 100_000),
    (
        "typed output params",
        b'{"inputs":[{"name":"i","shape":[1,1,1,3],"datatype":"UINT8","data":[0,0,0]}],"outputs":[{"name":"boxes","parameters":"x"}]}',
    ),
    (
        "typed binary flag",
        b'{"inputs":[{"name":"i","shape":[1,1,1,3],"datatype":"UINT8","data":[0,0,0]}],"parameters":{"binary_data_output":"yes"}}',
    ),
    (
        "typed layout",
        b'{"inputs":[{"name":"i","shape":[1,1,1,3],"datatype":"UINT8","data":[0,0,0],"parameters":{"layout":5}}]}',
    ),
    ("typed id", b'{"id":{"a":1},"inputs":[{"name":"i","shape":[1,1,1,3],"datatype":"UINT8","data":[0,0,0]}]}'),
    ("bool shape", b'{"inputs":[{"name":"i","shape":[true,1,1,3],"datatype":"UINT8","data":[0,0,0]}]}'),
    (
        "overflowing shape",
        b'{"inputs":[{"name":"i","shape":[4294967296,4294967296,4294967296,3],"datatype":"BYTES","data":[]}]}',
    ),
    ("bad UTF-8", b'{"inputs":"\xff\xfe"}'),
    (
        "binary size type",
        b'{"inputs":[{"name":"i","shape":[1],"datatype":"BYTES","parameters":{"binary_data_size":true}}]}',
    ),
]


@pytest.mark.parametrize(("label", "body"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_v2_bodies_are_json_4xx(server: Server, label: str, body: bytes) -> None:
    with server.client() as c:
        r = c.post("/v2/models/yolo/infer", content=body)
    assert 400 <= r.status_code < 500, (label, r.status_code, r.text[:300])
    assert r.headers["content-type"] == "application/json"
    assert r.json()["error"]


def test_unknown_versions_paths_and_methods_are_json_errors(server: Server, scenes: list[np.ndarray]) -> None:
    import base64

    doc = {
        "inputs": [
            {"name": "i", "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(_png8(scenes[0])).decode()]}
        ]
    }
    with server.client() as c:
        assert c.post("/v2/models/yolo/versions/1/infer", json=doc).status_code == 200
        _error(c.post("/v2/models/yolo/versions/2/infer", json=doc), 404, "unknown version '2'")
        _error(c.get("/v2/models/yolo/versions/7"), 404, "unknown version")
        _error(c.get("/v2/models/yolo/versions/7/ready"), 404, "unknown version")
        _error(c.get("/v2/nothing/here"), 404, "Not Found")
        _error(c.get("/v2/models/yolo/infer"), 405, "Method Not Allowed")


def test_client_hanging_up_mid_upload_is_not_an_error(server: Server, scenes: list[np.ndarray]) -> None:
    host, port = server.url.removeprefix("http://").split(":")
    for path in ("/v1/detect", "/v2/models/yolo/infer"):
        with socket.create_connection((host, int(port))) as s:
            s.sendall(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 500000\r\n\r\n".encode()
            )
            s.sendall(b"\x89PNG" + bytes(20_000))
            time.sleep(0.3)
    time.sleep(0.5)
    with server.client() as c:
        assert _detect(c, _png8(scenes[0])).status_code == 200
    log = server.log.read_text()
    assert "ERROR" not in log and "Traceback" not in log, log[-3000:]


def test_openapi_describes_the_request_bodies(server: Server) -> None:
    with server.client() as c:
        doc = c.get("/openapi.json").json()
    infer = doc["paths"]["/v2/models/{name}/infer"]["post"]["requestBody"]["content"]
    detect = doc["paths"]["/v1/detect"]["post"]["requestBody"]["content"]
    assert {"image/jpeg", "image/png", "application/octet-stream", "multipart/form-data"} <= set(detect)
    assert detect["image/png"]["schema"]["format"] == "binary"
    ref = infer["application/json"]["schema"]["$ref"]
    schema = {"$ref": ref, "components": doc["components"]}
    good = {"id": "a", "inputs": [{"name": "images", "shape": [1], "datatype": "BYTES", "data": ["aGk="]}]}
    jsonschema.validate(good, schema)
    for bad in ({"inputs": []}, {"inputs": [{"name": "i", "shape": [1], "datatype": "INT64"}]}, {**good, "id": 3}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
    error = doc["paths"]["/v1/detect"]["post"]["responses"]["413"]["content"]["application/json"]["schema"]
    assert error["$ref"].endswith("/ErrorBody")
    json.dumps(doc)  # serialisable as a whole
