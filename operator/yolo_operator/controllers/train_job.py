"""The YoloTrainJob controller: observe → decide (lifecycle.train_job, pure) → act → one status patch, on the shared
skeleton (controllers.skeleton).

Level-based: every trigger (a watch event on the resource, its Jobs or their pods, the periodic resync, an operator
restart) adds the resource's key to the shared work queue (handlers/train_job.py wires them), whose workers run
`reconcile`; running it twice or after a crash creates nothing twice (children have fixed names and are created
only when absent). It reads the resource, its Jobs, pods and the nodes from the watch-fed cache and only writes
reach the API server. A second loop copies the training pod's metrics into status.progress. Issue 10: built for
1,000 resources on 500 nodes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from yolo_operator.api.common import API_VERSION
from yolo_operator.api.train_job import YoloTrainJob, YoloTrainJobStatus
from yolo_operator.controllers.skeleton import Reconciler
from yolo_operator.k8s.client import ApiError, Kube, Ref
from yolo_operator.k8s.workloads import (
    JobView,
    eligible_nodes,
    failed_create_selector,
    job_view,
    max_allocatable,
    newest_message,
    node_label,
    pods_of,
)
from yolo_operator.lifecycle.stalled import mount_failed
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
from yolo_operator.runtime.cache import ClusterCache, missing_claims
from yolo_operator.settings import OperatorSettings

log = logging.getLogger(__name__)
KIND = "YoloTrainJob"
PLURAL = "yolotrainjobs"


class TrainJobController(Reconciler[YoloTrainJob, Decision]):
    """The reconcile and progress loops of YoloTrainJobs, independent of Kopf (tests swap `metrics_source`)."""

    kind = KIND

    def __init__(
        self, kube: Kube, settings: OperatorSettings, cache: ClusterCache, metrics_source: MetricsSource | None = None
    ) -> None:
        super().__init__(kube, settings, cache)
        self.metrics_source: MetricsSource = metrics_source or HttpMetricsSource()
        self._fits: dict[str, tuple[list[Mapping[str, Any]], int]] = {}
        self._fits_version = -1

    @property
    def options(self) -> RenderOptions:
        return RenderOptions(self.settings.default_image, self.settings.workload_metrics_port)

    # --- reconcile (the skeleton's steps) -------------------------------------------------------------------

    def parse(self, raw: dict[str, Any]) -> YoloTrainJob:
        return YoloTrainJob.model_validate(raw)

    def converge(self, job: YoloTrainJob, raw: dict[str, Any]) -> Decision:
        observed = self.observe(job)
        decision = decide(job, observed, Policy(claim_grace_seconds=self.settings.claim_grace_seconds))
        for action in decision.actions:
            self.execute(job, action)
        return decision

    def status_patch(self, job: YoloTrainJob, decision: Decision) -> dict[str, Any] | None:
        if (job.status or YoloTrainJobStatus()).to_wire() == decision.status.to_wire():
            return None
        return decision.status.model_dump(by_alias=True, mode="json")

    def _children(self, namespace: str, name: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """This resource's Jobs and (when it has any) their pods."""
        jobs = self.cache.jobs_of(namespace, name)
        return jobs, (self.cache.pods_of(namespace, name) if jobs else [])

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
            tuning=self._seen(tuning, tuning_job, pods, product),
            training=self._seen(training, training_job, pods, None),
            cached=cached,
            missing_claims=missing,
            max_allocatable_gpus=max_gpus,
        )

    def _seen(
        self, view: JobView, batch_job: dict[str, Any] | None, pods: list[dict[str, Any]], product: str | None
    ) -> StepObservation:
        return _step(view, product, self._refusal(view, batch_job, pods), self._unmounted(view, batch_job, pods))

    def _refusal(self, view: JobView, batch_job: dict[str, Any] | None, pods: list[dict[str, Any]]) -> str | None:
        """Why a pending Job has no pod at all: the API server refused its pods (the Job's FailedCreate events).
        Read only in that state: from the watched copy of those events, else (before it has listed) one LIST."""
        if view.state != "pending" or batch_job is None or pods_of(batch_job, pods):
            return None
        ns, uid = batch_job["metadata"].get("namespace"), batch_job["metadata"].get("uid")
        watched = self.cache.refusals_of(ns, str(uid)) if uid else None
        if watched is not None:
            return newest_message(watched)
        return newest_message(self.kube.list("v1", "Event", ns, field_selector=failed_create_selector(batch_job)))

    def _unmounted(self, view: JobView, batch_job: dict[str, Any] | None, pods: list[dict[str, Any]]) -> str | None:
        """Why a pending step's pod waits for a volume (the kubelet's FailedMount Events, from the watched copy)."""
        if view.state != "pending" or batch_job is None:
            return None
        namespace = str(batch_job["metadata"].get("namespace") or "")
        return mount_failed(self.cache.newest_mount_failure(namespace, pods_of(batch_job, pods)))

    def _fit(
        self, selector: dict[str, str] | None, tolerations: list[dict[str, Any]]
    ) -> tuple[list[Mapping[str, Any]], int]:
        """The nodes a pod with this selector and these tolerations may use, and the most GPUs one of them has.
        Remembered until the nodes' copy changes: every job that has not started asks, and scanning 500 nodes
        each time was a tenth of the operator's CPU at scale (issue 10)."""
        version = self.cache.nodes.changes
        key = json.dumps([selector, tolerations], sort_keys=True)
        with self._guard:
            if self._fits_version != version:
                self._fits, self._fits_version = {}, version
            hit = self._fits.get(key)
        if hit is not None:
            return hit
        eligible = eligible_nodes(self.cache.node_summaries(), selector, tolerations)
        fit = (eligible, max_allocatable(eligible, GPU_RESOURCE))
        with self._guard:
            if self._fits_version == version:
                self._fits[key] = fit
        return fit

    def _gpu_product(self, node_name: str | None) -> str | None:
        if not node_name:
            return None
        return node_label(self.cache.node(node_name), GPU_PRODUCT_LABEL)

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

    # --- progress -------------------------------------------------------------------------------------------

    def update_progress(self, namespace: str, name: str) -> None:
        raw = self.body(namespace, name)
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
            self.cache.bodies.put(written)


def _step(
    view: JobView, gpu_product: str | None, refused: str | None = None, unmounted: str | None = None
) -> StepObservation:
    return StepObservation(
        state=StepState(view.state),
        message=view.message,
        exit_code=view.exit_code,
        failure_reason=view.failure_reason,
        failure_message=view.failure_message,
        restarts=view.restarts,
        gpu_product=gpu_product,
        waiting_message=view.unschedulable or view.cannot_start or unmounted or view.initializing,
        refused_message=refused,
        memory_killed=view.memory_killed,
    )
