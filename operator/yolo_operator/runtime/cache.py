"""What the controllers read instead of asking the API server each time: watch-fed copies of nodes and of the
operator's Jobs, pods, Deployments and the inference services' other children (ConfigMaps, Services, PDBs)
(`Informer`s), and the latest body of each custom resource (`Bodies`, fed by Kopf's watch events and by our own status
patches).

Why (issue 10): at 1,300 resources the periodic recheck alone was a GET, two LISTs and more per resource every
period. Reads now cost nothing; only writes reach the API server. The copies are trimmed to what `workloads`'
readers use (node summaries, Job and pod status), so 1,000 Jobs and their pods fit in a few MB.

Issue 24: the inference services' children are watched too, so a reconcile sees whether a child still holds what it
would apply (`lifecycle.children.drift`) and writes only the ones that changed. The PersistentVolumeClaims of the
watched namespaces are watched (names only) so the "claim missing?" check of a resource that has not started asks
the API server only about claims the copy does not show (431-880 GETs a scale run before), and the Events by which
the Job controller says the API server refused a Job's pods (reason FailedCreate: normally none) are watched, so a
Job waiting for its first pod costs no LIST of events per reconcile (~1,770 a scale run before); so are the kubelet's
FailedMount Events, the only place that says a pod waits for a Secret, ConfigMap or claim that does not exist.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any

from yolo_operator.k8s.client import Kube
from yolo_operator.k8s.workloads import newest_message, node_summary
from yolo_operator.lifecycle.stalled import claims_to_confirm
from yolo_operator.render.common import GPU_RESOURCE, LABEL_COMPONENT, LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGER
from yolo_operator.render.inference_service import COMPONENT as INFERENCE
from yolo_operator.runtime.informer import Informer, Obj, OnChange, newer, wait_synced, without_managed_fields


def _meta(obj: Obj, *extra: str) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    keys = ("name", "namespace", "uid", "labels", "ownerReferences", "resourceVersion", "creationTimestamp", *extra)
    return {k: meta[k] for k in keys if k in meta}


def trim_job(job: Obj) -> Obj:
    """What `workloads.job_view` reads of a Job."""
    return {
        "apiVersion": job.get("apiVersion"),
        "kind": job.get("kind"),
        "metadata": _meta(job),
        "spec": {"suspend": (job.get("spec") or {}).get("suspend")},
        "status": job.get("status") or {},
    }


def trim_pod(pod: Obj) -> Obj:
    """What `workloads.job_view` and `metrics.scrape.endpoint_of` read of a pod."""
    status, spec = pod.get("status") or {}, pod.get("spec") or {}
    keep = ("phase", "podIP", "startTime", "conditions", "containerStatuses", "initContainerStatuses")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _meta(pod, "deletionTimestamp"),
        "spec": {
            "nodeName": spec.get("nodeName"),
            "containers": [_memory_limit(c) for c in spec.get("containers") or []],
        },
        "status": {k: status[k] for k in keep if k in status},
    }


def _memory_limit(container: Obj) -> Obj:
    """A container's name and memory limit: what a pod killed at that limit is reported with."""
    memory = ((container.get("resources") or {}).get("limits") or {}).get("memory")
    return {"name": container.get("name"), **({"resources": {"limits": {"memory": memory}}} if memory else {})}


def trim_claim(claim: Obj) -> Obj:
    """A PersistentVolumeClaim as the "claim missing?" check reads it: that it exists (its metadata)."""
    meta = claim.get("metadata") or {}
    keep = ("name", "namespace", "uid", "resourceVersion")
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {k: meta[k] for k in keep if k in meta}}


FAILED_CREATE = "involvedObject.kind=Job,reason=FailedCreate"
"""The field selector of the Events the Job controller posts when the API server refuses a Job's pods."""
FAILED_MOUNT = "involvedObject.kind=Pod,reason=FailedMount"
"""The field selector of the Events the kubelet posts while it cannot mount a pod's volume (a Secret, ConfigMap or
claim that is missing): the pod's containers only say ContainerCreating meanwhile."""


def trim_event(event: Obj) -> Obj:
    """What `workloads.newest_message` reads of an Event, and whose it is (involvedObject.uid)."""
    keep = ("reason", "message", "lastTimestamp", "eventTime", "firstTimestamp")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": _meta(event),
        "involvedObject": {"uid": (event.get("involvedObject") or {}).get("uid")},
        **{k: event[k] for k in keep if k in event},
    }


def by_involved(event: Obj) -> Hashable | None:
    """The uid of the object an Event is about."""
    uid = (event.get("involvedObject") or {}).get("uid")
    return str(uid) if uid else None


