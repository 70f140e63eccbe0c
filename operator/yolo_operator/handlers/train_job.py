"""Kopf wiring of the YoloTrainJob controller: observe → decide (lifecycle) → act → one status patch.

Level-based: every trigger (a watch event on the resource, its Jobs or their pods, the periodic resync, an operator
restart) adds the resource's key to the shared work queue (`handlers.runtime`), whose workers run `reconcile`;
running it twice or after a crash creates nothing twice (children have fixed names and are created only when
absent). With a `ClusterCache` (the operator) it reads the resource, its Jobs, pods and the nodes from watch-fed
copies and only writes reach the API server; without one (tests, tools) it reads them fresh. A second loop copies
the training pod's metrics into status.progress. Issue 10: built for 1,000 resources on 500 nodes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from yolo_operator.api.common import GROUP, VERSION, format_errors
from yolo_operator.api.train_job import YoloTrainJob, YoloTrainJobStatus
from yolo_operator.handlers import access, stalled
from yolo_operator.handlers.resync import Resync
from yolo_operator.handlers.runtime import Runtime
from yolo_operator.k8s.cache import ClusterCache, missing_claims
from yolo_operator.k8s.client import ApiError, Kube, Ref
from yolo_operator.k8s.workloads import (
    JobView,
    eligible_nodes,
    failed_create_selector,
    job_view,
    max_allocatable,
    newest_message,
    node_label,
    node_summary,
    pods_of,
)
from yolo_operator.lifecycle.train_job import (
    Action,
    CachedTuning,
    CreateTrainingJob,
    CreateTuningJob,
    Decision,
    Observed,
    Policy,
    ResumeJobs,
    StepObservation,
    StepState,
    SuspendJobs,
    WriteCache,
    decide,
)
from yolo_operator.lifecycle.tuning_cache import (
    CACHE_CONFIG_MAP,
    GPU_PRODUCT_LABEL,
    cache_key,
    decode_entry,
    encode_entry,
    expected_gpu_product,
)
from yolo_operator.metrics import operator_metrics as m
from yolo_operator.metrics.progress import HttpMetricsSource, MetricsSource, progress_from
from yolo_operator.render.common import (
    APP_NAME,
    GPU_RESOURCE,
    LABEL_COMPONENT,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    MANAGER,
    WORKLOAD_CONTAINER,
)
from yolo_operator.render.train_job import (
    TRAINING,
    TUNING,
    RenderOptions,
    claims_of,
    job_name,
    training_objects,
    tuning_objects,
)
from yolo_operator.settings import OperatorSettings

log = logging.getLogger(__name__)
KIND = "YoloTrainJob"
PLURAL = "yolotrainjobs"
API_VERSION = f"{GROUP}/{VERSION}"


@dataclass
class TrainJobController:
    """What the handlers share: the API client, settings, the metrics source, the cache, per-resource locks."""

    kube: Kube
    settings: OperatorSettings
    metrics_source: MetricsSource = field(default_factory=HttpMetricsSource)
    cache: ClusterCache | None = None
    """Watch-fed copies to read from; None reads everything from the API server."""
    _locks: dict[str, threading.Lock] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)
    _fits: dict[str, tuple[list[Mapping[str, Any]], int]] = field(default_factory=dict)
    _fits_version: int = -1
    _written: dict[str, str] = field(default_factory=dict)
    """resourceVersion of each resource right after our last status patch: the watch event it causes is skipped."""

    @property
    def options(self) -> RenderOptions:
        return RenderOptions(self.settings.default_image, self.settings.workload_metrics_port)

    def lock(self, namespace: str, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(f"{namespace}/{name}", threading.Lock())

    # --- reconcile ------------------------------------------------------------------------------------------

    def own_write(self, namespace: str, name: str, resource_version: str | None) -> bool:
        """Is this the version our own last status patch produced (nothing new to react to)?"""
        with self._guard:
            return resource_version is not None and self._written.get(f"{namespace}/{name}") == resource_version

    def forget(self, namespace: str, name: str) -> None:
        with self._guard:
            self._written.pop(f"{namespace}/{name}", None)
            self._locks.pop(f"{namespace}/{name}", None)

    def reconcile(self, namespace: str, name: str) -> Decision | None:
        with self.lock(namespace, name):
            try:
                decision = self._reconcile(namespace, name)
            except Exception:
                m.reconciles.labels(KIND, "error").inc()
                m.reconcile_errors.labels(KIND).inc()
                raise
            m.reconciles.labels(KIND, "ok").inc()
            return decision

    def _body(self, namespace: str, name: str) -> dict[str, Any] | None:
        if self.cache is not None:
            return self.cache.bodies.get(KIND, namespace, name)
        return self.kube.get(API_VERSION, KIND, name, namespace)

    def _reconcile(self, namespace: str, name: str) -> Decision | None:
        raw = self._body(namespace, name)
        if raw is None or raw.get("metadata", {}).get("deletionTimestamp"):
            return None  # gone or going: garbage collection removes the children
        try:
            job = YoloTrainJob.model_validate(raw)
        except ValidationError as exc:
            self._reject(raw, "; ".join(format_errors(exc)))
            return None
        try:
            observed = self.observe(job)
            decision = decide(job, observed, Policy(claim_grace_seconds=self.settings.claim_grace_seconds))
            for action in decision.actions:
                self.execute(job, action)
        except ApiError as exc:
            if access.is_access_error(exc):
                access.report_refused(self.kube, self._ref(job), raw, exc)
            elif stalled.is_user_actionable(exc):
                self._status_written(stalled.report(self.kube, self._ref(job), raw, exc))
            raise
        self.write_status(job, decision)
        return decision

    def _children(self, namespace: str, name: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """This resource's Jobs and (when it has any) their pods."""
        if self.cache is not None:
            jobs = self.cache.jobs_of(namespace, name)
            return jobs, (self.cache.pods_of(namespace, name) if jobs else [])
        # One LIST of this resource's Jobs (both fixed names) instead of a GET per step; pods only when a Job exists.
        labels = {LABEL_INSTANCE: name, LABEL_MANAGED_BY: MANAGER}
        jobs = self.kube.list("batch/v1", "Job", namespace, labels=labels)
        return jobs, (self.kube.list("v1", "Pod", namespace, labels=labels) if jobs else [])

    def observe(self, job: YoloTrainJob) -> Observed:
        ns, name, spec = job.metadata.namespace, job.metadata.name, job.spec
        listed, pods = self._children(ns, name)
        jobs = {j["metadata"]["name"]: j for j in listed}
        tuning_job, training_job = jobs.get(job_name(name, TUNING)), jobs.get(job_name(name, TRAINING))
        tuning = job_view(tuning_job, pods, WORKLOAD_CONTAINER)
        training = job_view(training_job, pods, WORKLOAD_CONTAINER)
        product = None
        if tuning.state == "succeeded":
            product = "cpu" if spec.resources.gpus == 0 else self._gpu_product(tuning.node_name)
        not_started = all(v.state in ("absent", "pending") for v in (tuning, training))
        missing: tuple[str, ...] = ()
        max_gpus: int | None = None
        cached: CachedTuning | None = None
        if not_started:
            missing = tuple(missing_claims(self.kube, self.cache, ns, claims_of(spec)))
            eligible, most_gpus = self._fit(
                spec.resources.node_selector, [t.to_wire() for t in spec.resources.tolerations or []]
            )
            if spec.resources.gpus:
                max_gpus = most_gpus
            reusable = spec.tuning.enabled and spec.tuning.reuse == "IfAvailable"
            if reusable and tuning.state == "absent" and not (job.status and job.status.tuning):
                cached = self._cache_lookup(job, [node_label(n, GPU_PRODUCT_LABEL) or "" for n in eligible])
        return Observed(
            now=datetime.now(UTC),
            tuning=_step(tuning, product, self._refusal(tuning, tuning_job, pods)),
            training=_step(training, None, self._refusal(training, training_job, pods)),
            cached=cached,
            missing_claims=missing,
            max_allocatable_gpus=max_gpus,
        )

    def _refusal(self, view: JobView, batch_job: dict[str, Any] | None, pods: list[dict[str, Any]]) -> str | None:
        """Why a pending Job has no pod at all: the API server refused its pods (the Job's FailedCreate events).
        Read only in that state: from the watched copy of those events with the cache, else one LIST of events."""
        if view.state != "pending" or batch_job is None or pods_of(batch_job, pods):
            return None
        ns, uid = batch_job["metadata"].get("namespace"), batch_job["metadata"].get("uid")
        watched = self.cache.refusals_of(ns, str(uid)) if self.cache is not None and uid else None
        if watched is not None:
            return newest_message(watched)
        return newest_message(self.kube.list("v1", "Event", ns, field_selector=failed_create_selector(batch_job)))

    def _fit(
        self, selector: dict[str, str] | None, tolerations: list[dict[str, Any]]
    ) -> tuple[list[Mapping[str, Any]], int]:
        """The nodes a pod with this selector and these tolerations may use, and the most GPUs one of them has.
        With the cache, remembered until the nodes' copy changes: every job that has not started asks, and
        scanning 500 nodes each time was a tenth of the operator's CPU at scale (issue 10)."""
        if self.cache is None:
            eligible = eligible_nodes(self._nodes(), selector, tolerations)
            return eligible, max_allocatable(eligible, GPU_RESOURCE)
        version = self.cache.nodes.changes
        key = json.dumps([selector, tolerations], sort_keys=True)
        with self._guard:
            if self._fits_version != version:
                self._fits, self._fits_version = {}, version
            hit = self._fits.get(key)
        if hit is not None:
            return hit
        eligible = eligible_nodes(self._nodes(), selector, tolerations)
        fit = (eligible, max_allocatable(eligible, GPU_RESOURCE))
        with self._guard:
            if self._fits_version == version:
                self._fits[key] = fit
        return fit

    def _nodes(self) -> list[dict[str, Any]]:
        if self.cache is None:
            return [node_summary(n, (GPU_RESOURCE,)) for n in self.kube.list("v1", "Node")]
        return self.cache.node_summaries()

    def _gpu_product(self, node_name: str | None) -> str | None:
        if not node_name:
            return None
        node = self.kube.get("v1", "Node", node_name) if self.cache is None else self.cache.node(node_name)
        return node_label(node, GPU_PRODUCT_LABEL)

    def _ref(self, job: YoloTrainJob) -> Ref:
        return Ref(API_VERSION, KIND, job.metadata.name, job.metadata.namespace, job.metadata.uid)

    def _cache_lookup(self, job: YoloTrainJob, node_products: list[str]) -> CachedTuning | None:
        product = expected_gpu_product(job.spec, [p for p in node_products if p])
        if product is None:
            return None
        key = cache_key(job.spec, product)
        cm = self.kube.get("v1", "ConfigMap", CACHE_CONFIG_MAP, job.metadata.namespace)
        result = decode_entry(((cm or {}).get("data") or {}).get(key))
        return CachedTuning(key, result) if result is not None else None

    # --- act ------------------------------------------------------------------------------------------------

    def execute(self, job: YoloTrainJob, action: Action) -> None:
        ns, name = job.metadata.namespace, job.metadata.name
        if isinstance(action, CreateTuningJob | CreateTrainingJob):
            objects = (
                tuning_objects(job, self.options)
                if isinstance(action, CreateTuningJob)
                else training_objects(job, action.choice, self.options)
            )
            config_map, batch_job = objects
            self.kube.apply(config_map)
            stored, created = self.kube.create(batch_job)  # observe() just saw it absent
            if self.cache is not None:
                self.cache.remember(stored)  # the next reconcile must not see it absent before its watch event
            if created:
                log.info("created Job %s/%s", ns, batch_job["metadata"]["name"])
        elif isinstance(action, SuspendJobs | ResumeJobs):
            component = TUNING if action.step == "tuning" else TRAINING
            ref = Ref("batch/v1", "Job", job_name(name, component), ns)
            self.kube.merge_patch(ref, {"spec": {"suspend": isinstance(action, SuspendJobs)}})
        elif isinstance(action, WriteCache):
            self._write_cache(ns, action)
            m.tuning_duration.observe(action.result.duration_seconds)

    def _write_cache(self, namespace: str, action: WriteCache) -> None:
        """Merge-patch one key (apply would drop the keys other jobs wrote under the same field manager)."""
        ref = Ref("v1", "ConfigMap", CACHE_CONFIG_MAP, namespace)
        data = {action.key: encode_entry(action.result)}
        if self.kube.get("v1", "ConfigMap", CACHE_CONFIG_MAP, namespace) is None:
            labels = {LABEL_NAME: APP_NAME, LABEL_MANAGED_BY: MANAGER, "app.kubernetes.io/component": "tuning-cache"}
            meta = {"name": ref.name, "namespace": namespace, "labels": labels}
            try:
                self.kube.ensure({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data})
                return
            except ApiError as exc:
                log.warning("creating the tuning cache failed, patching instead: %s", exc)
        self.kube.merge_patch(ref, {"data": data})

    def write_status(self, job: YoloTrainJob, decision: Decision) -> None:
        """One status patch, only when something changed; then events and transition metrics."""
        status = decision.status
        kept = status.conditions or []
        now_clear = stalled.cleared(access.cleared(kept, job.metadata.generation), job.metadata.generation)
        if now_clear is not kept:
            status = status.model_copy(update={"conditions": now_clear})  # the operator got through again
        before = (job.status or YoloTrainJobStatus()).to_wire()
        after = status.to_wire()
        ref = self._ref(job)
        if before != after:
            self._status_written(self.kube.patch_status(ref, status.model_dump(by_alias=True, mode="json")))
        previous = job.status.phase if job.status else None
        if decision.phase != previous:
            m.phase_transitions.labels(KIND, previous or "", decision.phase or "").inc()
            log.info("%s/%s: %s -> %s", job.metadata.namespace, job.metadata.name, previous, decision.phase)
        for event in decision.events:
            self.kube.post_event(ref, event.type, event.reason, event.message)

    def _status_written(self, written: dict[str, Any] | None) -> None:
        """Keep what our status patch wrote: the cache reads it next, and its watch event is known as our own."""
        if not written:
            return
        meta = written.get("metadata", {})
        if self.cache is not None:
            self.cache.bodies.put(written)
        with self._guard:
            self._written[f"{meta.get('namespace')}/{meta.get('name')}"] = str(meta.get("resourceVersion"))

    def _reject(self, raw: dict[str, Any], message: str) -> None:
        """A stored object our models reject (an older CRD, a hand-edited status): say so once, do nothing else."""
        meta = raw["metadata"]
        ref = Ref(API_VERSION, KIND, meta["name"], meta.get("namespace"), meta.get("uid"))
        stalled.reject(self.kube, ref, raw, message)

    # --- progress -------------------------------------------------------------------------------------------

    def update_progress(self, namespace: str, name: str) -> None:
        raw = self._body(namespace, name)
        if raw is None or (raw.get("status") or {}).get("phase") != "Training":
            return
        jobs, pods = self._children(namespace, name)
        training = next((j for j in jobs if j["metadata"]["name"] == job_name(name, TRAINING)), None)
        view = job_view(training, pods, WORKLOAD_CONTAINER)
        if view.state != "running" or not view.pod_ip:
            return
        try:
            samples = self.metrics_source.read(view.pod_ip, self.settings.workload_metrics_port)
        except (OSError, ValueError) as exc:
            m.progress_scrape_errors.labels(KIND).inc()
            log.debug("metrics of %s/%s not readable: %s", namespace, view.pod_name, exc)
            return
        progress = progress_from(samples, view.started_at, datetime.now(UTC))
        if progress is not None:
            ref = Ref(API_VERSION, KIND, name, namespace)
            written = self.kube.patch_status(ref, {"progress": progress.model_dump(by_alias=True, mode="json")})
            if self.cache is not None:
                self.cache.bodies.put(written)


