"""The HTTP surface: Open Inference Protocol v2, `/v1/detect`, `/metrics`, on FastAPI.

The model loads in a background task after the socket opens, so `/v2/health/live` answers at once while
`/v2/health/ready` says 503 until the model is loaded, warmed up (and tuned, when asked). Hot endpoints read
the raw body and answer pre-serialised JSON: no pydantic validation per request, which matters at thousands
of requests per second. Every client error is a 4xx with `{"error": "..."}`.

Endpoints: `GET /v2`, `/v2/health/live`, `/v2/health/ready`, `/v2/models/{name}[/versions/1]` (metadata; its
`parameters` hold the batching settings in force and the tuning sweep), `.../ready`, `POST .../infer` (see v2.py
for tensors and layouts); `POST /v1/detect` (alias `/v1/predict`) with a raw JPEG/PNG body (image/jpeg, image/png,
application/octet-stream) or multipart files, answering `{"model": name, "images": [{"detections": [{"box":
[x1, y1, x2, y2], "score", "class_id", "class_name"}]}]}` in upload order, boxes in original image pixels; other
tasks add `"task"` and their own fields (answers.py; `?masks=rle|polygon` for segment); `GET /metrics`. Queue full: 503
with Retry-After. The task is the model's own (`task` argument: the one it must be, checked at load).

Limits (docs/inferenceservice.md): `max_body_bytes` holds for every body, with a Content-Length, chunked or
multipart (413); images are counted in decoded bytes from their headers before anything is decoded: a request over
`max_request_decoded_bytes`, an image over `max_batch_decoded_bytes` or more images than the queue holds can never
be served (413), while a full queue is worth retrying (503). Only versions `1` exist (others 404). A client that
hangs up mid-upload is logged at INFO; every error, unexpected ones included, is JSON.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from starlette.datastructures import Headers, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartParser
from starlette.requests import ClientDisconnect

from yolo_workloads.contract import DETECT_PATH, LIVE_PATH, METRICS_PATH, READY_PATH, DetectAnswer, ServeConfig, Task
from yolo_workloads.serve import answers, schema, v2
from yolo_workloads.serve.batcher import Batcher, Closed, QueueFull, TooLarge
from yolo_workloads.serve.imagecheck import ImageError, inspect_image
from yolo_workloads.serve.metrics import CONTENT_TYPE, ServeMetrics
from yolo_workloads.serve.pipeline import Classification, Detections, Detector, EncodedImage, Item, Outcome, item_bytes

log = logging.getLogger(__name__)
RAW_TYPES = ("image/jpeg", "image/png", "application/octet-stream")
VERSIONS = ("1",)
DISCONNECTED = 499  # nginx's code for "client closed the request": only metrics ever see it
Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


def _json(status: int, doc: Any, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(doc, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json(status, {"error": message}, headers)


class BodyError(Exception):
    """A body the server will not read to the end: too large (413), or its client hung up."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, but never more than `limit` bytes of it, whatever the framing: a Content-Length over the
    limit is refused before reading, a chunked body as soon as it passes the limit."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise BodyError(413, f"body of {length} bytes is over max_body_bytes={limit}")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyError(413, f"body of more than {limit} bytes is over max_body_bytes={limit}")
            chunks.append(chunk)
    except ClientDisconnect:
        log.info("client disconnected after sending %d bytes of %s %s", size, request.method, request.url.path)
        raise BodyError(DISCONNECTED, "client disconnected") from None
    return b"".join(chunks)


async def _once(data: bytes) -> AsyncGenerator[bytes, None]:
    yield data


async def multipart_files(headers: Headers, body: bytes, limit: int) -> list[bytes]:
    """The file parts of a multipart body already read (and so already held to the body limit)."""
    parser = MultiPartParser(headers, _once(body), max_part_size=limit)
    try:
        form = await parser.parse()
    except Exception as exc:  # python-multipart raises several kinds for a malformed body
        raise ImageError(f"malformed multipart body: {str(exc)[:200]}") from None
    try:
        return [await v.read() for _, v in form.multi_items() if isinstance(v, UploadFile)]
    finally:
        await form.close()


