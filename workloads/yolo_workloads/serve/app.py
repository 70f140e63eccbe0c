"""The HTTP surface: Open Inference Protocol v2, `/v1/detect`, `/metrics`, on FastAPI.

The model loads in a background task after the socket opens, so `/v2/health/live` answers at once while
`/v2/health/ready` says 503 until the model is loaded, warmed up (and tuned, when asked). Hot endpoints read
the raw body and answer pre-serialised JSON: no pydantic validation per request, which matters at thousands
of requests per second. Every client error is a 4xx with `{"error": "..."}`.

Endpoints: `GET /v2`, `/v2/health/live`, `/v2/health/ready`, `/v2/models/{name}[/versions/1]` (metadata; its
`parameters` hold the batching settings in force and the tuning sweep), `.../ready`, `POST .../infer` (see v2.py
for tensors and layouts); `POST /v1/detect` with a raw JPEG/PNG body (image/jpeg, image/png,
application/octet-stream) or multipart files, answering `{"model": name, "images": [{"detections": [{"box":
[x1, y1, x2, y2], "score", "class_id", "class_name"}]}]}` in upload order, boxes in original image pixels;
`GET /metrics`. Queue full: 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from yolo_workloads.contract import ServeConfig
from yolo_workloads.serve import v2
from yolo_workloads.serve.batcher import Batcher, Closed, QueueFull
from yolo_workloads.serve.imagecheck import ImageError, inspect_image
from yolo_workloads.serve.metrics import CONTENT_TYPE, ServeMetrics
from yolo_workloads.serve.pipeline import Detections, Detector, EncodedImage, Item, Outcome

log = logging.getLogger(__name__)
RAW_TYPES = ("image/jpeg", "image/png", "application/octet-stream")
Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


def _json(status: int, doc: Any, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(doc, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json(status, {"error": message}, headers)


def _endpoint(path: str) -> str:
    """A bounded label for metrics (model names in paths must not create new series)."""
    if path.startswith("/v2/models/"):
        if path.endswith("/infer"):
            return "v2_infer"
        return "v2_model_ready" if path.endswith("/ready") else "v2_model_metadata"
    return {
        "/v1/detect": "v1_detect",
        "/metrics": "metrics",
        "/v2/health/live": "v2_live",
        "/v2/health/ready": "v2_ready",
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
    def __init__(self, cfg: ServeConfig) -> None:
        self.cfg = cfg
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
            det = await loop.run_in_executor(None, Detector, cfg)
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

    def metadata(self) -> dict[str, Any]:
        cfg = self.cfg
        b = self.batcher
        params: dict[str, Any] = {
            "max_batch_size": b.max_batch_size if b else cfg.max_batch_size,
            "max_queue_delay_ms": b.max_queue_delay_ms if b else cfg.max_queue_delay_ms,
            "max_queue_size": cfg.max_queue_size,
            "imgsz": cfg.imgsz,
            "conf": cfg.conf,
            "iou": cfg.iou,
            "half": self.detector.half if self.detector else cfg.half,
            "device": str(self.detector.device) if self.detector else None,
            "classes": self.detector.names if self.detector else None,
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
                {"name": "boxes", "datatype": "FP32", "shape": [-1, -1, 4]},
                {"name": "scores", "datatype": "FP32", "shape": [-1, -1]},
                {"name": "classes", "datatype": "INT32", "shape": [-1, -1]},
                {"name": "counts", "datatype": "INT32", "shape": [-1]},
            ],
            "parameters": params,
        }

    async def infer(self, items: list[Item]) -> list[Detections] | Response:
        """Submit to the batcher; map queue and per-image failures to HTTP answers."""
        if not self.ready or self.batcher is None:
            return _error(503, "model not ready")
        try:
            outcomes = await self.batcher.submit(items)
        except QueueFull as full:
            return _error(503, "queue full, retry later", {"Retry-After": str(full.retry_after_s)})
        except Closed:
            return _error(503, "server is shutting down")
        for i, o in enumerate(outcomes):
            if isinstance(o, ImageError):
                return _error(o.status, f"image {i}: {o}")
        return [o for o in outcomes if isinstance(o, Detections)]

    def check_encoded(self, datas: list[bytes]) -> list[Item]:
        items: list[Item] = []
        for i, data in enumerate(datas):
            try:
                info = inspect_image(data, self.cfg.max_image_pixels)
            except ImageError as exc:
                raise ImageError(f"image {i}: {exc}" if len(datas) > 1 else str(exc), exc.status) from None
            items.append(EncodedImage(data, info.format))
        return items


def create_app(cfg: ServeConfig) -> FastAPI:
    state = ServerState(cfg)

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

    async def body_of(request: Request) -> bytes | Response:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > cfg.max_body_bytes:
            return _error(413, f"body of {length} bytes is over max_body_bytes={cfg.max_body_bytes}")
        body = await request.body()
        if len(body) > cfg.max_body_bytes:
            return _error(413, f"body of {len(body)} bytes is over max_body_bytes={cfg.max_body_bytes}")
        return body

    @app.get("/v2/health/live")
    async def live() -> Response:
        return _json(200, {"live": True})

    @app.get("/v2/health/ready")
    async def ready() -> Response:
        ok = state.ready and not state.draining
        doc: dict[str, Any] = {"ready": ok, "worker_pid": os.getpid()}  # which of `workers` processes answered
        if state.load_error:
            doc["error"] = state.load_error
        return _json(200 if ok else 503, doc)

    @app.get("/v2")
    async def server_metadata() -> Response:
        return _json(200, {"name": "yolo-workload", "version": "1", "extensions": ["binary_tensor_data"]})

    def unknown(name: str) -> Response | None:
        return (
            None
            if name == cfg.model_name
            else _error(404, f"unknown model {name!r}; this server serves {cfg.model_name!r}")
        )

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def model_metadata(name: str, version: str = "1") -> Response:
        return unknown(name) or _json(200, state.metadata())

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def model_ready(name: str, version: str = "1") -> Response:
        if (err := unknown(name)) is not None:
            return err
        ok = state.ready and not state.draining
        return _json(200 if ok else 503, {"name": name, "ready": ok})

    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer_v2(name: str, request: Request, version: str = "1") -> Response:
        if (err := unknown(name)) is not None:
            return err
        body = await body_of(request)
        if isinstance(body, Response):
            return body
        try:
            req = v2.parse_request(body, request.headers.get(v2.HEADER_LENGTH))
            if req.encoded is not None:
                items = state.check_encoded(req.encoded)
            else:
                assert req.pixels is not None
                _n, _, h, w = req.pixels.shape
                if h * w > cfg.max_image_pixels:
                    raise ImageError(f"images are {w}x{h}, over max_image_pixels={cfg.max_image_pixels}", 413)
                if h == 0 or w == 0:
                    raise ImageError(f"images have an empty size {w}x{h}")
                items = list(torch.from_numpy(req.pixels).unbind(0))
        except ImageError as exc:
            return _error(exc.status, str(exc))
        if not items:
            return _error(400, "invalid inference request: no images in the input")
        dets = await state.infer(items)
        if isinstance(dets, Response):
            return dets
        payload, headers = v2.encode_response(cfg.model_name, req, v2.pack(dets))
        media = headers.pop("content-type")
        return Response(payload, media_type=media, headers=headers)

    @app.post("/v1/detect")
    async def detect(request: Request) -> Response:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        datas: list[bytes] = []
        if ctype == "multipart/form-data":
            try:
                form = await request.form(max_part_size=cfg.max_body_bytes)
            except Exception as exc:
                return _error(400, f"malformed multipart body: {exc}")
            for _, value in form.multi_items():
                if isinstance(value, UploadFile):
                    datas.append(await value.read())
            if not datas:
                return _error(400, "multipart body has no file parts: upload images as files")
        elif ctype in RAW_TYPES or ctype == "":
            body = await body_of(request)
            if isinstance(body, Response):
                return body
            datas = [body]
        else:
            return _error(
                415,
                f"content type {ctype!r} not supported: send image/jpeg, image/png, "
                "application/octet-stream or multipart/form-data",
            )
        try:
            items = state.check_encoded(datas)
        except ImageError as exc:
            return _error(exc.status, str(exc))
        dets = await state.infer(items)
        if isinstance(dets, Response):
            return dets
        names = state.detector.names if state.detector else {}
        images = []
        for d in dets:
            rows = [
                {
                    "box": [round(float(v), 2) for v in box],
                    "score": round(float(s), 4),
                    "class_id": int(c),
                    "class_name": names.get(int(c), str(int(c))),
                }
                for box, s, c in zip(d.boxes.tolist(), d.scores.tolist(), d.classes.tolist(), strict=True)
            ]
            images.append({"detections": rows})
        return _json(200, {"model": cfg.model_name, "images": images})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    return app