def _step(view: JobView, gpu_product: str | None, refused: str | None = None) -> StepObservation:
    return StepObservation(
        state=StepState(view.state),
        message=view.message,
        exit_code=view.exit_code,
        failure_reason=view.failure_reason,
        failure_message=view.failure_message,
        restarts=view.restarts,
        gpu_product=gpu_product,
        waiting_message=view.unschedulable or view.initializing,
        refused_message=refused,
    )


def _owner_name(body: Any) -> str | None:
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == KIND and ref.get("apiVersion", "").startswith(GROUP + "/") and ref.get("controller"):
            return str(ref["name"])
    return None


def register(registry: kopf.OperatorRegistry, controller: TrainJobController, runtime: Runtime) -> None:
    """Add the YoloTrainJob handlers to `registry`; reconciles run on `runtime`'s queue, reading its cache."""
    settings = controller.settings
    cache = runtime.cache
    controller.cache = cache
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
            owner = _owner_name(obj)
        elif labels.get(LABEL_COMPONENT) in (TUNING, TRAINING):
            owner = labels.get(LABEL_INSTANCE)
        else:
            return
        if owner:
            runtime.enqueue(KIND, obj["metadata"].get("namespace") or "default", owner)

    cache.on_job(child_changed)
    cache.on_pod(child_changed)