def _endpoint(path: str) -> str:
    """A bounded label for metrics (model names in paths must not create new series)."""
    if path.startswith("/v2/models/"):
        if path.endswith("/infer"):
            return "v2_infer"
        return "v2_model_ready" if path.endswith("/ready") else "v2_model_metadata"
    return {
        DETECT_PATH: "v1_detect",
        "/v1/predict": "v1_detect",
        METRICS_PATH: "metrics",
        LIVE_PATH: "v2_live",
        READY_PATH: "v2_ready",
        "/v2": "v2_server_metadata",
    }.get(path, "other")


class MetricsMiddleware:
    """Pure ASGI (cheaper than BaseHTTPMiddleware): counts, latency and in-flight gauge by endpoint and code."""

    def __init__(self, app: ASGIApp, metrics: ServeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        endpoint = _endpoint(scope["path"])
        code = [500]

        async def send_wrapper(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                code[0] = message["status"]
            await send(message)

        t0 = time.perf_counter()
        self.metrics.inflight.inc()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.inflight.dec()
            self.metrics.duration.labels(endpoint).observe(time.perf_counter() - t0)
            self.metrics.requests.labels(endpoint, str(code[0])).inc()


class ServerState:
    def __init__(self, cfg: ServeConfig, task: Task | None = None) -> None:
        self.cfg = cfg
        self.expected_task = task
        self.metrics = ServeMetrics()
        self.detector: Detector | None = None
        self.batcher: Batcher[Item, Outcome] | None = None
        self.ready = False
        self.draining = False
        self.load_error: str | None = None
        self.tuning: dict[str, Any] | None = None

    async def load(self) -> None:
        """Load, warm up, tune: then ready. A failure is logged and keeps the server not-ready."""
        cfg = self.cfg
        loop = asyncio.get_running_loop()
        try:
            det = await loop.run_in_executor(None, Detector, cfg, self.expected_task)
            sizes = sorted({1, cfg.max_batch_size // 2 or 1, cfg.max_batch_size})
            await loop.run_in_executor(None, det.warmup, sizes)
            self.detector = det
            m = self.metrics

            def on_batch(n: int) -> None:
                m.batch_size.observe(n)
                m.images.inc(n)

            batcher: Batcher[Item, Outcome] = Batcher(
                det.run,
                cfg.max_batch_size,
                cfg.max_queue_delay_ms,
                cfg.max_queue_size,
                on_batch=on_batch,
                on_depth=m.queue_depth.set,
                cost=item_bytes,
                max_batch_cost=cfg.max_batch_decoded_bytes,
            )
            batcher.start()
            self.batcher = batcher
            if det.device.type == "cuda":
                m.start_gpu_sampler(det.device.index or 0)
            if cfg.tuning.enabled:
                await self._tune(det, batcher)
            self.ready = True
            log.info("ready: model %s on %s", cfg.model_name, det.device)
        except Exception as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.exception("model failed to load; the server stays not-ready")

    async def _tune(self, det: Detector, batcher: Batcher[Item, Outcome]) -> None:
        from yolo_workloads.serve import synthetic, tuning

        rng = np.random.default_rng(0)
        h, w = (480, 640) if det.device.type == "cuda" else (det.imgsz * 3 // 4, det.imgsz)
        payloads = [EncodedImage(synthetic.encode(synthetic.scene(h, w, rng)), "jpeg") for _ in range(16)]
        best, trials = await tuning.tune(
            batcher,
            lambda i: payloads[i % len(payloads)],
            self.cfg.tuning.latency_slo_ms,
            self.cfg.tuning.trial_seconds,
        )
        self.tuning = {"chosen": asdict(best), "trials": [asdict(t) for t in trials]}

    @property
    def task(self) -> Task:
        """The model's task once loaded; before, the one asked for (or detect)."""
        return self.detector.task if self.detector else (self.expected_task or "detect")

    def output_names(self) -> tuple[str, ...]:
        """Outputs a v2 request may ask for: the task's, or before the model is loaded any (it answers 503)."""
        if self.detector is None:
            return tuple(v2.DATATYPES)
        return v2.TASK_OUTPUTS[self.detector.task]

    def metadata(self) -> dict[str, Any]:
        cfg = self.cfg
        b = self.batcher
        params: dict[str, Any] = {
            "max_batch_size": b.max_batch_size if b else cfg.max_batch_size,
            "max_queue_delay_ms": b.max_queue_delay_ms if b else cfg.max_queue_delay_ms,
            "max_queue_size": cfg.max_queue_size,
            "max_body_bytes": cfg.max_body_bytes,
            "max_image_pixels": cfg.max_image_pixels,
            "max_request_decoded_bytes": cfg.max_request_decoded_bytes,
            "max_batch_decoded_bytes": cfg.max_batch_decoded_bytes,
            "imgsz": cfg.imgsz,
            "conf": cfg.conf,
            "iou": cfg.iou,
            "half": self.detector.half if self.detector else cfg.half,
            "device": str(self.detector.device) if self.detector else None,
            "classes": self.detector.names if self.detector else None,
            "task": self.task,
            "tuned": self.tuning is not None,
        }
        if self.tuning:
            params["tuning"] = self.tuning
        return {
            "name": cfg.model_name,
            "versions": ["1"],
            "platform": "ultralytics_pytorch",
            "inputs": [{"name": v2.INPUT_NAME, "datatype": "BYTES", "shape": [-1]}],
            "outputs": [
                {"name": name, "datatype": v2.DATATYPES[name], "shape": self._output_shape(name)}
                for name in v2.TASK_OUTPUTS[self.task]
            ],
            "parameters": params,
        }

    def _output_shape(self, name: str) -> list[int]:
        if self.task == "classify":
            return [-1, -1]
        nk, nd = self.detector.kpt_shape if self.detector else (-1, 3)
        shapes = {"boxes": [-1, -1, 4], "counts": [-1], "mask_rle": [-1], "keypoints": [-1, -1, nk, nd]}
        return shapes.get(name, [-1, -1, 5] if name == "obb" else [-1, -1])

    async def infer(self, items: list[Item]) -> list[Detections | Classification] | Response:
        """Submit to the batcher; map queue and per-image failures to HTTP answers."""
        if not self.ready or self.batcher is None:
            return _error(503, "model not ready")
        try:
            outcomes = await self.batcher.submit(items)
        except QueueFull as full:
            return _error(503, "queue full, retry later", {"Retry-After": str(full.retry_after_s)})
        except TooLarge as exc:
            return _error(413, f"{exc}: split the request")
        except Closed:
            return _error(503, "server is shutting down")
        except Exception as exc:  # logged by the batcher; this request alone fails
            return _error(500, f"internal error: {type(exc).__name__}")
        for i, o in enumerate(outcomes):
            if isinstance(o, ImageError):
                return _error(o.status, f"image {i}: {o}")
        return [o for o in outcomes if isinstance(o, (Detections, Classification))]

    def check_encoded(self, datas: list[bytes]) -> list[Item]:
        """Headers read, budgets checked (ImageError otherwise): the items, not yet decoded."""
        items: list[Item] = []
        for i, data in enumerate(datas):
            try:
                info = inspect_image(data, self.cfg.max_image_pixels)
                self.check_image_bytes(info.decoded_bytes, f"{info.width}x{info.height}")
            except ImageError as exc:
                raise ImageError(f"image {i}: {exc}" if len(datas) > 1 else str(exc), exc.status) from None
            items.append(EncodedImage(data, info.format, info.decoded_bytes, info.channels))
        self.check_request_bytes(items)
        return items

    def check_image_bytes(self, decoded: int, size: str) -> None:
        """An image that alone is over the batch budget can never be served: 413."""
        limit = self.cfg.max_batch_decoded_bytes
        if decoded > limit:
            raise ImageError(f"image {size} decodes to {decoded} bytes, over max_batch_decoded_bytes={limit}", 413)

    def check_request_bytes(self, items: list[Item]) -> None:
        total = sum(item_bytes(item) for item in items)
        limit = self.cfg.max_request_decoded_bytes
        if total > limit:
            raise ImageError(
                f"request decodes to {total} bytes, over max_request_decoded_bytes={limit}: send fewer or smaller "
                "images per request",
                413,
            )


def create_app(cfg: ServeConfig, task: Task | None = None) -> FastAPI:
    """`task`: the task the weights must be for (a mismatch keeps the server not-ready, naming both)."""
    state = ServerState(cfg, task)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loader = asyncio.create_task(state.load())
        yield
        state.draining = True
        state.ready = False
        await loader
        if state.batcher is not None:
            await state.batcher.close()  # finish what is queued
        state.metrics.stop()
        log.info("drained and stopped")

    app = FastAPI(title="yolo-workload serve", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.serve = state
    _install_error_handlers(app)
    _install_openapi(app)
    _install_health_routes(app, state)
    _install_infer_routes(app, state)
    _install_detect_routes(app, state)

    @app.get(METRICS_PATH)
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    return app


def _unknown_model(cfg: ServeConfig, name: str, version: str = "1") -> Response | None:
    """The 404 for a model name or version this server does not serve; None for its own."""
    if name != cfg.model_name:
        return _error(404, f"unknown model {name!r}; this server serves {cfg.model_name!r}")
    if version not in VERSIONS:
        return _error(404, f"unknown version {version!r} of model {name!r}; versions are {', '.join(VERSIONS)}")
    return None


def _install_health_routes(app: FastAPI, state: ServerState) -> None:
    """Liveness, readiness and the Open Inference Protocol's server and model metadata."""
    cfg = state.cfg

    @app.get(LIVE_PATH)
    async def live() -> Response:
        return _json(200, {"live": True})

    @app.get(READY_PATH)
    async def ready() -> Response:
        ok = state.ready and not state.draining
        doc: dict[str, Any] = {"ready": ok, "worker_pid": os.getpid()}  # which of `workers` processes answered
        if state.load_error:
            doc["error"] = state.load_error
        return _json(200 if ok else 503, doc)

    @app.get("/v2")
    async def server_metadata() -> Response:
        return _json(200, {"name": "yolo-workload", "version": "1", "extensions": ["binary_tensor_data"]})

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def model_metadata(name: str, version: str = "1") -> Response:
        return _unknown_model(cfg, name, version) or _json(200, state.metadata())

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def model_ready(name: str, version: str = "1") -> Response:
        if (err := _unknown_model(cfg, name, version)) is not None:
            return err
        ok = state.ready and not state.draining
        return _json(200 if ok else 503, {"name": name, "ready": ok})


def _pixel_items(state: ServerState, pixels: np.ndarray) -> list[Item]:
    """The images of a v2 request's raw pixel tensor (N, 3, H, W), checked against the server's limits."""
    cfg = state.cfg
    _n, _, h, w = pixels.shape
    if h * w > cfg.max_image_pixels:
        raise ImageError(f"images are {w}x{h}, over max_image_pixels={cfg.max_image_pixels}", 413)
    if h == 0 or w == 0:
        raise ImageError(f"images have an empty size {w}x{h}")
    state.check_image_bytes(3 * h * w, f"{w}x{h}")
    items: list[Item] = list(torch.from_numpy(pixels).unbind(0))
    state.check_request_bytes(items)
    return items


def _install_infer_routes(app: FastAPI, state: ServerState) -> None:
    """The Open Inference Protocol v2 infer endpoint (JSON or binary tensor data)."""
    cfg = state.cfg

    @app.post("/v2/models/{name}/infer", openapi_extra=schema.INFER_OPENAPI)
    @app.post("/v2/models/{name}/versions/{version}/infer", openapi_extra=schema.INFER_OPENAPI)
    async def infer_v2(name: str, request: Request, version: str = "1") -> Response:
        if (err := _unknown_model(cfg, name, version)) is not None:
            return err
        try:
            body = await read_body(request, cfg.max_body_bytes)
            req = v2.parse_request(
                body, request.headers.get(v2.HEADER_LENGTH), cfg.max_request_decoded_bytes, state.output_names()
            )
            if req.encoded is not None:
                items = state.check_encoded(req.encoded)
            else:
                assert req.pixels is not None
                items = _pixel_items(state, req.pixels)
        except (ImageError, BodyError) as exc:
            return _error(exc.status, str(exc))
        if not items:
            return _error(400, "invalid inference request: no images in the input")
        dets = await state.infer(items)
        if isinstance(dets, Response):
            return dets
        payload, headers = v2.encode_response(cfg.model_name, req, v2.pack(dets, state.task))
        media = headers.pop("content-type")
        return Response(payload, media_type=media, headers=headers)


async def _uploads(cfg: ServeConfig, request: Request) -> list[bytes]:
    """The images of a /v1/detect body (raw or multipart), or ImageError/BodyError."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in (*RAW_TYPES, "", "multipart/form-data"):
        raise ImageError(
            f"content type {ctype!r} not supported: send image/jpeg, image/png, "
            "application/octet-stream or multipart/form-data",
            415,
        )
    body = await read_body(request, cfg.max_body_bytes)
    if ctype != "multipart/form-data":
        return [body]
    datas = await multipart_files(request.headers, body, cfg.max_body_bytes)
    if not datas:
        raise ImageError("multipart body has no file parts: upload images as files")
    return datas


def _install_detect_routes(app: FastAPI, state: ServerState) -> None:
    """`/v1/detect` (alias `/v1/predict`): images in, the task's JSON answer out."""
    cfg = state.cfg

    @app.post(DETECT_PATH, openapi_extra=schema.DETECT_OPENAPI)
    @app.post("/v1/predict", openapi_extra=schema.DETECT_OPENAPI)
    async def detect(request: Request) -> Response:
        try:
            masks = answers.mask_format(request.query_params.get("masks"))
            items = state.check_encoded(await _uploads(cfg, request))
        except (ImageError, BodyError) as exc:
            return _error(exc.status, str(exc))
        dets = await state.infer(items)
        if isinstance(dets, Response):
            return dets
        names = state.detector.names if state.detector else {}
        images = [answers.image_answer(d, names, masks) for d in dets]
        doc: DetectAnswer = {"model": cfg.model_name, "images": images}
        if state.task != "detect":  # detection's answer keeps its historical shape, byte for byte
            doc = {"model": cfg.model_name, "task": state.task, "images": images}
        return _json(200, doc)


def _install_error_handlers(app: FastAPI) -> None:
    """FastAPI's own errors (unknown path, wrong method, bad path parameter) and unexpected exceptions answer in
    the server's JSON error shape too, never `{"detail": ...}` or a plain-text 500."""

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    async def validation_error(request: Request, exc: Exception) -> Response:
        return _error(422, f"invalid request: {str(exc)[:300]}")

    async def unexpected(request: Request, exc: Exception) -> Response:  # Starlette re-raises: uvicorn logs it
        return _error(500, f"internal error: {type(exc).__name__}")

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected)


def _install_openapi(app: FastAPI) -> None:
    """The generated document, plus the request-body schemas the raw-body endpoints declare (schema.py)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version="1", routes=app.routes)
            doc.setdefault("components", {}).setdefault("schemas", {}).update(schema.components())
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the document
