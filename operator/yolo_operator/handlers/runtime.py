"""Kopf wiring of the shared runtime (`runtime.manager.Runtime`): keep the custom resources' latest bodies, start
the cache and the work queue before the first watch event is handled, stop them at cleanup."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from yolo_operator.api.common import GROUP, VERSION
from yolo_operator.runtime.manager import Runtime


def register(registry: kopf.OperatorRegistry, runtime: Runtime) -> None:
    """Start with the operator (before any watch event is handled: Kopf runs startup handlers first), stop with it;
    keep the custom resources' latest bodies. Register before the controllers: Kopf runs one event's handlers in
    registration order, so a controller's handler queues a key only after the body is stored."""
    bodies = runtime.cache.bodies

    @kopf.on.event(GROUP, VERSION, "yolotrainjobs", registry=registry)
    @kopf.on.event(GROUP, VERSION, "yoloinferenceservices", registry=registry)
    async def keep_body(*, type: str, body: Any, **_: Any) -> None:
        if type == "DELETED":
            meta = body.get("metadata", {})
            bodies.drop(str(body.get("kind")), meta.get("namespace") or "", str(meta.get("name")))
        else:
            bodies.put(dict(body))

    @kopf.on.startup(id="yolo-runtime-start", registry=registry)
    async def runtime_start(**_: Any) -> None:
        await asyncio.to_thread(runtime.start)

    @kopf.on.cleanup(id="yolo-runtime-stop", registry=registry)
    async def runtime_stop(**_: Any) -> None:
        await asyncio.to_thread(runtime.stop)
