"""The one controller skeleton both kinds run on (issue 21): a reconcile of one resource is
fetch (from the watch-fed cache injected at construction) → validate (the pydantic model) → converge (the kind's
observe → pure decide → apply) → one status write → the decision's Events.

Why one skeleton: the two controllers had drifted apart where they should not (only one counted reconcile errors,
an invalid YoloInferenceService posted an Event on every reconcile and set no condition, each had its own rules for
refused writes). Here the shared parts exist once, for both kinds:
- errors: every failed reconcile counts in `yolo_operator_reconciles_total{kind,result="error"}` and
  `yolo_operator_reconcile_errors_total{kind}` and is re-raised, so the work queue retries it with the resource's
  one backoff (`runtime.workqueue`); a refused request (401/403) sets Degraded (`access`), a refused object (422/400)
  sets Stalled (`stalled`), each with one Warning Event per distinct cause;
- an object the models reject: phase Failed, the Failed and Stalled conditions and ONE Warning Event per
  generation and message (`stalled.reject`), nothing else;
- the status: one patch, only when the decision changed it, kept in the cache (the next reconcile reads it) and its
  resourceVersion remembered (`own_write`: its watch event carries nothing new); a phase change counts in
  `yolo_operator_phase_transitions_total{kind,from,to}`; then the decision's Events.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from pydantic import ValidationError

from yolo_operator.api.common import API_VERSION, format_errors
from yolo_operator.api.inference_service import YoloInferenceService
from yolo_operator.api.train_job import YoloTrainJob
from yolo_operator.controllers import access, stalled
from yolo_operator.k8s.client import ApiError, Kube, Ref
from yolo_operator.lifecycle.conditions import EventNote
from yolo_operator.metrics import operator_metrics as m
from yolo_operator.runtime.cache import ClusterCache
from yolo_operator.settings import OperatorSettings

log = logging.getLogger(__name__)


class Outcome(Protocol):
    """What the skeleton reads of a kind's decision: the phase it leads to and the Events to post."""

    @property
    def phase(self) -> str | None: ...

    @property
    def events(self) -> Sequence[EventNote]: ...


R = TypeVar("R", YoloTrainJob, YoloInferenceService)
D = TypeVar("D", bound=Outcome)


class Reconciler(ABC, Generic[R, D]):
    """A kind's controller: `converge` and `status_patch` are the kind's own; everything else is shared."""

    kind: ClassVar[str]

    def __init__(self, kube: Kube, settings: OperatorSettings, cache: ClusterCache) -> None:
        self.kube = kube
        self.settings = settings
        self.cache = cache
        """The watch-fed copies every read comes from; only writes reach the API server."""
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._written: dict[str, str] = {}
        """resourceVersion of each resource right after our last status patch: the watch event it causes is skipped."""

    # --- the kind's own steps -------------------------------------------------------------------------------

    @abstractmethod
    def parse(self, raw: dict[str, Any]) -> R:
        """The stored object as the kind's model (raises pydantic's ValidationError)."""

    @abstractmethod
    def converge(self, resource: R, raw: dict[str, Any]) -> D:
        """Observe the children (from the cache), decide (pure, `lifecycle`), apply what the decision names."""

    @abstractmethod
    def status_patch(self, resource: R, decision: D) -> dict[str, Any] | None:
        """The status patch the decision needs; None when the stored status already says it."""

    # --- shared ---------------------------------------------------------------------------------------------

    def lock(self, namespace: str, name: str) -> threading.Lock:
        """One resource's reconciles (and the inference autoscaler's steps) never interleave."""
        with self._guard:
            return self._locks.setdefault(f"{namespace}/{name}", threading.Lock())

    def own_write(self, namespace: str, name: str, resource_version: str | None) -> bool:
        """Is this the version our own last status patch produced (nothing new to react to)?"""
        with self._guard:
            return resource_version is not None and self._written.get(f"{namespace}/{name}") == resource_version

    def forget(self, namespace: str, name: str) -> None:
        with self._guard:
            self._written.pop(f"{namespace}/{name}", None)
            self._locks.pop(f"{namespace}/{name}", None)

    def body(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.cache.bodies.get(self.kind, namespace, name)

    def reconcile(self, namespace: str, name: str) -> D | None:
        """Bring the resource's children and status in line with its spec; None when it is gone, going or invalid.
        Raises what failed (the work queue retries it with backoff) after counting and reporting it."""
        with self.lock(namespace, name):
            raw = self.body(namespace, name)
            if raw is None or raw.get("metadata", {}).get("deletionTimestamp"):
                return None  # gone or going: garbage collection removes the children
            try:
                decision = self._reconcile(raw)
            except Exception as exc:
                m.reconciles.labels(self.kind, "error").inc()
                m.reconcile_errors.labels(self.kind).inc()
                self._report_refusal(raw, exc)
                raise
            m.reconciles.labels(self.kind, "ok").inc()
            return decision

    def _reconcile(self, raw: dict[str, Any]) -> D | None:
        resource = self.validate(raw)
        if resource is None:
            return None
        decision = self.converge(resource, raw)
        self.write_status(resource, decision)
        return decision

    def validate(self, raw: dict[str, Any]) -> R | None:
        """The model of the stored object, or None after reporting why the models reject it (an older CRD, a
        hand-edited status): once per generation and message, nothing else is done."""
        try:
            return self.parse(raw)
        except ValidationError as exc:
            self.status_written(stalled.reject(self.kube, Ref.of(raw), raw, "; ".join(format_errors(exc))))
            return None

    def ref(self, resource: R) -> Ref:
        meta = resource.metadata
        return Ref(API_VERSION, self.kind, meta.name, meta.namespace, meta.uid)

    def write_status(self, resource: R, decision: D) -> None:
        """One status patch, only when something changed; then the phase metric and the decision's Events."""
        ref = self.ref(resource)
        patch = self.status_patch(resource, decision)
        if patch is not None:
            self.status_written(self.kube.patch_status(ref, patch))
        previous = resource.status.phase if resource.status else None
        if decision.phase != previous:
            m.phase_transitions.labels(self.kind, previous or "", decision.phase or "").inc()
            log.info("%s %s/%s: %s -> %s", self.kind, ref.namespace, ref.name, previous, decision.phase)
        for event in decision.events:
            self.kube.post_event(ref, event.type, event.reason, event.message)

    def status_written(self, written: dict[str, Any] | None) -> None:
        """Keep what our status patch wrote: the cache reads it next, and its watch event is known as our own."""
        if not written:
            return
        meta = written.get("metadata", {})
        self.cache.bodies.put(written)
        with self._guard:
            self._written[f"{meta.get('namespace')}/{meta.get('name')}"] = str(meta.get("resourceVersion"))

    def _report_refusal(self, raw: dict[str, Any], exc: Exception) -> None:
        """A refused request: the permission it lacked (Degraded), or the object refused (Stalled)."""
        if not isinstance(exc, ApiError):
            return
        if access.is_access_error(exc):
            access.report_refused(self.kube, Ref.of(raw), raw, exc)
        elif stalled.is_user_actionable(exc):
            self.status_written(stalled.report(self.kube, Ref.of(raw), raw, exc))
