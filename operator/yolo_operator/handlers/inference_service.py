"""Kopf wiring of the YoloInferenceService controller and its autoscaler.

Two loops per service, both level-based (each run reads the current objects and can run twice harmlessly; with a
`ClusterCache`, the operator's case, from watch-fed copies, else fresh from the API server):
- reconcile (queued on the shared work queue by events of the service, its Deployment or the YoloTrainJob it waits
  on, and every reconcile period by a `handlers.resync.Resync` thread):
  resolve the weights → apply ConfigMap, Deployment, Service, PDB → one status patch;
- autoscale (every `autoscaler_period_seconds` from another Resync thread, when autoscaling is on): read the
  metric → the HPA step → one status patch (desiredReplicas first, so a concurrent reconcile renders the new
  count) → patch the Deployment's replicas → an Event with the numbers → operator metrics.
The autoscaler's history (recent recommendations and scales) lives in memory, as the HPA's does; after a restart it
starts with the current replicas as a recommendation, so a restart never triggers an early scale-down.
Metric sources are injected (`PodMetricsSource`, `ServiceMetricSource`) so tests can serve chosen values.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from yolo_operator.api.common import API_VERSION, GROUP, VERSION, format_errors
from yolo_operator.api.inference_service import YoloInferenceService
from yolo_operator.api.train_job import YoloTrainJob
from yolo_operator.autoscale import (
    History,
    MetricsUnavailable,
    PodSample,
    Recommendation,
    decide,
    events_to_keep,
    from_mean_value,
    from_pod_samples,
    record_scale,
)
from yolo_operator.handlers import access, stalled
from yolo_operator.handlers.resync import Resync
from yolo_operator.handlers.runtime import Runtime
from yolo_operator.k8s.cache import ClusterCache, missing_claims
from yolo_operator.k8s.client import ApiError, Kube, Ref
from yolo_operator.k8s.scaling import delete_if_present, list_pods, set_replicas
from yolo_operator.k8s.workloads import eligible_nodes, max_allocatable, node_summary
from yolo_operator.lifecycle import children as children_life
from yolo_operator.lifecycle import inference_service as life
from yolo_operator.lifecycle import stalled as stalled_life
from yolo_operator.lifecycle.conditions import rfc3339
from yolo_operator.metrics import autoscaler_metrics as om
from yolo_operator.metrics import operator_metrics
from yolo_operator.metrics.prometheus import PrometheusHttpSource, ServiceMetricSource, substitute
from yolo_operator.metrics.scrape import (
    GPU_UTILIZATION_METRIC,
    METRIC_NAMES,
    HttpPodScraper,
    PodEndpoint,
    PodMetricsSource,
    endpoint_of,
)
from yolo_operator.render import inference_service as render
from yolo_operator.render.common import GPU_RESOURCE, LABEL_INSTANCE, owner_of, selector_labels
from yolo_operator.settings import OperatorSettings

log = logging.getLogger(__name__)

KIND = "YoloInferenceService"
PLURAL = "yoloinferenceservices"
WaitingIndex = Mapping[tuple[str, str], Iterable[str]]
"""(namespace, YoloTrainJob name) → names of the services whose model comes from it (Kopf's
`yolo_services_by_train_job` index)."""


class InferenceController:
    """The controller's state (autoscaler histories) and its two loops, independent of Kopf for testing."""

    def __init__(
        self,
        kube: Kube,
        settings: OperatorSettings,
        pod_source: PodMetricsSource | None = None,
        service_source: ServiceMetricSource | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.pod_source = pod_source or HttpPodScraper(timeout_s=settings.scrape_timeout_seconds)
        self.service_source = service_source or PrometheusHttpSource(timeout_s=settings.scrape_timeout_seconds)
        self.clock = clock
        self.cache: ClusterCache | None = None
        """Watch-fed copies to read from (set by `register`); None reads from the API server."""
        self.options = render.RenderOptions(default_image=settings.default_image)
        self._histories: dict[str, History] = {}
        self._lock = threading.Lock()
        self._object_locks: dict[str, threading.Lock] = {}
        # With the cache (the operator), every reconcile applies only the children whose watched copy differs from
        # the rendered one (lifecycle.children.drift): absent, changed, or edited by hand, so drift is undone within
        # one reconcile period and an idle recheck writes nothing. Without it (tools, tests): what this process last
        # applied per service (a digest of the rendered children) and which services are known to have no PDB, so
        # an event-driven reconcile skips unchanged applies and the 404 DELETE of a PDB that is not there; the
        # periodic recheck (`full=True`) applies everything again.
        self._applied: dict[str, str] = {}
        self._no_pdb: set[str] = set()

    def _object_lock(self, namespace: str, name: str) -> threading.Lock:
        """Reconcile and autoscale of one service never interleave: the autoscaler writes desiredReplicas before
        it scales, and a reconcile reads it fresh, so neither undoes the other."""
        with self._lock:
            return self._object_locks.setdefault(f"{namespace}/{name}", threading.Lock())

    # --- reading --------------------------------------------------------------------------------------------

    def _body(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        if self.cache is not None:
            return self.cache.bodies.get(kind, namespace, name)
        return self.kube.get(API_VERSION, kind, name, namespace)

    def _deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        if self.cache is not None:
            return self.cache.deployment(namespace, render.deployment_name(name))
        return self.kube.get("apps/v1", "Deployment", render.deployment_name(name), namespace)

    def _pods(self, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        if self.cache is None:
            return list_pods(self.kube, namespace, labels)
        owned = self.cache.pods_of(namespace, labels.get(LABEL_INSTANCE, ""))
        return [p for p in owned if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())]

    def _status_written(self, written: dict[str, Any]) -> None:
        if self.cache is not None:
            self.cache.bodies.put(written)

    # --- reconcile ------------------------------------------------------------------------------------------

    def reconcile(self, namespace: str, name: str, full: bool = True) -> dict[str, Any] | None:
        """Bring the children in line with the spec; return the status written (None if the service is gone).
        With the cache, only children that drifted from the rendered ones are applied; without it, `full=False`
        (watch events) skips applying children identical to what this process applied last."""
        with self._object_lock(namespace, name):
            body = self._body(KIND, namespace, name)
            if body is None or body.get("metadata", {}).get("deletionTimestamp"):
                return None
            try:
                written = self._reconcile(body, full)
            except Exception as exc:
                operator_metrics.reconciles.labels(KIND, "error").inc()
                operator_metrics.reconcile_errors.labels(KIND).inc()
                self._report_refusal(body, exc)
                raise
            operator_metrics.reconciles.labels(KIND, "ok").inc()
            return written

    def _report_refusal(self, body: dict[str, Any], exc: Exception) -> None:
        """A refused write: the permission it lacked, or the Stalled condition for a refused object."""
        if isinstance(exc, ApiError):
            if access.is_access_error(exc):
                access.report_refused(self.kube, Ref.of(body), body, exc)
            elif stalled.is_user_actionable(exc):
                written = stalled.report(self.kube, Ref.of(body), body, exc)
                if written:
                    self._status_written(written)

    def _reconcile(self, body: dict[str, Any], full: bool) -> dict[str, Any] | None:
        ref = Ref.of(body)
        namespace, name = ref.namespace or "default", ref.name
        try:
            svc = YoloInferenceService.model_validate(body)
        except ValidationError as exc:
            written = stalled.reject(self.kube, ref, body, "; ".join(format_errors(exc)))
            if written:
                self._status_written(written)
            return None
        model = life.resolve_model(svc, self._source_job(svc, namespace))
        deployment = self._deployment(namespace, name)
        if model.mount is not None:
            deployment = self._apply_children(svc, model.mount, deployment, full)
        blocked = self._blocked(svc, model.mount, deployment) if model.mount is not None else None
        fetch_failure = refused = None
        if model.mount is not None:
            pods = self._pods(namespace, selector_labels(owner_of(svc), render.COMPONENT))
            fetch_failure = life.source_failure(pods) if model.mount.source is not None else None
            refused = life.refused_input(pods)
        status = life.status(svc, model, deployment, datetime.now(UTC), blocked, fetch_failure, refused)
        generation = svc.metadata.generation
        status["conditions"] = stalled.cleared_wire(
            access.cleared_wire(status.get("conditions") or [], generation), generation
        )
        self._write_status(ref, body, svc, status)
        return status

    def _source_job(self, svc: YoloInferenceService, namespace: str) -> YoloTrainJob | None:
        """The YoloTrainJob whose weights the service serves (spec.model.fromTrainJob), or None."""
        if not svc.spec.model.from_train_job:
            return None
        raw = self._body("YoloTrainJob", namespace, svc.spec.model.from_train_job)
        try:
            return YoloTrainJob.model_validate(raw) if raw else None
        except ValidationError:
            return None  # an unreadable job is treated as absent: the service waits, with the reason shown

    def _apply_children(
        self,
        svc: YoloInferenceService,
        mount: render.ModelMount,
        deployment: dict[str, Any] | None,
        full: bool,
    ) -> dict[str, Any] | None:
        """Apply the rendered children that drifted from their watched copies (without a cache: when they changed, or
        on a full pass) and drop a PDB no longer wanted; returns the Deployment as known now."""
        replicas = life.replicas_to_render(svc, deployment)
        children = [children_life.stamp(obj) for obj in render.objects(svc, mount, replicas, self.options)]
        if self.cache is not None:
            deployment = self._apply_drifted(self.cache, children, deployment)
        else:
            deployment = self._apply_all(f"{svc.metadata.namespace}/{svc.metadata.name}", children, deployment, full)
        self._drop_pdb(svc, replicas)
        return deployment

    def _write_status(self, ref: Ref, body: dict[str, Any], svc: YoloInferenceService, status: dict[str, Any]) -> None:
        """Patch the status when it changed, and post one Event for a new phase (none when the condition's own
        Event already announced its cause)."""
        current = body.get("status") or {}
        if any(current.get(k) != v for k, v in status.items()):  # an unchanged status is not written again
            self._status_written(self.kube.patch_status(ref, status))
            announced = stalled.announce(self.kube, ref, current.get("conditions") or [], status["conditions"])
        else:
            announced = None
        old_phase = svc.status.phase if svc.status else None
        ready = next(c for c in status["conditions"] if c["type"] == life.READY)
        if status["phase"] != old_phase and ready["reason"] != announced:  # one Event for one cause
            kind = "Warning" if status["phase"] in ("Failed", "Degraded") else "Normal"
            self.kube.post_event(ref, kind, ready["reason"], f"phase {status['phase']}: {ready['message']}")

    def _apply_drifted(
        self, cache: ClusterCache, children: list[dict[str, Any]], deployment: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """Apply the children whose watched copy no longer matches (absent, changed, edited by hand); skip the rest.
        Returns the Deployment as now known."""
        for obj in children:
            meta = obj["metadata"]
            observed = cache.child(obj["kind"], meta["namespace"], meta["name"])
            reason = children_life.drift(obj, observed)
            if reason is None:
                operator_metrics.child_writes.labels(KIND, obj["kind"], "skipped").inc()
                continue
            log.debug("applying %s %s/%s: %s", obj["kind"], meta["namespace"], meta["name"], reason)
            applied = self.kube.apply(obj)
            operator_metrics.child_writes.labels(KIND, obj["kind"], "applied").inc()
            cache.remember(applied)  # the next reconcile compares with what this write left
            if obj["kind"] == "Deployment":
                deployment = applied
        return deployment

    def _apply_all(
        self, key: str, children: list[dict[str, Any]], deployment: dict[str, Any] | None, full: bool
    ) -> dict[str, Any] | None:
        """Without watched copies (tools, tests): apply every child unless this process applied the same ones last
        (`full` applies them anyway: the periodic recheck undoes drift)."""
        digest = hashlib.sha256(json.dumps(children, sort_keys=True).encode()).hexdigest()
        if full or deployment is None or self._applied.get(key) != digest:
            for obj in children:
                applied = self.kube.apply(obj)
                operator_metrics.child_writes.labels(KIND, obj["kind"], "applied").inc()
                if obj["kind"] == "Deployment":
                    deployment = applied
            self._applied[key] = digest
        return deployment

    def _drop_pdb(self, svc: YoloInferenceService, replicas: int) -> None:
        """Delete the PDB the spec no longer asks for: when the watched copy has one (with the cache), else once per
        process (only we create it: after one DELETE, or its 404, it is known absent)."""
        namespace, name = svc.metadata.namespace, svc.metadata.name
        key = f"{namespace}/{name}"
        if render.wants_pdb(svc, replicas):
            self._no_pdb.discard(key)
            return
        if self.cache is not None:
            if self.cache.child("PodDisruptionBudget", namespace, render.pdb_name(name)) is not None:
                delete_if_present(self.kube, "policy/v1", "PodDisruptionBudget", namespace, render.pdb_name(name))
            return
        if key not in self._no_pdb:
            delete_if_present(self.kube, "policy/v1", "PodDisruptionBudget", namespace, render.pdb_name(name))
            self._no_pdb.add(key)

    def _blocked(
        self, svc: YoloInferenceService, mount: render.ModelMount, deployment: dict[str, Any] | None
    ) -> tuple[str, str] | None:
        """Until a replica is ready: the weights' claim missing, or more GPUs per pod than any eligible node has
        (ClaimNotFound, Unschedulable: the YoloTrainJob's reasons and words). With the cache, a claim its watched copy
        shows costs nothing; only one it does not show is asked about (a GET)."""
        if int(((deployment or {}).get("status") or {}).get("readyReplicas") or 0) > 0:
            return None
        ns, res = svc.metadata.namespace, svc.spec.resources
        most: int | None = None
        if res.gpus:
            nodes = (
                self.cache.node_summaries()
                if self.cache is not None
                else [node_summary(n, (GPU_RESOURCE,)) for n in self.kube.list("v1", "Node")]
            )
            tolerations = [t.to_wire() for t in res.tolerations or []]
            most = max_allocatable(eligible_nodes(nodes, res.node_selector, tolerations), GPU_RESOURCE)
        claims = [mount.claim_name] if mount.source is None else []
        if svc.spec.source_cache is not None:
            claims.append(svc.spec.source_cache.claim_name)
        missing = missing_claims(self.kube, self.cache, ns, claims)
        return stalled_life.blocked(res.gpus, most, missing, ns)

    # --- autoscale ------------------------------------------------------------------------------------------

    def autoscale(self, namespace: str, name: str) -> dict[str, Any] | None:
        """One autoscaler step; returns the status patch written (None when autoscaling does not apply)."""
        with self._object_lock(namespace, name):
            return self._autoscale(namespace, name)

    def _autoscale(self, namespace: str, name: str) -> dict[str, Any] | None:
        body = self._body(KIND, namespace, name)
        if body is None:
            return None
        try:
            svc = YoloInferenceService.model_validate(body)
        except ValidationError:
            return None
        uid = svc.metadata.uid or f"{namespace}/{name}"
        a = svc.spec.autoscaling
        if not a.enabled:
            with self._lock:
                self._histories.pop(uid, None)
            return None
        deployment = self._deployment(namespace, name)
        if deployment is None:
            return None
        current = int(deployment.get("spec", {}).get("replicas") or 0)
        now = self.clock()
        with self._lock:
            history = self._histories.get(uid) or History.starting(now, current)
        reading, gpu = self._read(svc, current)
        decision, history = decide(a, current, reading, history, now)
        wall = datetime.now(UTC)
        patch: dict[str, Any] = {
            "desiredReplicas": decision.desired_replicas,
            "conditions": life.autoscaler_conditions(
                svc,
                (decision.scaling_active.status, decision.scaling_active.reason, decision.scaling_active.message),
                (decision.scaling_limited.status, decision.scaling_limited.reason, decision.scaling_limited.message),
                wall,
            ),
        }
        if decision.recommendation is not None:
            patch["currentMetricValue"] = round(decision.recommendation.metric_value, 3)
        if gpu is not None:
            patch["gpuUtilization"] = round(gpu, 2)
        if decision.direction is not None:
            patch["lastScaleTime"] = rfc3339(wall)
        ref = Ref.of(body)
        self._status_written(self.kube.patch_status(ref, patch))
        if decision.direction is not None:
            scaled = set_replicas(self.kube, namespace, render.deployment_name(name), decision.desired_replicas)
            if self.cache is not None:
                self.cache.remember(scaled)
            history = record_scale(history, now, current, decision.desired_replicas, events_to_keep(a))
            om.scale_events.labels(namespace, name, decision.direction).inc()
            reason = "ScaledUp" if decision.direction == "up" else "ScaledDown"
            self.kube.post_event(ref, "Normal", reason, decision.message)
        with self._lock:
            self._histories[uid] = history
        om.current_replicas.labels(namespace, name).set(current)
        om.desired_replicas.labels(namespace, name).set(decision.desired_replicas)
        om.metric_target.labels(namespace, name, a.metric).set(a.target)
        if isinstance(reading, MetricsUnavailable):
            om.metric_errors.labels(namespace, name, reading.reason).inc()
        else:
            om.metric_value.labels(namespace, name, a.metric).set(reading.metric_value)
        return patch

    def _read(
        self, svc: YoloInferenceService, current: int
    ) -> tuple[Recommendation | MetricsUnavailable, float | None]:
        """The calculator's recommendation (or why there is none) and the mean GPU utilisation when known."""
        a, ns, name = svc.spec.autoscaling, svc.metadata.namespace, svc.metadata.name
        pods = self._pods(ns, selector_labels(owner_of(svc), render.COMPONENT))
        endpoints = [endpoint_of(p, svc.spec.serving.port) for p in pods]
        ready = [e for e in endpoints if e.state == "ready"]
        if a.source == "prometheus" and a.prometheus is not None:
            promql = substitute(a.prometheus.query, ns, render.service_name(name))
            try:
                value = asyncio.run(self.service_source.query(a.prometheus.url, promql))
                rec = from_mean_value(current, len(ready), a.target, value)
            except MetricsUnavailable as exc:
                return exc, None
            return rec, (value if a.metric == "gpuUtilization" else None)
        values = self._scrape(METRIC_NAMES[a.metric], ready)
        samples = [PodSample(e.name, e.state, values.get(e.name)) for e in endpoints]
        try:
            rec = from_pod_samples(current, a.target, samples)
        except MetricsUnavailable as exc:
            return exc, None
        if a.metric == "gpuUtilization":
            return rec, rec.metric_value
        gpu_values = [v for v in self._scrape(GPU_UTILIZATION_METRIC, ready).values() if v is not None]
        return rec, (sum(gpu_values) / len(gpu_values) if gpu_values else None)

    def _scrape(self, metric: str, pods: list[PodEndpoint]) -> dict[str, float | None]:
        return asyncio.run(self.pod_source.pod_values(metric, pods)) if pods else {}

    def forget(self, namespace: str, name: str, uid: str | None) -> None:
        with self._lock:
            self._histories.pop(uid or f"{namespace}/{name}", None)
            self._object_locks.pop(f"{namespace}/{name}", None)
            self._applied.pop(f"{namespace}/{name}", None)
            self._no_pdb.discard(f"{namespace}/{name}")
        om.forget(namespace, name)


def _owner_name(body: Any) -> str | None:
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == KIND and ref.get("apiVersion") == API_VERSION:
            return str(ref["name"])
    return None


FULL = f"{KIND}/full"
"""The work queue's route of the periodic recheck (without the cache it applies every child again; with it, it checks
every child against its watched copy, as every reconcile does)."""


def register(registry: kopf.OperatorRegistry, controller: InferenceController, runtime: Runtime) -> None:
    """Register the controller's handlers into a Kopf registry (main.py and the test fixture call this);
    reconciles run on `runtime`'s queue, reading its cache."""
    settings = controller.settings
    cache = runtime.cache
    controller.cache = cache
    runtime.route(KIND, lambda ns, name: controller.reconcile(ns, name, full=False))
    runtime.route(FULL, controller.reconcile, kind=KIND)

    # Periodic work without Kopf timers (see handlers/resync.py): a full reconcile every reconcile period, an
    # autoscaler step every autoscaler period for the services that enable it.
    recheck: Resync[bool] = Resync(
        "yoloinferenceservice-recheck",
        settings.reconcile_period_seconds,
        lambda ns, name: runtime.enqueue_periodic(FULL, ns, name),
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

    # On the event loop and short: queue the key (the runtime's own handler has stored the body). Every event (the
    # first listing after a restart included) runs a reconcile; one that finds the children as this process last
    # applied them and the status unchanged writes nothing.
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
        owner = _owner_name(obj)
        if owner and kind != "DELETED":
            runtime.enqueue(KIND, obj["metadata"].get("namespace") or "default", owner)

    cache.on_deployment(deployment_changed)

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
