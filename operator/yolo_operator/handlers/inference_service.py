"""Kopf wiring of the YoloInferenceService controller and its autoscaler (controllers/inference_service.py): which
triggers queue a service's key on the shared work queue, and the resync threads that start and stop with the
operator.

Triggers: every watch event of the service (the first listing after a restart included: a reconcile that finds the
children as rendered and the status unchanged writes nothing), a change of its Deployment (the cache's hook), an
event of the YoloTrainJob it takes its weights from (looked up in a Kopf index, not by listing services), and the
periodic recheck (every reconcile period, through the queue's periodic path). The autoscaler steps every
autoscaler period for the services that enable it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from yolo_operator.api.common import GROUP, VERSION
from yolo_operator.controllers.inference_service import KIND, PLURAL, InferenceController
from yolo_operator.render.common import controller_name
from yolo_operator.runtime.manager import Runtime
from yolo_operator.runtime.resync import Resync

WaitingIndex = Mapping[tuple[str, str], Iterable[str]]
"""(namespace, YoloTrainJob name) → names of the services whose model comes from it (Kopf's
`yolo_services_by_train_job` index)."""


def register(registry: kopf.OperatorRegistry, controller: InferenceController, runtime: Runtime) -> None:
    """Register the controller's handlers into a Kopf registry (main.py and the test fixture call this);
    reconciles run on `runtime`'s queue."""
    settings = controller.settings
    runtime.route(KIND, controller.reconcile)

    # Periodic work without Kopf timers (see runtime/resync.py): a reconcile every reconcile period (it checks every
    # child against its watched copy, so drift is undone within one period), an autoscaler step every autoscaler
    # period for the services that enable it.
    recheck: Resync[bool] = Resync(
        "yoloinferenceservice-recheck",
        settings.reconcile_period_seconds,
        lambda ns, name: runtime.enqueue_periodic(KIND, ns, name),
    )
    autoscaler: Resync[bool] = Resync(
        "yoloinferenceservice-autoscale",
        settings.autoscaler_period_seconds,
        controller.autoscale,
        when=lambda enabled: enabled,
    )

    @kopf.on.startup(id="yoloinferenceservice-resync-start", registry=registry)
    async def inference_service_resync_start(**_: Any) -> None:
        recheck.start()
        autoscaler.start()

    @kopf.on.cleanup(id="yoloinferenceservice-resync-stop", registry=registry)
    async def inference_service_resync_stop(**_: Any) -> None:
        await asyncio.gather(asyncio.to_thread(recheck.stop), asyncio.to_thread(autoscaler.stop))

    # On the event loop and short: queue the key (the runtime's own handler has stored the body).
    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def inference_service_event(
        *, name: str, namespace: str | None, type: str, spec: Any, uid: str | None, **_: Any
    ) -> None:
        ns = namespace or "default"
        if type == "DELETED":
            recheck.gone(ns, name)
            autoscaler.gone(ns, name)
            controller.forget(ns, name, uid)  # children go by ownerReference (garbage collector)
            return
        enabled = bool((spec.get("autoscaling") or {}).get("enabled"))
        recheck.seen(ns, name, enabled)
        autoscaler.seen(ns, name, enabled)
        runtime.enqueue(KIND, ns, name)

    def deployment_changed(kind: str, obj: dict[str, Any]) -> None:
        owner = controller_name(obj, KIND)
        if owner and kind != "DELETED":
            runtime.enqueue(KIND, obj["metadata"].get("namespace") or "default", owner)

    runtime.cache.on_deployment(deployment_changed)

    # Which services wait on which YoloTrainJob, kept from the services' own watch: a YoloTrainJob event looks
    # its waiters up instead of listing every service in the namespace.
    @kopf.index(GROUP, VERSION, PLURAL, id="yolo_services_by_train_job", registry=registry)
    async def yolo_services_by_train_job(
        *, name: str, namespace: str | None, spec: Any, **_: Any
    ) -> dict[tuple[str, str], str] | None:
        job = (spec.get("model") or {}).get("fromTrainJob")
        return {(namespace or "default", str(job)): name} if job else None

    @kopf.on.event(GROUP, VERSION, "yolotrainjobs", registry=registry)
    async def train_job_event_for_inference(*, name: str, namespace: str | None, **kw: Any) -> None:
        ns = namespace or "default"
        waiting: WaitingIndex = kw["yolo_services_by_train_job"]
        for service in sorted(set(waiting.get((ns, name), ()))):
            runtime.enqueue(KIND, ns, service)
