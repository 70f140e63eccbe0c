"""The YoloInferenceService controller and its autoscaler, on the shared skeleton (controllers.skeleton).

Two loops per service, both level-based (each run reads the current objects from the watch-fed cache and can run
twice harmlessly; handlers/inference_service.py wires their triggers):
- reconcile (queued on the shared work queue by events of the service, its Deployment or the YoloTrainJob it waits
  on, and every reconcile period by a `runtime.resync.Resync` thread): the weights and the children
  (`lifecycle.inference_service.rollout`, pure) → apply the children whose watched copy drifted → the status and
  its Events (`lifecycle.inference_service.decide`, pure) → one status patch;
- autoscale (every `autoscaler_period_seconds` from another Resync thread, when autoscaling is on): read the
  metric → the HPA step → one status patch (desiredReplicas first, so a concurrent reconcile renders the new
  count) → patch the Deployment's replicas → an Event with the numbers → operator metrics.
The autoscaler's history (recent recommendations and scales) lives in memory, as the HPA's does; after a restart it
starts with the current replicas as a recommendation, so a restart never triggers an early scale-down.
Metric sources are injected (`PodMetricsSource`, `ServiceMetricSource`) so tests can serve chosen values.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

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
from yolo_operator.controllers.skeleton import Reconciler
from yolo_operator.k8s.client import Kube, Ref
from yolo_operator.k8s.scaling import delete_if_present, set_replicas
from yolo_operator.k8s.workloads import eligible_nodes, max_allocatable
from yolo_operator.lifecycle import children as children_life
from yolo_operator.lifecycle import inference_service as life
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
from yolo_operator.runtime.cache import ClusterCache, missing_claims
from yolo_operator.settings import OperatorSettings

log = logging.getLogger(__name__)

KIND = "YoloInferenceService"
PLURAL = "yoloinferenceservices"


class InferenceController(Reconciler[YoloInferenceService, life.Decision]):
    """The controller's state (autoscaler histories) and its two loops, independent of Kopf for testing."""

    kind = KIND

    def __init__(
        self,
        kube: Kube,
        settings: OperatorSettings,
        cache: ClusterCache,
        pod_source: PodMetricsSource | None = None,
        service_source: ServiceMetricSource | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(kube, settings, cache)
        self.pod_source = pod_source or HttpPodScraper(timeout_s=settings.scrape_timeout_seconds)
        self.service_source = service_source or PrometheusHttpSource(timeout_s=settings.scrape_timeout_seconds)
        self.clock = clock
        self.options = render.RenderOptions(default_image=settings.default_image)
        self._histories: dict[str, History] = {}

    # --- reading --------------------------------------------------------------------------------------------

    def _deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.cache.deployment(namespace, render.deployment_name(name))

    def _pods(self, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        owned = self.cache.pods_of(namespace, labels.get(LABEL_INSTANCE, ""))
        return [p for p in owned if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())]

    def _source_job(self, svc: YoloInferenceService) -> YoloTrainJob | None:
        """The YoloTrainJob whose weights the service serves (spec.model.fromTrainJob), or None."""
        if not svc.spec.model.from_train_job:
            return None
        raw = self.cache.bodies.get("YoloTrainJob", svc.metadata.namespace, svc.spec.model.from_train_job)
        try:
            return YoloTrainJob.model_validate(raw) if raw else None
        except ValidationError:
            return None  # an unreadable job is treated as absent: the service waits, with the reason shown

    # --- reconcile (the skeleton's steps) -------------------------------------------------------------------

    def parse(self, raw: dict[str, Any]) -> YoloInferenceService:
        return YoloInferenceService.model_validate(raw)

    def converge(self, svc: YoloInferenceService, raw: dict[str, Any]) -> life.Decision:
        """The weights and children (pure) → apply the drifted children → observe → the status and Events (pure).
        The status is decided after the apply because it reads the Deployment the apply returned."""
        ns, name = svc.metadata.namespace, svc.metadata.name
        deployment = self._deployment(ns, name)
        plan = life.rollout(svc, self._source_job(svc), deployment, self.options)
        deployment = self._apply(svc, plan, deployment)
        return life.decide(svc, plan.model, self._observe(svc, plan.model, deployment, raw))

    def status_patch(self, svc: YoloInferenceService, decision: life.Decision) -> dict[str, Any] | None:
        return decision.patch

    def _apply(
        self, svc: YoloInferenceService, plan: life.Rollout, deployment: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """Apply the children whose watched copy no longer matches (absent, changed, edited by hand), skip the rest,
        and delete a PDB no longer wanted when the watched copy has one. Returns the Deployment as now known."""
        for obj in plan.children:
            meta = obj["metadata"]
            observed = self.cache.child(obj["kind"], meta["namespace"], meta["name"])
            reason = children_life.drift(obj, observed)
            if reason is None:
                operator_metrics.child_writes.labels(KIND, obj["kind"], "skipped").inc()
                continue
            log.debug("applying %s %s/%s: %s", obj["kind"], meta["namespace"], meta["name"], reason)
            applied = self.kube.apply(obj)
            operator_metrics.child_writes.labels(KIND, obj["kind"], "applied").inc()
            self.cache.remember(applied)  # the next reconcile compares with what this write left
            if obj["kind"] == "Deployment":
                deployment = applied
        ns, pdb = svc.metadata.namespace, render.pdb_name(svc.metadata.name)
        if plan.drop_pdb and self.cache.child("PodDisruptionBudget", ns, pdb) is not None:
            delete_if_present(self.kube, "policy/v1", "PodDisruptionBudget", ns, pdb)
        return deployment

    def _observe(
        self,
        svc: YoloInferenceService,
        model: life.ModelResolution,
        deployment: dict[str, Any] | None,
        raw: dict[str, Any],
    ) -> life.Observed:
        """What `decide` reads: the serving pods once there are weights, and until a replica is ready the GPUs the
        largest eligible node has and the claims that are missing (a claim the watched copy shows costs nothing;
        only one it does not show is asked about, a GET)."""
        now, current = datetime.now(UTC), raw.get("status") or {}
        if model.mount is None:
            return life.Observed(now, current, deployment)
        pods = tuple(self._pods(svc.metadata.namespace, selector_labels(owner_of(svc), render.COMPONENT)))
        unmounted = self.cache.newest_mount_failure(svc.metadata.namespace, pods)
        if int(((deployment or {}).get("status") or {}).get("readyReplicas") or 0) > 0:
            return life.Observed(now, current, deployment, pods, unmounted=unmounted)
        ns, res = svc.metadata.namespace, svc.spec.resources
        most: int | None = None
        if res.gpus:
            tolerations = [t.to_wire() for t in res.tolerations or []]
            eligible = eligible_nodes(self.cache.node_summaries(), res.node_selector, tolerations)
            most = max_allocatable(eligible, GPU_RESOURCE)
        claims = [model.mount.claim_name] if model.mount.source is None else []
        if svc.spec.source_cache is not None:
            claims.append(svc.spec.source_cache.claim_name)
        missing = tuple(missing_claims(self.kube, self.cache, ns, claims))
        return life.Observed(now, current, deployment, pods, most, missing, unmounted)

    # --- autoscale ------------------------------------------------------------------------------------------

    def autoscale(self, namespace: str, name: str) -> dict[str, Any] | None:
        """One autoscaler step; returns the status patch written (None when autoscaling does not apply)."""
        with self.lock(namespace, name):
            return self._autoscale(namespace, name)

    def _autoscale(self, namespace: str, name: str) -> dict[str, Any] | None:
        body = self.body(namespace, name)
        if body is None:
            return None
        try:
            svc = YoloInferenceService.model_validate(body)
        except ValidationError:
            return None
        uid = svc.metadata.uid or f"{namespace}/{name}"
        a = svc.spec.autoscaling
        if not a.enabled:
            with self._guard:
                self._histories.pop(uid, None)
            return None
        deployment = self._deployment(namespace, name)
        if deployment is None:
            return None
        current = int(deployment.get("spec", {}).get("replicas") or 0)
        now = self.clock()
        with self._guard:
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
        self.status_written(self.kube.patch_status(ref, patch))
        if decision.direction is not None:
            scaled = set_replicas(self.kube, namespace, render.deployment_name(name), decision.desired_replicas)
            self.cache.remember(scaled)
            history = record_scale(history, now, current, decision.desired_replicas, events_to_keep(a))
            om.scale_events.labels(namespace, name, decision.direction).inc()
            reason = "ScaledUp" if decision.direction == "up" else "ScaledDown"
            self.kube.post_event(ref, "Normal", reason, decision.message)
        with self._guard:
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

    def forget(self, namespace: str, name: str, uid: str | None = None) -> None:
        super().forget(namespace, name)
        with self._guard:
            self._histories.pop(uid or f"{namespace}/{name}", None)
        om.forget(namespace, name)