def trim_child(obj: Obj) -> Obj:
    """A rendered child as `lifecycle.children.drift` reads it: all but managedFields and status."""
    return {k: v for k, v in without_managed_fields(obj).items() if k != "status"}


def by_instance(obj: Obj) -> Hashable | None:
    """(namespace, app.kubernetes.io/instance): the custom resource a child belongs to."""
    meta = obj.get("metadata") or {}
    instance = (meta.get("labels") or {}).get(LABEL_INSTANCE)
    return (meta.get("namespace") or "", instance) if instance else None


class Bodies:
    """The latest body of each custom resource seen (watch events, our own patches' responses)."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, str, str], Obj] = {}
        self._lock = threading.Lock()

    def put(self, obj: Obj) -> None:
        obj = without_managed_fields(obj)
        meta = obj.get("metadata") or {}
        key = (str(obj.get("kind")), str(meta.get("namespace") or ""), str(meta.get("name")))
        with self._lock:
            if newer(obj, self._items.get(key)):
                self._items[key] = obj

    def get(self, kind: str, namespace: str, name: str) -> Obj | None:
        with self._lock:
            return self._items.get((kind, namespace, name))

    def drop(self, kind: str, namespace: str, name: str) -> None:
        with self._lock:
            self._items.pop((kind, namespace, name), None)


class ClusterCache:
    """The informers both controllers read, over the watched namespaces (all when `namespaces` is empty)."""

    def __init__(
        self,
        kube: Kube,
        namespaces: Iterable[str],
        watch_timeout_s: int = 300,
    ) -> None:
        scopes: list[str | None] = list(namespaces) or [None]
        self.bodies = Bodies()
        self._job_hooks: list[OnChange] = []
        self._pod_hooks: list[OnChange] = []
        self._deployment_hooks: list[OnChange] = []
        mine = {LABEL_MANAGED_BY: MANAGER}

        def fan_out(hooks: list[OnChange]) -> OnChange:
            def call(kind: str, obj: Obj) -> None:
                for hook in hooks:
                    hook(kind, obj)

            return call

        def make(
            api_version: str,
            kind: str,
            labels: dict[str, str],
            project: Callable[[Obj], Obj],
            hooks: list[OnChange],
        ) -> list[Informer]:
            return [
                Informer(kube, api_version, kind, ns, labels, project, fan_out(hooks), by_instance, watch_timeout_s)
                for ns in scopes
            ]

        self.nodes = Informer(
            kube, "v1", "Node", project=lambda n: node_summary(n, (GPU_RESOURCE,)), watch_timeout_s=watch_timeout_s
        )
        self.jobs = make("batch/v1", "Job", mine, trim_job, self._job_hooks)
        self.pods = make("v1", "Pod", mine, trim_pod, self._pod_hooks)
        self.deployments = make(
            "apps/v1",
            "Deployment",
            {**mine, LABEL_COMPONENT: INFERENCE},
            without_managed_fields,
            self._deployment_hooks,
        )
        inference = {**mine, LABEL_COMPONENT: INFERENCE}
        self.config_maps = make("v1", "ConfigMap", inference, trim_child, [])
        self.services = make("v1", "Service", inference, trim_child, [])
        self.pdbs = make("policy/v1", "PodDisruptionBudget", inference, trim_child, [])
        # Users' claims, not ours: no label to select them by, so every claim of the watched namespaces (names only).
        self.claims = [
            Informer(kube, "v1", "PersistentVolumeClaim", ns, None, trim_claim, None, None, watch_timeout_s)
            for ns in scopes
        ]
        # The Job controller's FailedCreate Events (the API server refused a Job's pods), by the Job's uid.
        self.refusals = [
            Informer(
                kube, "v1", "Event", ns, None, trim_event, None, by_involved, watch_timeout_s, fields=FAILED_CREATE
            )
            for ns in scopes
        ]
        # The kubelet's FailedMount Events (a pod's volume cannot be mounted), by the pod's uid.
        self.mount_failures = [
            Informer(kube, "v1", "Event", ns, None, trim_event, None, by_involved, watch_timeout_s, fields=FAILED_MOUNT)
            for ns in scopes
        ]
        self._children: dict[str, list[Informer]] = {
            "Job": self.jobs,
            "Pod": self.pods,
            "Deployment": self.deployments,
            "ConfigMap": self.config_maps,
            "Service": self.services,
            "PodDisruptionBudget": self.pdbs,
        }

    @property
    def informers(self) -> list[Informer]:
        return [
            self.nodes,
            *self.claims,
            *self.refusals,
            *self.mount_failures,
            *(i for group in self._children.values() for i in group),
        ]

    # --- hooks (register before start) ------------------------------------------------------------------------

    def on_job(self, hook: OnChange) -> None:
        self._job_hooks.append(hook)

    def on_pod(self, hook: OnChange) -> None:
        self._pod_hooks.append(hook)

    def on_deployment(self, hook: OnChange) -> None:
        self._deployment_hooks.append(hook)

    # --- lifecycle --------------------------------------------------------------------------------------------

    def start(self, timeout_s: float = 60) -> None:
        """Start every watch and wait until each has listed (a reconcile must never see a half-filled copy)."""
        for informer in self.informers:
            informer.start()
        wait_synced(self.informers, timeout_s)

    def stop(self) -> None:
        for informer in self.informers:
            informer.stop()

    # --- reading ----------------------------------------------------------------------------------------------

    def node_summaries(self) -> list[Obj]:
        return self.nodes.items()

    def node(self, name: str) -> Obj | None:
        return self.nodes.get(None, name)

    def jobs_of(self, namespace: str, instance: str) -> list[Obj]:
        return [j for i in self.jobs for j in i.indexed((namespace, instance))]

    def pods_of(self, namespace: str, instance: str) -> list[Obj]:
        return [p for i in self.pods for p in i.indexed((namespace, instance))]

    def claims_seen(self, namespace: str, names: Iterable[str]) -> set[str] | None:
        """Which of these claims the watched copy shows in `namespace`; None when no copy covering it has listed
        (then the copy cannot say that a claim is absent)."""
        informer = _listed(self.claims, namespace)
        return None if informer is None else {n for n in names if informer.get(namespace, n) is not None}

    def refusals_of(self, namespace: str, job_uid: str) -> list[Obj] | None:
        """The FailedCreate Events of the Job with this uid in `namespace`; None when no copy covering it has listed
        (then it cannot say there are none)."""
        informer = _listed(self.refusals, namespace)
        return None if informer is None else informer.indexed(job_uid)

    def mount_failures_of(self, namespace: str, pods: Iterable[Mapping[str, Any]]) -> list[Obj]:
        """The FailedMount Events of these pods of `namespace` (none while no copy covering it has listed: the pods
        are only reported as waiting meanwhile)."""
        informer = _listed(self.mount_failures, namespace)
        if informer is None:
            return []
        uids = {str(uid) for p in pods if (uid := (p.get("metadata") or {}).get("uid"))}
        return [e for uid in sorted(uids) for e in informer.indexed(uid)]

    def newest_mount_failure(self, namespace: str, pods: Iterable[Mapping[str, Any]]) -> str | None:
        """The kubelet's newest FailedMount message for those of these pods still Pending (a volume it cannot
        mount), or None."""
        waiting = [p for p in pods if (p.get("status") or {}).get("phase") == "Pending"]
        return newest_message(self.mount_failures_of(namespace, waiting)) if waiting else None

    def remember(self, obj: Obj) -> None:
        """A child we just created or applied (the server's reply), visible to the next reconcile at once."""
        kind, namespace = obj.get("kind"), (obj.get("metadata") or {}).get("namespace")
        for informer in self._children.get(str(kind), []):
            if informer.namespace in (None, namespace):
                informer.remember(obj)

    def deployment(self, namespace: str, name: str) -> Obj | None:
        return self.child("Deployment", namespace, name)

    def child(self, kind: str, namespace: str, name: str) -> Obj | None:
        """The watched copy of one of our children (Job, Pod, Deployment, ConfigMap, Service, PodDisruptionBudget;
        the last four of inference services only), None when absent."""
        return next((c for i in self._children.get(kind, []) if (c := i.get(namespace, name)) is not None), None)


def _listed(informers: list[Informer], namespace: str) -> Informer | None:
    """The informer covering `namespace` once its first LIST is done (None before: it cannot say what is absent)."""
    informer = next((i for i in informers if i.namespace in (None, namespace)), None)
    return informer if informer is not None and informer.synced.is_set() else None


def missing_claims(kube: Kube, cache: ClusterCache | None, namespace: str, claims: Iterable[str]) -> list[str]:
    """The claims (of `claims`) that do not exist in `namespace`: the watched copy vouches for the ones it shows; the
    API server is asked about the rest (all of them without a listed copy), so a lagging copy never reads as absent."""
    names = list(dict.fromkeys(claims))
    seen = cache.claims_seen(namespace, names) if cache is not None else None
    return [c for c in claims_to_confirm(names, seen) if kube.get("v1", "PersistentVolumeClaim", c, namespace) is None]
