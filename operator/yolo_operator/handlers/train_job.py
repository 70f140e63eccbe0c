"""Kopf wiring of the YoloTrainJob controller (controllers/train_job.py): which triggers queue a resource's key on
the shared work queue, and the resync threads that start and stop with the operator.

Triggers: a watch event of the resource (not the echo of our own status patch), one of its Jobs or their pods
(the cache's hooks, on its watch threads), the periodic resync (every reconcile period, through the queue's
periodic path so a resource backing off keeps its one retry chain). The progress loop reads the training pods'
metrics every progress period while a job trains.
"""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from yolo_operator.api.common import GROUP, VERSION
from yolo_operator.controllers.train_job import KIND, PLURAL, TrainJobController
from yolo_operator.render.common import LABEL_COMPONENT, LABEL_INSTANCE, controller_name
from yolo_operator.render.train_job import TRAINING, TUNING
from yolo_operator.runtime.manager import Runtime
from yolo_operator.runtime.resync import Resync


def register(registry: kopf.OperatorRegistry, controller: TrainJobController, runtime: Runtime) -> None:
    """Add the YoloTrainJob handlers to `registry`; reconciles run on `runtime`'s queue."""
    settings = controller.settings
    runtime.route(KIND, controller.reconcile)

    resync: Resync[str] = Resync(
        "yolotrainjob-resync",
        settings.reconcile_period_seconds,
        lambda ns, name: runtime.enqueue_periodic(KIND, ns, name),
    )
    progress: Resync[str] = Resync(
        "yolotrainjob-progress",
        settings.progress_period_seconds,
        controller.update_progress,
        when=lambda phase: phase == "Training",
    )

    @kopf.on.startup(id="yolotrainjob-resync-start", registry=registry)
    async def train_job_resync_start(**_: Any) -> None:
        resync.start()
        progress.start()

    @kopf.on.cleanup(id="yolotrainjob-resync-stop", registry=registry)
    async def train_job_resync_stop(**_: Any) -> None:
        await asyncio.gather(asyncio.to_thread(resync.stop), asyncio.to_thread(progress.stop))

    # On the event loop and short: queue the key (the runtime's own handler has stored the body; Kopf's thread pool
    # is not used).
    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def train_job_event(*, name: str, namespace: str | None, type: str, body: Any, **_: Any) -> None:
        ns = namespace or "default"
        if type == "DELETED":
            controller.forget(ns, name)
            resync.gone(ns, name)
            progress.gone(ns, name)
            return
        phase = str((body.get("status") or {}).get("phase") or "")
        resync.seen(ns, name, phase)
        progress.seen(ns, name, phase)
        if not controller.own_write(ns, name, body.get("metadata", {}).get("resourceVersion")):
            # The echo of our own status patch carries nothing new (it used to cost ~1.6 reconciles per resource).
            runtime.enqueue(KIND, ns, name)

    def child_changed(_: str, obj: dict[str, Any]) -> None:
        """A Job of ours, or a pod of one of them, changed (on the cache's watch thread)."""
        labels = obj.get("metadata", {}).get("labels") or {}
        if obj.get("kind") == "Job":
            owner = controller_name(obj, KIND)
        elif labels.get(LABEL_COMPONENT) in (TUNING, TRAINING):
            owner = labels.get(LABEL_INSTANCE)
        else:
            return
        if owner:
            runtime.enqueue(KIND, obj["metadata"].get("namespace") or "default", owner)

    runtime.cache.on_job(child_changed)
    runtime.cache.on_pod(child_changed)
